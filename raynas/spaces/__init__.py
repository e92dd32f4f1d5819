"""Search spaces: the meaning of an :class:`~raynas.architecture.Architecture`."""

from raynas.spaces.base import (
    INPUT_OP,
    OP_ATTR,
    OUTPUT_OP,
    InfiniteSpaceError,
    InvalidArchitectureError,
    SearchSpace,
)
from raynas.spaces.nb101 import NB101Space
from raynas.spaces.nb201 import NB201_EDGE_COLUMNS, NB201_EDGES, NB201_OPS, NB201Space

__all__ = [
    "INPUT_OP",
    "OP_ATTR",
    "OUTPUT_OP",
    "InfiniteSpaceError",
    "InvalidArchitectureError",
    "SearchSpace",
    "NB101Space",
    "NB201Space",
    "NB201_EDGES",
    "NB201_EDGE_COLUMNS",
    "NB201_OPS",
]
