"""Knowledge-distillation training of ESNAC students, one epoch per ``step()`` (Ray Tune Trainable).

Each result reports the student's validation accuracy ``val_acc`` (percent),
its parameter count ``params``, the compression ``r = 1 − params/teacher_params``
and ESNAC's objective ``objective = r(2 − r) · A_s / A_t`` (Cao et al., ICLR
2019, §4), so that ASHA can stop poor students early. The training loop is
:class:`raynas.models.student.DistillationRun` (Ray-free, shared with the
offline benchmark).

Data (``config["dataset"]``):

* ``digits`` (default): scikit-learn's 8x8 digits in memory; the teacher's
  training logits are computed once;
* ``cifar10`` / ``cifar100`` / ``fake``: torchvision data from ``data_dir``
  (downloaded only with ``download=True``), augmented, with a seeded
  validation split (:mod:`raynas.data.vision`, as :class:`~raynas.trainables.training.ImageTrainable`);
  the teacher's logits are computed per batch, on the trial's device.

The teacher's accuracy ``A_t`` is measured once per data set on the validation
split (kept across actor reuse). **Resources**: CUDA when Tune gave the trial a
GPU (:func:`raynas.trainables.training.select_device`), with AMP and
``channels_last``; the CPU otherwise. Checkpoints resume bit-identically on the CPU.

Use it with the teacher's space (and optionally other data)::

    tune.with_parameters(DistillTrainable, space=space)              # digits
    tune.with_parameters(DistillTrainable, space=space, data=(x_train, y_train, x_val, y_val))
    tune.with_resources(tune.with_parameters(DistillTrainable, space=space), {"cpu": 8, "gpu": 1})
    # with param_space={"dataset": "cifar100", "data_dir": "/data", ...}
"""

from __future__ import annotations

import copy
import os
from typing import Any, Sequence

import torch
from ray import tune

from raynas.architecture import Architecture
from raynas.models.student import (
    DISTILL_DEFAULTS, IMAGE_DISTILL_DEFAULTS, DistillationRun, accuracy, loader_accuracy, logits_of,
)
from raynas.spaces.base import InvalidArchitectureError
from raynas.spaces.compression import CompressionSpace
from raynas.trainables.training import DATASETS, quiet_ray_train_logs, select_device

#: Config keys besides ``arch`` and the keys of :data:`raynas.models.student.DISTILL_DEFAULTS`.
#: ``None``: ``val_fraction`` 0.2 on digits and 0.1 otherwise; ``amp`` and ``channels_last`` on with
#: CUDA; ``num_workers`` the trial's CPUs (at most 8) on CUDA and 0 on the CPU; ``num_threads`` the
#: trial's CPUs; ``data_dir`` ``$RAYNAS_DATA_DIR`` or ``~/raynas_data``.
DATA_DEFAULTS: dict[str, Any] = {
    "dataset": "digits", "val_fraction": None, "split_seed": 0, "num_threads": None,
    "data_dir": None, "download": False, "fake_size": 1024,
    "device": "auto", "amp": None, "channels_last": None, "num_workers": None,
}


