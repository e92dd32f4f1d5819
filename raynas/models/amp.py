"""The mixed-precision optimiser step shared by every training loop in raynas."""

from __future__ import annotations

import torch


def scaled_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """Zero the gradients, back-propagate ``loss`` through ``scaler`` and step ``optimizer``.

    With a disabled scaler (CPU, or AMP off) this is the plain
    ``backward()`` / ``step()``; on CUDA with float16 autocast the scaler
    guards against gradient underflow and skips steps with inf/NaN gradients.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
