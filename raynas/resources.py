"""How much of a GPU one trial should ask for: packing small NAS networks several to a GPU (Ray-free).

A NAS-Bench-201 network at the published size (C=16, N=5) has 0.07-1.5 M
parameters; one such trial leaves a large GPU mostly idle (its kernels are
small and launch-bound), so several trials should share each GPU. Ray Tune
does the sharing through fractional GPU requests (``--gpus-per-trial 0.25``:
four trials per GPU, Ray sets the same ``CUDA_VISIBLE_DEVICES`` for all four).
:func:`pick_gpus_per_trial` chooses that fraction from

* a **utilisation heuristic** on the network's size (:data:`UTILISATION_TIERS`):
  up to 0.5 M parameters 8 trials per GPU (the small NB201 cells), up to 2 M
  4 (the heavy NB201 cells), up to 8 M 2, larger networks a whole GPU;
* the **memory** one trial needs (:func:`trial_memory_bytes`: CUDA context,
  weights, gradients and optimiser state, activations for the batch,
  device-resident data, workspace) against the GPU's memory;
* optionally the CPUs per GPU of the node (every trial needs its CPUs),

rounded down to a power of two (1, 2, 4 or 8 trials per GPU, so packs tile a
GPU exactly and 1/8 = 0.125 is exact in binary), and returns it with a
human-readable reason. :func:`packing_for_model` measures a built network
(parameters and activation elements) and calls it.

**How ``raynas search`` should use it** when ``--gpus-per-trial`` is not given
and the cluster has GPUs (this module is not wired into the CLI; the owner of
``raynas/cli.py`` / ``searchers/experiment.py`` does that)::

    import ray
    from raynas.data.vision import image_data_bytes
    from raynas.models import build_model
    from raynas.resources import local_gpu_memory, packing_for_model
    from raynas.trainables.training import recipe_defaults

    if args.gpus_per_trial is None and ray.cluster_resources().get("GPU", 0) > 0:
        # the memory of a GPU as a trial sees it (the driver may have no GPU)
        free, total = ray.get(ray.remote(num_gpus=1)(local_gpu_memory).remote())
        recipe = recipe_defaults(spec.space, spec.dataset)
        size = {k: recipe[k] for k in ("channels", "cells_per_stage", "width_mult") if k in recipe}
        heaviest = space.make(["nor_conv_3x3"] * 6)  # NB201's largest network (1.53 M parameters at C=16, N=5)
        model = build_model(space, heaviest, num_classes=10, in_channels=3, **size)
        packing = packing_for_model(model, (3, 32, 32), recipe["batch_size"], gpu_memory_bytes=total,
                                    data_bytes=image_data_bytes(spec.dataset),      # resident data path
                                    cpus_per_gpu=cpus_per_gpu_node)                 # from ray.nodes()
        spec.gpus_per_trial = packing.gpus_per_trial
        print(f"--gpus-per-trial {packing.gpus_per_trial:g}: {packing.reason}")

Sizing for the heaviest architecture keeps every trial of the search within
memory. (Per-trial packing is possible too, since Tune accepts a function of
the config as resources: ``tune.with_resources(trainable, lambda config:
{"cpu": 1, "gpu": packing_for_model(build(config), ...).gpus_per_trial})``.)
:func:`pick_gpus_per_trial` takes plain numbers, so it can be used without
building anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

#: (largest parameter count, trials per GPU): the utilisation heuristic; larger networks get a whole GPU.
UTILISATION_TIERS: tuple[tuple[float, int], ...] = ((0.5e6, 8), (2e6, 4), (8e6, 2))
#: Device memory of a process's CUDA context (driver, cuBLAS/cuDNN handles); every trial is its own process.
CUDA_CONTEXT_BYTES = 600 * 2**20
#: cuDNN workspaces and caching-allocator slack per trial.
WORKSPACE_BYTES = 512 * 2**20
#: Bytes per parameter while training: fp32 weights, gradients and SGD momentum, plus temporaries.
BYTES_PER_PARAM = 16
#: Bytes per saved activation element: AMP keeps most in 16 bits, BatchNorm in 32; backward needs ~2 copies.
BYTES_PER_ACTIVATION_AMP = 6
BYTES_PER_ACTIVATION_FP32 = 12
#: Share of the GPU's memory that packed trials may fill together.
MEMORY_HEADROOM = 0.9
#: Most trials on one GPU (more only adds contention and CUDA contexts).
MAX_TRIALS_PER_GPU = 8


@dataclass(frozen=True)
class Packing:
    """The fraction of a GPU per trial, and why.

    ``gpus_per_trial`` is ``1 / trials_per_gpu``; ``fits`` is false when even a whole GPU is
    too small for one trial by the estimate (``gpus_per_trial`` is then 1.0 and the reason says
    so: lower the batch size). The limits are the trials per GPU each rule allows.
    """

    gpus_per_trial: float
    trials_per_gpu: int
    reason: str
    trial_bytes: int
    utilisation_limit: int
    memory_limit: int
    cpu_limit: int | None
    fits: bool = True


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def trial_memory_bytes(params: int, activation_elements_per_image: float, batch_size: int, *,
                       amp: bool = True, data_bytes: int = 0) -> int:
    """Estimated device memory of one training trial.

    CUDA context + workspace + ``BYTES_PER_PARAM`` per parameter + activations
    (``activation_elements_per_image * batch_size`` elements at ``BYTES_PER_ACTIVATION_AMP``,
    or ``_FP32`` without AMP) + ``data_bytes`` (the device-resident data set, if any).
    """
    per_activation = BYTES_PER_ACTIVATION_AMP if amp else BYTES_PER_ACTIVATION_FP32
    return int(CUDA_CONTEXT_BYTES + WORKSPACE_BYTES + BYTES_PER_PARAM * params
               + per_activation * activation_elements_per_image * batch_size + data_bytes)


def _power_of_two_floor(n: int) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


def pick_gpus_per_trial(
    params: int,
    activation_elements_per_image: float,
    batch_size: int,
    gpu_memory_bytes: int,
    *,
    data_bytes: int = 0,
    amp: bool = True,
    cpus_per_gpu: float | None = None,
    cpus_per_trial: float = 1.0,
    max_trials_per_gpu: int = MAX_TRIALS_PER_GPU,
    memory_headroom: float = MEMORY_HEADROOM,
) -> Packing:
    """The GPU fraction for trials of a network with ``params`` parameters (see the module docstring).

    Args:
        params: trainable parameters of the (largest) network.
        activation_elements_per_image: elements of the tensors its forward pass produces for one
            image (:func:`activation_elements`).
        batch_size: training batch size.
        gpu_memory_bytes: total memory of one GPU.
        data_bytes: device-resident data per trial (0 for the DataLoader path).
        amp: mixed precision (halves most activations).
        cpus_per_gpu: CPUs of a GPU node divided by its GPUs; ``None``: not a limit.
        cpus_per_trial: CPUs each trial asks for.
        max_trials_per_gpu: cap (and the utilisation heuristic's top tier).
        memory_headroom: share of the GPU memory the packed trials may fill.

    Returns:
        :class:`Packing` with ``gpus_per_trial`` in {1, 1/2, 1/4, 1/8} (coarser caps give others) and
        its reason.
    """
    if params <= 0 or batch_size <= 0 or gpu_memory_bytes <= 0:
        raise ValueError("params, batch_size and gpu_memory_bytes must be positive")
    if activation_elements_per_image < 0 or data_bytes < 0:
        raise ValueError("activation_elements_per_image and data_bytes must be >= 0")
    if max_trials_per_gpu < 1:
        raise ValueError(f"max_trials_per_gpu must be >= 1, got {max_trials_per_gpu}")
    utilisation = 1
    for limit, trials in UTILISATION_TIERS:
        if params <= limit:
            utilisation = trials
            break
    utilisation = min(utilisation, max_trials_per_gpu)
    need = trial_memory_bytes(params, activation_elements_per_image, batch_size, amp=amp, data_bytes=data_bytes)
    memory = int(memory_headroom * gpu_memory_bytes // need)
    cpu = None if cpus_per_gpu is None else max(1, int(cpus_per_gpu // cpus_per_trial))
    size = f"{params / 1e6:.2f} M parameters, batch {batch_size}: ~{_gb(need)} per trial"
    if memory < 1:
        return Packing(1.0, 1, f"{size} exceeds {memory_headroom:g} of the GPU's {_gb(gpu_memory_bytes)}: "
                       "one trial per GPU, and it may run out of memory (lower the batch size)",
                       need, utilisation, 0, cpu, fits=False)
    limits = {"utilisation": utilisation, "memory": memory}
    if cpu is not None:
        limits["CPUs"] = cpu
    trials = _power_of_two_floor(min(limits.values()))
    binding = min(limits, key=lambda k: limits[k])
    why = {
        "utilisation": (f"a network this small uses ~1/{utilisation} of a GPU" if utilisation > 1
                        else "a network this large uses a whole GPU"),
        "memory": f"{memory} fit in {memory_headroom:g} of {_gb(gpu_memory_bytes)}",
        "CPUs": f"{cpus_per_gpu or 0:g} CPUs per GPU at {cpus_per_trial:g} per trial",
    }
    details = "; ".join(f"{k}: {limits[k]} per GPU" for k in limits)
    reason = (f"{trials} trial{'s' if trials > 1 else ''} per GPU ({size}; bound by {binding}: {why[binding]}; "
              f"{details})")
    return Packing(1.0 / trials, trials, reason, need, utilisation, memory, cpu)


def activation_elements(model: Any, input_shape: Sequence[int]) -> float:
    """Elements of every leaf module's output in one forward pass, per image (a proxy for saved activations).

    Runs the model on the CPU in eval mode on two images (BatchNorm statistics untouched) under
    ``no_grad``; the model is left in its previous mode.
    """
    import torch

    total = 0

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        nonlocal total
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        total += sum(o.numel() for o in outputs if isinstance(o, torch.Tensor))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(2, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total / 2.0


def packing_for_model(model: Any, input_shape: Sequence[int], batch_size: int, *,
                      gpu_memory_bytes: int | None = None, **kwargs: Any) -> Packing:
    """:func:`pick_gpus_per_trial` for a built ``model`` (parameters and activations measured).

    ``gpu_memory_bytes`` defaults to the total memory of the local CUDA device (an error without
    one); other keywords go to :func:`pick_gpus_per_trial`.
    """
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if gpu_memory_bytes is None:
        gpu_memory_bytes = local_gpu_memory()[1]
    return pick_gpus_per_trial(params, activation_elements(model, input_shape), batch_size,
                               gpu_memory_bytes, **kwargs)


def local_gpu_memory() -> tuple[int, int]:
    """``(free, total)`` bytes of the first visible CUDA device (run it where the trials run, e.g. a Ray task)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("local_gpu_memory: no CUDA device is visible here")
    free, total = torch.cuda.mem_get_info(0)
    return int(free), int(total)
