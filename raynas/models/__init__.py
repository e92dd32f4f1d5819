"""PyTorch models of raynas search spaces (Ray-free).

:func:`build_model` builds the network of an architecture for any space that
has a builder (``nb201``, ``nb101``, ``macro_cnn``, ``macro_mlp``,
``mobilenet``); :func:`model_stats` reports its parameter count and forward
FLOPs (counted by :class:`torch.utils.flop_counter.FlopCounterMode`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from raynas.architecture import Architecture
from raynas.models.macro_net import MacroNetwork
from raynas.models.nb101_net import NB101Cell, NB101Network, vertex_channels
from raynas.models.nb201_net import NB201Cell, NB201Network, count_parameters
from raynas.spaces.base import SearchSpace

#: Size keywords each builder accepts. The cell spaces take ``channels`` and ``cells_per_stage``;
#: the macro and MobileNet spaces fix their widths in the architecture (or the paper's layout)
#: and take a ``width_mult`` that scales them, plus ``input_size`` (side of the input images)
#: where the network depends on it (MLP input features; MobileNet downsampling).
MODEL_SIZE_KEYS: dict[str, tuple[str, ...]] = {
    "nb201": ("channels", "cells_per_stage"),
    "nb101": ("channels", "cells_per_stage", "cells_per_stack", "num_stacks"),
    "macro_cnn": ("width_mult",),
    "macro_mlp": ("width_mult", "input_size"),
    "mobilenet": ("width_mult", "input_size"),
}

#: The published sizes (NB201: C=16, N=5; NB101: 128 stem channels, 3 stacks of 3 cells;
#: NASBOT: the encoded units; MobileNetV3-large at width 1.0 on 224x224 images). The MLP's
#: ``input_size`` 1 means vector inputs of ``in_channels`` features.
PAPER_SIZES: dict[str, dict[str, int | float]] = {
    "nb201": {"channels": 16, "cells_per_stage": 5},
    "nb101": {"channels": 128, "cells_per_stage": 3},
    "macro_cnn": {"width_mult": 1.0},
    "macro_mlp": {"width_mult": 1.0, "input_size": 1},
    "mobilenet": {"width_mult": 1.0, "input_size": 224},
}


def _space_name(space_or_name: SearchSpace | str) -> str:
    if isinstance(space_or_name, SearchSpace):
        return space_or_name.name
    if isinstance(space_or_name, str):
        return space_or_name
    raise TypeError(f"build_model: expected a search space or its name, got {type(space_or_name).__name__}")


def build_model(
    space_or_name: SearchSpace | str,
    arch: Architecture | Sequence[str] | str,
    num_classes: int = 10,
    in_channels: int = 3,
    **size: int | float,
) -> nn.Module:
    """The network of ``arch`` in the space ``space_or_name`` (a space or its name).

    ``size`` keywords (:data:`MODEL_SIZE_KEYS`): NB201 and NB101 take
    ``channels`` (first-stage width; NB101: stem and first stack) and
    ``cells_per_stage`` (cells per stage/stack); NB101 also takes
    ``num_stacks`` (and ``cells_per_stack`` as an alias). ``macro_cnn``,
    ``macro_mlp`` and ``mobilenet`` take ``width_mult`` (scales every width);
    ``macro_mlp`` and ``mobilenet`` also take ``input_size`` (side of the input
    images: the MLP's input features are ``in_channels × input_size²``;
    MobileNet drops early downsamplings for small inputs). Missing keywords take
    the published sizes (:data:`PAPER_SIZES`). A space instance passed as
    ``space_or_name`` validates ``arch`` with its own settings (macro bounds).

    Raises:
        ValueError: for a space without a builder or a size keyword the builder does not take.
        InvalidArchitectureError: for an architecture the space rejects.
    """
    name = _space_name(space_or_name)
    if name not in MODEL_SIZE_KEYS:
        raise ValueError(
            f"no model builder for search space {name!r}; builders exist for {sorted(MODEL_SIZE_KEYS)}"
        )
    unknown = sorted(set(size) - set(MODEL_SIZE_KEYS[name]))
    if unknown:
        raise ValueError(
            f"build_model: unknown size keyword(s) {unknown} for space {name!r}; "
            f"accepted: {list(MODEL_SIZE_KEYS[name])}"
        )
    if name in ("macro_cnn", "macro_mlp", "mobilenet"):
        kwargs = {**PAPER_SIZES[name], **size}
        space = space_or_name if isinstance(space_or_name, SearchSpace) else None
        if name == "mobilenet":
            from raynas.models.mobilenet_net import MobileNetV3Network  # torchvision, imported on first use

            return MobileNetV3Network(
                arch, space, num_classes=num_classes, in_channels=in_channels, **kwargs  # type: ignore[arg-type]
            )
        return MacroNetwork(
            arch, space, kind=name.removeprefix("macro_"),  # type: ignore[arg-type]
            num_classes=num_classes, in_channels=in_channels, **kwargs,  # type: ignore[arg-type]
        )
    if name == "nb201":
        return NB201Network(
            arch,  # type: ignore[arg-type]
            channels=size.get("channels", PAPER_SIZES["nb201"]["channels"]),
            cells_per_stage=size.get("cells_per_stage", PAPER_SIZES["nb201"]["cells_per_stage"]),
            num_classes=num_classes,
            in_channels=in_channels,
        )
    if "cells_per_stage" in size and "cells_per_stack" in size and size["cells_per_stage"] != size["cells_per_stack"]:
        raise ValueError("build_model: cells_per_stage and cells_per_stack disagree (they are the same setting)")
    cells = size.get("cells_per_stack", size.get("cells_per_stage", PAPER_SIZES["nb101"]["cells_per_stage"]))
    return NB101Network(
        arch,  # type: ignore[arg-type]
        channels=size.get("channels", PAPER_SIZES["nb101"]["channels"]),
        cells_per_stack=cells,
        num_stacks=size.get("num_stacks", 3),
        num_classes=num_classes,
        in_channels=in_channels,
    )


class ModelStats(NamedTuple):
    """Trainable parameters and forward FLOPs of one image (2 per multiply-accumulate)."""

    params: int
    flops: int


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs of ``model`` on one input of shape ``input_shape`` (``(C, H, W)``).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions
    and matrix products; a multiply-accumulate is 2 FLOPs; pooling, BatchNorm
    and additions are not counted). Runs one eval-mode forward pass without
    gradients on the model's device and restores its training mode.
    """
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_stats(model: nn.Module, input_shape: Sequence[int]) -> ModelStats:
    """:class:`ModelStats` (parameters, FLOPs per image of shape ``(C, H, W)``) of ``model``."""
    return ModelStats(count_parameters(model), count_flops(model, input_shape))


def __getattr__(name: str) -> Any:
    """Lazy :class:`~raynas.models.mobilenet_net.MobileNetV3Network` (keeps torchvision out of ``import raynas.models``)."""
    if name == "MobileNetV3Network":
        from raynas.models.mobilenet_net import MobileNetV3Network

        return MobileNetV3Network
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MODEL_SIZE_KEYS",
    "PAPER_SIZES",
    "MacroNetwork",
    "MobileNetV3Network",
    "ModelStats",
    "NB101Cell",
    "NB101Network",
    "NB201Cell",
    "NB201Network",
    "build_model",
    "count_flops",
    "count_parameters",
    "model_stats",
    "vertex_channels",
]
