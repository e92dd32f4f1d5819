"""PyTorch networks of NASBOT's macro spaces (``macro_cnn``, ``macro_mlp``; Ray-free).

A :class:`MacroNetwork` follows the architecture's DAG literally: one module
per layer, in the stored topological order, each fed by its parents.

**Merging parents: concatenation.** A layer with several parents takes the
*concatenation* of their outputs (channels for feature maps, features for
vectors), not their sum. NASBOT defines a layer's mass as ``units ×
incoming units`` (the sum of its parents' units; :mod:`raynas.spaces.layer_graph`),
which is exactly a layer's weight count when its inputs are concatenated; a
sum would need an extra 1x1 projection per parent and would make the number of
parameters depend on those projections instead of on the encoded units. So the
channel counts of the parents need no adapting; only resolutions may differ
(a skip edge around a pooling layer): the larger maps are average-pooled
(:func:`torch.nn.functional.adaptive_avg_pool2d`) down to the smallest
parent resolution before concatenating.

**CNN layers** (``macro_cnn``): ``conv<k>:u`` is Conv(k×k, ``u`` channels,
same padding) → BatchNorm → ReLU; ``res<k>:u`` is a ResNet basic block (two
k×k convolutions with BatchNorm, a 1x1 projection shortcut when the input
width differs from ``u``, ReLU): the NASBOT slides draw ResNet-18's eight
basic blocks as eight ``res3`` layers. ``max-pool`` / ``avg-pool`` are 2×2
stride-2 pools (``ceil_mode``, so a 1×1 map stays 1×1) that halve the
resolution and keep the channels. ``fc:u`` global-average-pools feature-map
parents, concatenates and applies Linear(``u``) → ReLU. ``softmax`` is
Linear(``num_classes``) returning logits (the loss applies the softmax).

**MLP layers** (``macro_mlp``): the input is flattened
(``in_channels × input_size²`` features: vectors with ``input_size=1``, or
images); ``<activation>:u`` is Linear(``u``) followed by the activation
(``crelu`` concatenates ReLU(x) and ReLU(−x), so it outputs ``2u``
features; ``linear`` has none); the decision layer ``linear`` maps to
``num_classes``.

The network's output is the mean of the logits of its decision layers (one in
a chain; ``dup_path`` can make several).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raynas.architecture import Architecture
from raynas.models.validation import positive_int, positive_number
from raynas.spaces.base import INPUT_OP, OP_ATTR, OUTPUT_OP, SearchSpace
from raynas.spaces.macro import CNN_CONV, CNN_POOL, MLP_HIDDEN, MLP_OUT, MacroSpace


def scaled_units(units: int, width_mult: float) -> int:
    """``units × width_mult``, rounded, at least 1 (``width_mult`` shrinks networks for tests and CPUs)."""
    return max(1, int(round(units * width_mult)))


def _as_architecture(space: SearchSpace, arch: Architecture | Sequence[str] | str) -> Architecture:
    """Validate ``arch`` with ``space``: an :class:`Architecture`, its JSON, or a chain's layer strings."""
    if isinstance(arch, Architecture):
        space.validate(arch)
        return arch
    if isinstance(arch, str):
        return space.parse(arch)
    return space.make(tuple(arch))  # type: ignore[attr-defined]


class ResidualLayer(nn.Module):
    """A ``res<k>`` layer: a ResNet basic block with ``k×k`` convolutions (projection shortcut when widths differ)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size, padding=pad, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, kernel_size, padding=pad, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class CReLU(nn.Module):
    """Concatenated ReLU: ``[ReLU(x), ReLU(-x)]`` (doubles the features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(x), F.relu(-x)], dim=1)


_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "crelu": CReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky-relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "linear": nn.Identity,
}


