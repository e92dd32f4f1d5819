"""CUDA graphs for the training step: two graph replays per batch instead of hundreds of kernel launches.

A small NAS network (an NB201 network at C=16, N=5 launches several hundred
small kernels per forward and backward) is *launch-bound* on a large GPU:
the device waits for Python to issue kernels, and a faster data path alone
cannot help (on an H200 the eager step held the GPU busy under half the
time). PyTorch's :func:`torch.cuda.make_graphed_callables` records the
model's forward and backward once, after warm-up on a real batch, as two CUDA
graphs; every later batch of the same shape copies its images into the
graph's input and replays them. The loss, the optimiser step (``foreach``
SGD: a few fused launches) and the data augmentation stay eager.

Rules that follow from PyTorch's ("CUDA Graphs" in the CUDA semantics notes;
``make_graphed_callables``'s documentation):

* shapes are fixed: a batch of another size (the last of an epoch) runs the
  model's own forward (:func:`eager_forward`), so every image is still seen;
* autocast runs without its weight cache (``cache_enabled=False``), during
  the capture and at every step;
* the graph is captured in training mode; in eval mode the module's original
  forward runs (``make_graphed_callables`` switches on ``module.training``);
* parameters that a cell never uses (an edge whose output reaches nothing)
  are allowed (``allow_unused_input``);
* parameters are updated in place (optimiser, ``load_state_dict``), so the
  graph sees every update; a new model (actor reuse) needs a new capture;
* no other thread may call CUDA during the capture: a ``DataLoader``'s
  pin-memory thread does, so :class:`~raynas.trainables.ImageTrainable` uses
  graphs on its device-resident data path only.

Example (in a training loop on CUDA)::

    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        failure = capture_training_graphs(model, first_batch)   # None: captured
        loss = F.cross_entropy(model(x), y)                     # replays for full batches

A capture that fails (an operation that synchronises with the host, say)
returns its reason; the caller logs it and trains eagerly.
"""

from __future__ import annotations

import torch


def capture_training_graphs(model: torch.nn.Module, sample: torch.Tensor, warmup: int = 3) -> str | None:
    """Capture ``model``'s forward and backward for batches shaped like ``sample``; ``None`` or why not.

    ``model`` must be on CUDA and in training mode; ``sample`` is a real batch (the warm-up
    iterations update BatchNorm's running statistics with it, as a training step would). Call it
    inside the same ``torch.autocast(..., cache_enabled=False)`` as the training steps.
    """
    if sample.device.type != "cuda":
        raise ValueError(f"capture_training_graphs: the sample batch is on {sample.device}; CUDA graphs need CUDA")
    if not model.training:
        raise ValueError("capture_training_graphs: call model.train() first (the graph replays training mode)")
    try:
        torch.cuda.make_graphed_callables(model, (sample,), num_warmup_iters=warmup, allow_unused_input=True)
    except (RuntimeError, AssertionError) as exc:  # capture errors; AssertionError: hooks or trainable buffers
        return f"{type(exc).__name__}: {exc}"
    return None


def eager_forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model``'s own forward, past a captured graph (for a batch of another shape)."""
    return type(model).forward(model, x)