class DistillTrainable(tune.Trainable):
    """Distil the teacher of ``space`` into the student ``config["arch"]``; report ``objective`` per epoch.

    Config: ``arch`` (JSON, required), the keys of :data:`~raynas.models.student.DISTILL_DEFAULTS`
    (``epochs``, ``lr``, ``batch_size``, ``weight_decay``, ``temperature``, ``alpha``, ``seed``,
    ``inherit``; ``lr`` and ``batch_size`` default to :data:`~raynas.models.student.IMAGE_DISTILL_DEFAULTS`
    on CIFAR-sized data) and of :data:`DATA_DEFAULTS`. Other keys (e.g. the searcher's ``suggestion``)
    are ignored. The space's ``input_shape`` must match the data (1x8x8 digits, 3x32x32 otherwise).
    """

    checkpoint_file = "distill_trainable.pt"

    def setup(self, config: dict[str, Any], space: CompressionSpace | None = None,
              data: Sequence[torch.Tensor] | None = None) -> None:
        quiet_ray_train_logs()
        if not isinstance(space, CompressionSpace):
            raise TypeError("DistillTrainable needs the teacher's CompressionSpace: "
                            "tune.with_parameters(DistillTrainable, space=space)")
        self.space, self._given_data = space, data
        self._data_key: tuple | None = None
        self._build(config)

    def _settings(self, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        data_settings = {k: config.get(k, v) for k, v in DATA_DEFAULTS.items()}
        dataset = data_settings["dataset"]
        if dataset not in DATASETS:
            raise ValueError(f"DistillTrainable: config['dataset'] must be one of {list(DATASETS)}, got {dataset!r}")
        images = dataset != "digits" and self._given_data is None
        defaults = {**DISTILL_DEFAULTS, **(IMAGE_DISTILL_DEFAULTS if images else {})}
        settings = {k: config.get(k, v) for k, v in defaults.items()}
        if data_settings["val_fraction"] is None:
            data_settings["val_fraction"] = 0.1 if images else 0.2
        if data_settings["device"] not in ("auto", "cpu", "cuda"):
            raise ValueError(f"DistillTrainable: config['device'] must be 'auto', 'cpu' or 'cuda', "
                             f"got {data_settings['device']!r}")
        return settings, data_settings

    def _build(self, config: dict[str, Any]) -> None:
        settings, data_settings = self._settings(config)
        try:
            arch = Architecture.from_config(config)
            self.space.validate(arch)
        except (InvalidArchitectureError, ValueError) as exc:
            raise InvalidArchitectureError(f"DistillTrainable: invalid config['arch']: {exc}") from exc
        device = select_device("DistillTrainable", data_settings["device"])
        cpus = self._trial_cpus()
        if device.type == "cpu":
            torch.set_num_threads(int(data_settings["num_threads"] or cpus))
        cuda = device.type == "cuda"
        amp = cuda and data_settings["amp"] is not False
        channels_last = cuda if data_settings["channels_last"] is None else bool(data_settings["channels_last"])
        workers = data_settings["num_workers"]
        if workers is None:
            workers = min(8, cpus) if cuda else 0
        key = tuple(data_settings[k] for k in ("dataset", "data_dir", "download", "val_fraction", "split_seed",
                                               "fake_size")) + (device.type, amp, channels_last)
        if key != self._data_key:  # actor reuse: keep data, device teacher and its accuracy
            self._prepare_data(data_settings, device, amp, channels_last, int(workers))
            self._data_key = key
        self.run = DistillationRun(
            self.space, arch, self._data, teacher_acc=self._teacher_acc, teacher_logits=self._teacher_logits,
            device=device, amp=amp, channels_last=channels_last, num_workers=int(workers),
            teacher=self._teacher, **settings,
        )
        self.arch_str = self.space.describe(arch)

    def _prepare_data(self, settings: dict[str, Any], device: torch.device, amp: bool, channels_last: bool,
                      workers: int) -> None:
        """Load the data, put a teacher on ``device`` and measure ``A_t`` (and digits' teacher logits) once."""
        # The space's teacher stays on the CPU (students inherit from it); the device gets a copy.
        teacher = self.space.teacher.eval() if device.type == "cpu" else copy.deepcopy(self.space.teacher)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self._teacher = teacher.to(device, memory_format=fmt).eval()
        if self._given_data is not None or settings["dataset"] == "digits":
            self._data = tuple(t.to(device) for t in self._load_tensors(settings))
            if self._data[0].dim() == 4:
                self._data = tuple(t.contiguous(memory_format=fmt) if t.dim() == 4 else t for t in self._data)
            self._teacher_logits = logits_of(self._teacher, self._data[0])
            self._teacher_acc = accuracy(self._teacher, self._data[2], self._data[3])
            return
        from torch.utils.data import DataLoader

        from raynas.data.vision import load_image_datasets

        self._data = load_image_datasets(
            settings["dataset"], settings["data_dir"], download=bool(settings["download"]),
            val_fraction=float(settings["val_fraction"]), split_seed=int(settings["split_seed"]),
            fake_size=int(settings["fake_size"]),
        )
        if tuple(self.space.input_shape) != self._data.info.input_shape:
            raise ValueError(f"DistillTrainable: the space's input shape {tuple(self.space.input_shape)} does not "
                             f"match {settings['dataset']}'s {self._data.info.input_shape}")
        val = DataLoader(self._data.val, batch_size=256, num_workers=workers, pin_memory=device.type == "cuda")
        self._teacher_logits = None
        self._teacher_acc = loader_accuracy(self._teacher, val, device, amp, fmt)

    def _load_tensors(self, settings: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        if self._given_data is not None:
            return tuple(self._given_data)
        from raynas.data.digits import load_digits_split

        return tuple(load_digits_split(float(settings["val_fraction"]), int(settings["split_seed"])))

    def _trial_cpus(self) -> int:
        resources = self.trial_resources
        try:
            return max(1, int(resources.required_resources.get("CPU", 1))) if resources is not None else 1
        except AttributeError:  # pragma: no cover
            return 1

    def step(self) -> dict[str, Any]:
        return {**self.run.step(), "arch_str": self.arch_str, "device": self.run.device.type, "amp": self.run.amp}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(self.run.state_dict(), os.path.join(checkpoint_dir, self.checkpoint_file))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        path = os.path.join(checkpoint_dir, self.checkpoint_file)
        if not os.path.exists(path):
            raise FileNotFoundError(f"DistillTrainable: no checkpoint file {self.checkpoint_file!r} in {checkpoint_dir}")
        self.run.load_state_dict(torch.load(path, map_location=self.run.device, weights_only=True))

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        self._build(new_config)
        self.config = new_config
        return True
