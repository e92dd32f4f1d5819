"""The whole state of a training loop, so that a paused or retried trial resumes exactly.

Shared by :class:`raynas.trainables.ImageTrainable` and
:class:`raynas.models.student.DistillationRun`: model, optimiser, LR
scheduler, AMP scaler, the private batch-order generator and the torch CPU
(and CUDA) RNG states. The callers add what identifies the run (architecture,
epoch, data set).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
    device: torch.device,
) -> dict[str, Any]:
    """A ``torch.save``-able dict of everything the next epoch depends on."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def load_training_state(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
    device: torch.device,
) -> None:
    """Restore :func:`training_state` into the given objects (tensors may come from any device)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    generator.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
