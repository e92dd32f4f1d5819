"""Real training of NAS-Bench-201 cells on scikit-learn's 8x8 digits, one epoch per ``step()``.

A CPU-sized stand-in for the NB201 CIFAR protocol: the same cell network and
optimiser recipe (SGD with Nesterov momentum, cosine annealing, cross-entropy)
on a data set that ships with scikit-learn, so a whole trial takes seconds.
All architectures see the same stratified train/validation split (split seed
0); the config's ``seed`` only drives weight initialisation and batch order.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import torch
import torch.nn.functional as F
from ray import tune

from raynas.architecture import Architecture
from raynas.data.digits import load_digits_split
from raynas.models.nb201_net import NB201Network, count_parameters
from raynas.spaces.base import InvalidArchitectureError
from raynas.spaces.nb201 import NB201Space

#: Defaults of every config key except the required ``arch``. Sized for a CPU: one
#: trial takes ~2-6 s on one core (all-``nor_conv_3x3`` is the slowest cell) and a good
#: cell reaches ~98% validation accuracy within these 10 epochs.
DIGITS_DEFAULTS: dict[str, Any] = {
    "channels": 8,
    "cells_per_stage": 1,
    "epochs": 10,
    "lr": 0.05,
    "batch_size": 64,
    "weight_decay": 5e-4,
    "seed": 0,
}

_INT_KEYS = ("channels", "cells_per_stage", "epochs", "batch_size")
_CHECKPOINT_FILE = "digits_trainable.pt"
_EVAL_BATCH = 1024


def _read_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``config``, type- and range-checked with messages naming the key."""
    settings = {key: config.get(key, default) for key, default in DIGITS_DEFAULTS.items()}
    for key in _INT_KEYS:
        value = settings[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"DigitsTrainable: config[{key!r}] must be a positive integer, got {value!r}")
        settings[key] = int(value)
    for key, lower, strict in (("lr", 0.0, True), ("weight_decay", 0.0, False)):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"DigitsTrainable: config[{key!r}] must be a finite number, got {value!r}")
        if value < lower or (strict and value == lower):
            raise ValueError(f"DigitsTrainable: config[{key!r}] must be {'>' if strict else '>='} {lower}, got {value!r}")
        settings[key] = float(value)
    seed = settings["seed"]
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"DigitsTrainable: config['seed'] must be an integer, got {seed!r}")
    settings["seed"] = int(seed)
    return settings


class DigitsTrainable(tune.Trainable):
    """Train one NB201 cell on the digits split; report validation accuracy (percent) each epoch.

    Config: ``arch`` (JSON, required) plus the keys of :data:`DIGITS_DEFAULTS`.
    Uses CUDA when the trial was given a GPU, else the CPU with one thread so
    that concurrent trials on a small machine don't oversubscribe the cores.
    """

    def setup(self, config: dict[str, Any]) -> None:
        self._build(config)

    def _build(self, config: dict[str, Any]) -> None:
        """(Re)create data, model, optimiser and scheduler from ``config``; epoch 0."""
        try:
            arch = Architecture.from_config(config)
            self.space = NB201Space()
            self.space.validate(arch)
        except (InvalidArchitectureError, ValueError) as exc:
            raise InvalidArchitectureError(f"DigitsTrainable: invalid config['arch']: {exc}") from exc
        settings = _read_settings(config)
        self.arch = arch
        self.arch_str = self.space.describe(arch)
        self.settings = settings
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(1)

        split = load_digits_split()
        self.x_train, self.y_train = split.x_train.to(self.device), split.y_train.to(self.device)
        self.x_val, self.y_val = split.x_val.to(self.device), split.y_val.to(self.device)

        torch.manual_seed(settings["seed"])
        self.model = NB201Network(
            arch,
            channels=settings["channels"],
            cells_per_stage=settings["cells_per_stage"],
            num_classes=10,
            in_channels=1,
        ).to(self.device)
        if self.device.type == "cpu":
            # NHWC is faster for these small convolutions on CPU (measured 10-45% per epoch).
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x_train = self.x_train.contiguous(memory_format=torch.channels_last)
            self.x_val = self.x_val.contiguous(memory_format=torch.channels_last)
        self.num_params = count_parameters(self.model)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=settings["lr"],
            momentum=0.9,
            nesterov=True,
            weight_decay=settings["weight_decay"],
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=settings["epochs"])
        # A private generator for batch order, so other torch RNG users don't change the run.
        self.generator = torch.Generator().manual_seed(settings["seed"])
        self.epoch = 0

    # ----------------------------------------------------------------- training
    def _train_epoch(self) -> float:
        self.model.train()
        n = self.x_train.shape[0]
        order = torch.randperm(n, generator=self.generator).to(self.device)
        batch_size = self.settings["batch_size"]
        total_loss, seen = 0.0, 0
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            if index.numel() < 2:  # BatchNorm cannot train on a single example
                continue
            logits = self.model(self.x_train[index])
            loss = F.cross_entropy(logits, self.y_train[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += float(loss.detach()) * index.numel()
            seen += index.numel()
        self.scheduler.step()
        return total_loss / max(seen, 1)

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float]:
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for start in range(0, self.x_val.shape[0], _EVAL_BATCH):
            x = self.x_val[start : start + _EVAL_BATCH]
            y = self.y_val[start : start + _EVAL_BATCH]
            logits = self.model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
        n = self.x_val.shape[0]
        return 100.0 * correct / n, loss_sum / n

    def step(self) -> dict[str, Any]:
        """One epoch of training, then validation."""
        epochs = self.settings["epochs"]
        if self.epoch >= epochs:
            raise RuntimeError(f"DigitsTrainable: all {epochs} epochs of {self.arch_str} were already trained")
        train_loss = self._train_epoch()
        self.epoch += 1
        val_acc, val_loss = self._evaluate()
        return {
            "val_acc": val_acc,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "epoch": self.epoch,
            "params": self.num_params,
            "arch_str": self.arch_str,
            "done": self.epoch >= epochs,
        }

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write model, optimiser, scheduler, epoch and RNG states to ``checkpoint_dir``."""
        state = {
            "arch": self.arch.to_json(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        torch.save(state, os.path.join(checkpoint_dir, _CHECKPOINT_FILE))
        return None

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """Restore what :meth:`save_checkpoint` wrote, so training resumes with identical behaviour."""
        if not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise TypeError(
                f"DigitsTrainable: load_checkpoint expects a checkpoint directory, got {type(checkpoint_dir).__name__}"
            )
        path = os.path.join(checkpoint_dir, _CHECKPOINT_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"DigitsTrainable: no checkpoint file {_CHECKPOINT_FILE!r} in {checkpoint_dir}")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["arch"] != self.arch.to_json():
            raise ValueError(
                f"DigitsTrainable: checkpoint {path} is for architecture {state['arch']}, "
                f"but this trial trains {self.arch.to_json()}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.epoch = int(state["epoch"])

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Rebuild everything for the new config (actor reuse) and start again at epoch 0."""
        self._build(new_config)
        self.config = new_config
        return True