class MacroNetwork(nn.Module):
    """The network of a ``macro_cnn`` or ``macro_mlp`` architecture (see the module docstring).

    Args:
        arch: an :class:`Architecture` of the space, its JSON, or (chains) the
            layer strings (``["conv3:16", "max-pool", "fc:32", "softmax"]``).
        space: the :class:`~raynas.spaces.macro.MacroSpace` that validates
            ``arch`` (its bounds apply); default: ``MacroSpace(kind)``.
        kind: ``"cnn"`` or ``"mlp"`` when ``space`` is not given.
        num_classes: outputs of each decision layer.
        in_channels: channels of the input images (MLP: features per pixel,
            or the vector length with ``input_size=1``).
        width_mult: every layer's units are scaled by this (rounded, at least
            1); 1.0 builds the encoded network.
        input_size: MLP only: side of the (square) input, so the first
            layers take ``in_channels × input_size²`` features; CNNs accept
            any resolution.

    Input shape: ``(batch, in_channels, H, W)`` for a CNN; ``(batch,
    in_channels)`` or ``(batch, in_channels, input_size, input_size)`` for an
    MLP. Output: logits ``(batch, num_classes)``.
    """

    def __init__(
        self,
        arch: Architecture | Sequence[str] | str,
        space: MacroSpace | None = None,
        *,
        kind: str = "cnn",
        num_classes: int = 10,
        in_channels: int = 3,
        width_mult: float = 1.0,
        input_size: int = 1,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if space is None:
            space = MacroSpace(kind)
        if not isinstance(space, MacroSpace):
            raise TypeError(f"{owner}: space must be a MacroSpace, got {type(space).__name__}")
        num_classes = positive_int(owner, "num_classes", num_classes)
        in_channels = positive_int(owner, "in_channels", in_channels)
        input_size = positive_int(owner, "input_size", input_size)
        width_mult = positive_number(owner, "width_mult", width_mult)
        self.arch = _as_architecture(space, arch)
        self.kind = space.kind
        self.num_classes = num_classes
        graph = space.to_graph(self.arch)
        n = graph.number_of_nodes()
        self.labels: tuple[str, ...] = tuple(graph.nodes[k][OP_ATTR] for k in range(n))
        self.parents: tuple[tuple[int, ...], ...] = tuple(tuple(sorted(graph.predecessors(k))) for k in range(n))
        self.in_features = in_channels * input_size**2 if self.kind == "mlp" else in_channels
        # width[k]: channels (CNN feature maps) or features (vectors) node k outputs.
        width: list[int] = [self.in_features]
        layers: list[nn.Module] = [nn.Identity()]
        for k in range(1, n - 1):
            label = self.labels[k]
            c_in = sum(width[p] for p in self.parents[k])
            units = graph.nodes[k]["units"]
            u = scaled_units(units, width_mult) if units else 0
            module, c_out = self._layer(label, c_in, u, num_classes)
            layers.append(module)
            width.append(c_out)
        layers.append(nn.Identity())  # output: mean of the decision layers' logits
        self.layers = nn.ModuleList(layers)
        self.widths: tuple[int, ...] = (*width, num_classes)
        assert self.labels[0] == INPUT_OP and self.labels[-1] == OUTPUT_OP

    @staticmethod
    def _layer(label: str, c_in: int, units: int, num_classes: int) -> tuple[nn.Module, int]:
        """The module of one layer and its output width."""
        if label in CNN_CONV:
            k = int(label[-1])
            if label.startswith("res"):
                return ResidualLayer(c_in, units, k), units
            conv = nn.Sequential(
                nn.Conv2d(c_in, units, k, padding=k // 2, bias=False), nn.BatchNorm2d(units), nn.ReLU(inplace=True)
            )
            return conv, units
        if label in CNN_POOL:
            pool_cls = nn.MaxPool2d if label == "max-pool" else nn.AvgPool2d
            return pool_cls(kernel_size=2, stride=2, ceil_mode=True), c_in
        if label == "fc":
            return nn.Sequential(nn.Linear(c_in, units), nn.ReLU(inplace=True)), units
        if label in ("softmax", MLP_OUT):
            return nn.Linear(c_in, num_classes), num_classes
        if label in MLP_HIDDEN:
            activation = _ACTIVATIONS[label]()
            return nn.Sequential(nn.Linear(c_in, units), activation), units * (2 if label == "crelu" else 1)
        raise ValueError(f"no module for macro layer {label!r}")  # pragma: no cover - the space rejects it

    def _merge(self, k: int, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Concatenate the parents' outputs for layer ``k`` (pooling maps to a common resolution,
        or to vectors for fully connected layers)."""
        spatial = [t for t in inputs if t.dim() == 4]
        if self.labels[k] in ("fc", "softmax") and spatial:
            inputs = [t.mean(dim=(2, 3)) if t.dim() == 4 else t for t in inputs]
        elif len(spatial) > 1:
            h = min(t.shape[2] for t in spatial)
            w = min(t.shape[3] for t in spatial)
            inputs = [t if t.shape[2:] == (h, w) else F.adaptive_avg_pool2d(t, (h, w)) for t in inputs]
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)``."""
        if self.kind == "mlp":
            x = torch.flatten(x, 1)
            if x.shape[1] != self.in_features:
                raise ValueError(
                    f"{type(self).__name__}: expects {self.in_features} input features "
                    f"(in_channels × input_size²), got {x.shape[1]}; set input_size/in_channels to match the data"
                )
        elif x.dim() != 4:
            raise ValueError(f"{type(self).__name__}: expects images (batch, C, H, W), got shape {tuple(x.shape)}")
        outputs: list[torch.Tensor | None] = [x]
        last = len(self.layers) - 1
        for k in range(1, last):
            inputs = [outputs[p] for p in self.parents[k]]
            outputs.append(self.layers[k](self._merge(k, inputs)))  # type: ignore[arg-type]
        logits = [outputs[p] for p in self.parents[last]]
        return logits[0] if len(logits) == 1 else torch.stack(logits, dim=0).mean(dim=0)  # type: ignore[arg-type]


__all__ = ["CReLU", "MacroNetwork", "ResidualLayer", "scaled_units"]
