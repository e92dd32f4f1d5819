"""The NAS-Bench-101 cell network in PyTorch (Ying et al., ICML 2019).

A port of ``model_builder.py`` of the official ``nasbench`` code:

* stem: 3x3 conv-BN-ReLU with ``channels`` (128) filters;
* ``num_stacks`` (3) stacks of ``cells_per_stack`` (3) cells; between stacks a
  2x2 max-pool (stride 2) halves the resolution and the channel count doubles;
* global average pooling and a linear classifier.

A cell is the DAG of an :class:`~raynas.spaces.nb101.NB101Space` architecture.
Each intermediate node gets a channel count from :func:`vertex_channels` (the
output's channels split over the nodes that feed the output, then propagated
backwards as the maximum over a node's successors). A node's input is the sum
of its predecessors: the cell input through a 1x1 conv-BN-ReLU *projection* to
the node's channels, other nodes *truncated* to the node's channels (their first
channels). The output concatenates the nodes that feed it and, when the input
feeds the output directly, adds the input's projection; a cell whose only edge
is input -> output is that projection.

Differences from the TensorFlow original: BatchNorm uses PyTorch's defaults
(momentum 0.1, eps 1e-5) rather than momentum 0.997, which suits the short
trainings of a search; ``'same'`` padding of the 2x2 pool equals no padding at
the even resolutions used here. With the published sizes the parameter count
equals the ``trainable_parameters`` of the NAS-Bench-101 dataset.

This module does not import Ray.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from raynas.architecture import Architecture
from raynas.models.validation import positive_int
from raynas.spaces.nb101 import NB101Space


class ConvBNReLU(nn.Sequential):
    """Conv (no bias, same padding) -> BN -> ReLU, the NB101 ``conv`` building block."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


def _operation(op: str, channels: int) -> nn.Module:
    """The module of one intermediate node (input and output already have ``channels``)."""
    if op == "conv3x3-bn-relu":
        return ConvBNReLU(channels, channels, 3)
    if op == "conv1x1-bn-relu":
        return ConvBNReLU(channels, channels, 1)
    if op == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    raise ValueError(f"unknown NB101 op {op!r}; choose from conv3x3-bn-relu, conv1x1-bn-relu, maxpool3x3")


def vertex_channels(in_channels: int, out_channels: int, matrix: Sequence[Sequence[int]]) -> list[int]:
    """Channels of every node of a cell, as ``compute_vertex_channels`` of ``nasbench``.

    Node 0 has ``in_channels`` and the output ``out_channels``. The nodes feeding
    the output share ``out_channels`` (the remainder goes one each to the first
    of them), and every other node gets the maximum of its successors.
    """
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[n - 1] = in_channels, out_channels
    if n == 2:
        return channels
    in_degree_output = sum(matrix[v][n - 1] for v in range(1, n - 1))
    if in_degree_output == 0:
        raise ValueError("an NB101 cell with intermediate nodes needs at least one of them to feed the output")
    interior, correction = divmod(out_channels, in_degree_output)
    for v in range(1, n - 1):
        if matrix[v][n - 1]:
            channels[v] = interior
            if correction:
                channels[v] += 1
                correction -= 1
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            for dst in range(v + 1, n - 1):
                if matrix[v][dst]:
                    channels[v] = max(channels[v], channels[dst])
    if any(c <= 0 for c in channels[1:-1]):
        raise ValueError(
            f"NB101 cell with {out_channels} output channels leaves a node without channels: {channels} "
            "(use more channels)"
        )
    return channels


class NB101Cell(nn.Module):
    """One NB101 cell (a "module" in the ``nasbench`` code) from ``c_in`` to ``c_out`` channels."""

    def __init__(self, arch: Architecture, c_in: int, c_out: int) -> None:
        super().__init__()
        if arch.matrix is None:
            raise ValueError("an NB101 cell needs an adjacency matrix")
        self.matrix = tuple(tuple(int(v) for v in row) for row in arch.matrix)
        self.ops = tuple(arch.ops)
        n = len(self.ops)
        self.channels = vertex_channels(c_in, c_out, self.matrix)
        # Projections of the cell input, one per node it feeds (index n-1: the output).
        self.projections = nn.ModuleDict(
            {str(t): ConvBNReLU(c_in, self.channels[t], 1) for t in range(1, n) if self.matrix[0][t]}
        )
        self.nodes = nn.ModuleDict({str(t): _operation(self.ops[t], self.channels[t]) for t in range(1, n - 1)})
        self.concat = [t for t in range(1, n - 1) if self.matrix[t][n - 1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.ops)
        if n == 2:
            return self.projections[str(1)](x)
        values: list[torch.Tensor | None] = [x] + [None] * (n - 1)
        for t in range(1, n - 1):
            inputs = [
                values[src][:, : self.channels[t]]  # type: ignore[index]
                for src in range(1, t)
                if self.matrix[src][t]
            ]
            if self.matrix[0][t]:
                inputs.append(self.projections[str(t)](x))
            total = inputs[0]
            for extra in inputs[1:]:
                total = total + extra
            values[t] = self.nodes[str(t)](total)
        parts = [values[t] for t in self.concat]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # type: ignore[arg-type]
        if self.matrix[0][n - 1]:
            out = out + self.projections[str(n - 1)](x)
        return out  # type: ignore[return-value]


def _as_architecture(arch: Architecture | str) -> Architecture:
    space = NB101Space()
    if isinstance(arch, Architecture):
        space.validate(arch)
        return arch
    if isinstance(arch, str):
        return space.parse(arch)
    raise TypeError(f"NB101Network: arch must be an NB101 Architecture or its string, got {type(arch).__name__}")


class NB101Network(nn.Module):
    """The NAS-Bench-101 network for one cell.

    Args:
        arch: an NB101 :class:`Architecture` (validated, so a malformed cell
            raises :class:`~raynas.spaces.base.InvalidArchitectureError`) or
            its ``describe`` string.
        channels: filters of the stem and of the first stack (the paper: 128).
        cells_per_stack: cells in each stack (the paper: 3).
        num_stacks: stacks, each after the first halving resolution and doubling channels (the paper: 3).
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
    """

    def __init__(
        self,
        arch: Architecture | str,
        channels: int = 128,
        cells_per_stack: int = 3,
        num_stacks: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        channels = positive_int("NB101Network", "channels", channels)
        cells_per_stack = positive_int("NB101Network", "cells_per_stack", cells_per_stack)
        num_stacks = positive_int("NB101Network", "num_stacks", num_stacks)
        num_classes = positive_int("NB101Network", "num_classes", num_classes)
        in_channels = positive_int("NB101Network", "in_channels", in_channels)
        self.arch = _as_architecture(arch)
        self.stem = ConvBNReLU(in_channels, channels, 3)
        layers: list[nn.Module] = []
        c_prev = c = channels
        for stack in range(num_stacks):
            if stack > 0:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                c *= 2
            for _ in range(cells_per_stack):
                layers.append(NB101Cell(self.arch, c_prev, c))
                c_prev = c
        self.cells = nn.Sequential(*layers)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)``."""
        out = self.cells(self.stem(x))
        return self.classifier(torch.flatten(self.global_pooling(out), 1))
