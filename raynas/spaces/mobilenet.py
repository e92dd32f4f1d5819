"""The MobileNetV3-large block space searched by GP-NAS (Li et al., CVPR 2020, sec. 4.1).

Each of the 14 searchable inverted-bottleneck blocks of MobileNetV3-large
chooses a depthwise kernel size {3, 5, 7}, an expansion rate {3, 6} and
whether squeeze-and-excitation is used {off, on}: 3 x 2 x 2 = 12 options per
block, 12**14 (about 1.3e15) architectures. Depth, widths and activations stay
those of MobileNetV3 (the paper keeps them fixed), so an architecture is just
the 42 choices, stored position by position in block order::

    b0_kernel, b0_expand, b0_se, b1_kernel, ..., b13_se

The paper's kernel (eq. 6-8) groups operations by *type*; the space exposes
those groups (:data:`OPERATION_GROUPS`, :attr:`MobileNetSpace.position_groups`)
so that :mod:`raynas.kernels.grouped` can build one mask per type.

Example:
    >>> space = mobilenet_block_space()
    >>> space.size == 12 ** 14
    True
    >>> sorted(space.position_groups)
    ['expansion', 'kernel', 'se']
"""

from __future__ import annotations

from typing import Mapping

from raynas.spaces.positional import PositionalSpace

#: The choices of one block, by operation type (the paper's groups S_i, eq. 6).
OPERATION_GROUPS: dict[str, tuple[str, ...]] = {
    "kernel": ("3", "5", "7"),
    "expansion": ("3", "6"),
    "se": ("off", "on"),
}
#: Suffix of each group's position name (``b<k>_<suffix>``).
_SUFFIX = {"kernel": "kernel", "expansion": "expand", "se": "se"}
#: Searchable blocks of MobileNetV3-large.
MOBILENET_V3_BLOCKS = 14


class MobileNetSpace(PositionalSpace):
    """MobileNetV3-style blocks, each choosing kernel size, expansion rate and SE.

    Args:
        num_blocks: number of searchable blocks (14 in the paper).

    Attributes:
        num_blocks: as given.
        position_groups: operation type -> the positions of that type, in block
            order (``{"kernel": ("b0_kernel", ...), "expansion": ..., "se": ...}``).
    """

    def __init__(self, num_blocks: int = MOBILENET_V3_BLOCKS) -> None:
        if int(num_blocks) < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks!r}")
        self.num_blocks = int(num_blocks)
        positions: dict[str, tuple[str, ...]] = {}
        for block in range(self.num_blocks):
            for group, choices in OPERATION_GROUPS.items():
                positions[f"b{block}_{_SUFFIX[group]}"] = choices
        super().__init__(positions, name="mobilenet")
        self.position_groups: Mapping[str, tuple[str, ...]] = {
            group: tuple(f"b{block}_{_SUFFIX[group]}" for block in range(self.num_blocks))
            for group in OPERATION_GROUPS
        }

    def block(self, arch, index: int) -> dict[str, str]:
        """The choices of block ``index`` as ``{"kernel": .., "expansion": .., "se": ..}``."""
        if not 0 <= index < self.num_blocks:
            raise IndexError(f"block {index} out of range 0..{self.num_blocks - 1}")
        self.validate(arch)
        per_block = len(OPERATION_GROUPS)
        ops = arch.ops[index * per_block:(index + 1) * per_block]
        return dict(zip(OPERATION_GROUPS, ops))

    def __repr__(self) -> str:
        return f"MobileNetSpace(num_blocks={self.num_blocks}, size={self.size})"


def mobilenet_block_space(num_blocks: int = MOBILENET_V3_BLOCKS) -> MobileNetSpace:
    """The GP-NAS MobileNetV3 block space (12**num_blocks architectures, name ``"mobilenet"``)."""
    return MobileNetSpace(num_blocks)


__all__ = ["MOBILENET_V3_BLOCKS", "OPERATION_GROUPS", "MobileNetSpace", "mobilenet_block_space"]
