"""PyTorch network of the ``mobilenet`` block space (GP-NAS's MobileNetV3-large space; Ray-free).

:class:`MobileNetV3Network` is torchvision's MobileNetV3-large assembled from
torchvision's own blocks (:class:`~torchvision.models.mobilenetv3.InvertedResidual`,
:class:`~torchvision.models.mobilenetv3.InvertedResidualConfig`, which uses
:class:`torchvision.ops.SqueezeExcitation`, and
:class:`torchvision.ops.Conv2dNormActivation`):

* stem: 3×3 convolution to 16 channels, Hardswish;
* a fixed first bottleneck (16 → 16, 3×3, no expansion, no SE), as in the paper;
* the 14 searchable bottlenecks: input/output widths, activation (ReLU or
  Hardswish) and stride are MobileNetV3-large's; the architecture chooses the
  depthwise kernel (3/5/7), the expansion rate (3/6: expanded width =
  ``rate × input width``) and squeeze-and-excitation (off/on);
* head: 1×1 convolution to 960 channels, global average pooling,
  Linear(1280) → Hardswish → Dropout(0.2) → Linear(``num_classes``).

**Size keywords.** ``width_mult`` scales every width as torchvision does
(rounded to multiples of 8), so ``width_mult=0.1`` gives a network of a few
tens of thousands of parameters for tests and CPUs. ``input_size`` (side of the
input images) sets how many of MobileNetV3's five stride-2 stages are kept:
``clip(floor(log2(input_size)) - 2, 0, 5)``, dropping the earliest ones first
(the usual CIFAR adaptation): 224 keeps all five (7×7 final maps), 32 keeps
three (stem and first searchable block at stride 1; 4×4 final maps), 8
(``digits``) keeps one (4×4 final maps). The network itself takes any input
resolution.

**Deviation:** BatchNorm uses PyTorch's defaults (momentum 0.1, eps 1e-5)
instead of torchvision's ImageNet settings (momentum 0.01, eps 1e-3), whose
slow running averages give poor validation accuracy in the short trainings a
search runs.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
from torchvision.ops import Conv2dNormActivation

from raynas.architecture import Architecture
from raynas.models.macro_net import _as_architecture
from raynas.models.validation import positive_int, positive_number
from raynas.spaces.mobilenet import MOBILENET_V3_BLOCKS, OPERATION_GROUPS, MobileNetSpace

#: MobileNetV3-large's searchable bottlenecks: (input width, output width, activation, stride).
MOBILENET_V3_LARGE_BLOCKS: tuple[tuple[int, int, str, int], ...] = (
    (16, 24, "RE", 2),  # C1
    (24, 24, "RE", 1),
    (24, 40, "RE", 2),  # C2
    (40, 40, "RE", 1),
    (40, 40, "RE", 1),
    (40, 80, "HS", 2),  # C3
    (80, 80, "HS", 1),
    (80, 80, "HS", 1),
    (80, 80, "HS", 1),
    (80, 112, "HS", 1),
    (112, 112, "HS", 1),
    (112, 160, "HS", 2),  # C4
    (160, 160, "HS", 1),
    (160, 160, "HS", 1),
)
_STEM_CHANNELS = 16
_LAST_CONV_CHANNELS = 960
_LAST_CHANNEL = 1280
#: The stride-2 stages in network order: the stem, then the searchable blocks with stride 2.
_DOWNSAMPLINGS = ("stem", *(f"block{i}" for i, b in enumerate(MOBILENET_V3_LARGE_BLOCKS) if b[3] == 2))


def kept_downsamplings(input_size: int) -> int:
    """How many of the five stride-2 stages a network for ``input_size``-pixel images keeps."""
    return int(min(max(math.floor(math.log2(input_size)) - 2, 0), len(_DOWNSAMPLINGS)))


class MobileNetV3Network(nn.Module):
    """MobileNetV3-large whose 14 searchable bottlenecks take an architecture's kernel, expansion and SE.

    Args:
        arch: a ``mobilenet`` :class:`Architecture` (42 choices: ``b<k>_kernel``,
            ``b<k>_expand``, ``b<k>_se`` per block), its JSON or
            ``describe`` string, or the 42 choices in order.
        space: the :class:`~raynas.spaces.mobilenet.MobileNetSpace` that
            validates ``arch``; it must have 14 blocks (default: ``MobileNetSpace()``).
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        width_mult: width multiplier of every layer (1.0: MobileNetV3-large).
        input_size: side of the input images; sets the downsampling (module docstring).
        dropout: dropout before the last linear layer.

    Input ``(batch, in_channels, H, W)``; output logits ``(batch, num_classes)``.
    """

    def __init__(
        self,
        arch: Architecture | Sequence[str] | str,
        space: MobileNetSpace | None = None,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        width_mult: float = 1.0,
        input_size: int = 224,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        space = MobileNetSpace() if space is None else space
        if not isinstance(space, MobileNetSpace):
            raise TypeError(f"{owner}: space must be a MobileNetSpace, got {type(space).__name__}")
        if space.num_blocks != MOBILENET_V3_BLOCKS:
            raise ValueError(
                f"{owner}: builds MobileNetV3-large's {MOBILENET_V3_BLOCKS} searchable blocks, "
                f"the space has {space.num_blocks}"
            )
        num_classes = positive_int(owner, "num_classes", num_classes)
        in_channels = positive_int(owner, "in_channels", in_channels)
        input_size = positive_int(owner, "input_size", input_size)
        width_mult = positive_number(owner, "width_mult", width_mult)
        self.arch = _as_architecture(space, arch)
        keep = kept_downsamplings(input_size)
        strided = set(_DOWNSAMPLINGS[len(_DOWNSAMPLINGS) - keep:])
        self.downsamplings = keep
        adjust = InvertedResidualConfig.adjust_channels
        norm_layer = nn.BatchNorm2d

        stem_out = adjust(_STEM_CHANNELS, width_mult)
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                in_channels, stem_out, kernel_size=3, stride=2 if "stem" in strided else 1,
                norm_layer=norm_layer, activation_layer=nn.Hardswish,
            ),
            InvertedResidual(
                InvertedResidualConfig(_STEM_CHANNELS, 3, _STEM_CHANNELS, _STEM_CHANNELS, False, "RE", 1, 1, width_mult),
                norm_layer,
            ),
        ]
        per_block = len(OPERATION_GROUPS)
        self.block_choices: list[dict[str, str]] = []
        for i, (c_in, c_out, activation, stride) in enumerate(MOBILENET_V3_LARGE_BLOCKS):
            choice = dict(zip(OPERATION_GROUPS, self.arch.ops[i * per_block:(i + 1) * per_block]))
            self.block_choices.append(choice)
            config = InvertedResidualConfig(
                c_in,
                int(choice["kernel"]),
                c_in * int(choice["expansion"]),
                c_out,
                choice["se"] == "on",
                activation,
                stride if f"block{i}" in strided else 1,
                1,
                width_mult,
            )
            layers.append(InvertedResidual(config, norm_layer))
        last_in = adjust(MOBILENET_V3_LARGE_BLOCKS[-1][1], width_mult)
        last_conv = adjust(_LAST_CONV_CHANNELS, width_mult)
        layers.append(
            Conv2dNormActivation(last_in, last_conv, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.Hardswish)
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last_channel = adjust(_LAST_CHANNEL, width_mult)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        # torchvision's MobileNetV3 initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)``."""
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


__all__ = ["MOBILENET_V3_LARGE_BLOCKS", "MobileNetV3Network", "kept_downsamplings"]
