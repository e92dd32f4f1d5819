"""The NAS-Bench-201 cell network in PyTorch (Dong & Yang, ICLR 2020).

Macro skeleton as published: a 3x3 conv stem, three stages of ``N`` cells with
``C``, ``2C`` and ``4C`` channels separated by ResNet basic reduction blocks,
then BN-ReLU, global average pooling and a linear classifier. The cell is the
four-node DAG of :class:`~raynas.spaces.nb201.NB201Space`: node ``j`` is the
sum over ``i < j`` of ``op_(i,j)(node_i)`` and node 3 is the cell's output.

This module does not import Ray, so it can be used by any training loop.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from raynas.architecture import Architecture
from raynas.models.validation import positive_int
from raynas.spaces.nb201 import NB201_EDGES, NB201Space


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BN, the NB201 ``nor_conv`` building block."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the input's shape, dtype and device (multiplying keeps the graph)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


#: Builders of the five NB201 operations, for a given channel count (stride 1, size kept).
OPERATIONS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda c: Zero(),
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: ReLUConvBN(c, c, 1),
    "nor_conv_3x3": lambda c: ReLUConvBN(c, c, 3),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
}


class ResNetBasicBlock(nn.Module):
    """The reduction block between stages: halves the resolution, changes channels ``c_in -> c_out``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, stride=1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Cell(nn.Module):
    """One NB201 cell: six edges in the order of :data:`~raynas.spaces.nb201.NB201_EDGES`."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        if len(ops) != len(NB201_EDGES):
            raise ValueError(f"an NB201 cell needs {len(NB201_EDGES)} ops, got {len(ops)}: {list(ops)}")
        unknown = [op for op in ops if op not in OPERATIONS]
        if unknown:
            raise ValueError(f"unknown NB201 op(s) {unknown}; choose from {list(OPERATIONS)}")
        self.ops = tuple(ops)
        self.edges = nn.ModuleList(OPERATIONS[op](channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            total = None
            for k, (i, target) in enumerate(NB201_EDGES):
                if target == j:
                    out = self.edges[k](nodes[i])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[-1]


def _as_architecture(arch: Architecture | Sequence[str]) -> Architecture:
    """Accept an :class:`Architecture` or six op names and validate them against NB201."""
    space = NB201Space()
    if isinstance(arch, Architecture):
        space.validate(arch)
        return arch
    if isinstance(arch, str):
        # A bare string is either the official cell string or JSON; never six characters.
        return space.parse(arch)
    return space.make(tuple(arch))


class NB201Network(nn.Module):
    """The NAS-Bench-201 network for one cell.

    Args:
        arch: an NB201 :class:`Architecture`, six op names in edge order, or
            the official ``|op~0|+...`` string. Validated with
            :class:`NB201Space`, so an unknown op raises
            :class:`~raynas.spaces.base.InvalidArchitectureError` naming it.
        channels: ``C``, the width of the first stage (the paper uses 16).
        cells_per_stage: ``N``, cells per stage (the paper uses 5).
        num_classes: outputs of the classifier.
        in_channels: channels of the input images (3 for CIFAR, 1 for digits).
    """

    def __init__(
        self,
        arch: Architecture | Sequence[str],
        channels: int = 16,
        cells_per_stage: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        channels = positive_int("NB201Network", "channels", channels)
        cells_per_stage = positive_int("NB201Network", "cells_per_stage", cells_per_stage)
        num_classes = positive_int("NB201Network", "num_classes", num_classes)
        in_channels = positive_int("NB201Network", "in_channels", in_channels)
        self.arch = _as_architecture(arch)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        layers: list[nn.Module] = []
        c_prev = channels
        for stage in range(3):
            c = channels * 2**stage
            if stage > 0:
                layers.append(ResNetBasicBlock(c_prev, c))
            layers.extend(NB201Cell(self.arch.ops, c) for _ in range(cells_per_stage))
            c_prev = c
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)``."""
        out = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pooling(out), 1))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (what the NB201 tables report, in units, not millions)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
