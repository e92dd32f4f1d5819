"""A generic positional space: a fixed sequence of named positions, each a categorical choice.

Any per-layer benchmark (MobileNet-style blocks, per-layer widths, ...) can be
searched through it: the choices are given by the user or read from the
columns of a table.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Mapping, Sequence

import networkx as nx
import numpy as np

from raynas.architecture import Architecture
from raynas.spaces.base import (
    INPUT_OP,
    OP_ATTR,
    OUTPUT_OP,
    InvalidArchitectureError,
    SearchSpace,
    choice_index,
)


class PositionalSpace(SearchSpace):
    """Positions ``name -> choices``; an architecture holds one choice per position.

    ``to_graph`` is the chain ``input -> position_0 -> ... -> output`` with each
    node labelled ``"<position>=<choice>"`` so that the same choice at two
    positions is a different label.

    Example:
        >>> space = PositionalSpace({"k1": ["3", "5"], "k2": ["3", "5", "7"]}, name="toy")
        >>> space.size
        6
    """

    def __init__(self, positions: Mapping[str, Sequence[str]], name: str = "positional") -> None:
        if not positions:
            raise ValueError("a positional space needs at least one position")
        self.name = name
        self.positions: dict[str, tuple[str, ...]] = {}
        for position, choices in positions.items():
            options = tuple(str(c) for c in choices)
            if not options:
                raise ValueError(f"position {position!r} has no choices")
            if len(set(options)) != len(options):
                raise ValueError(f"position {position!r} lists a choice twice: {options}")
            self.positions[str(position)] = options
        self._names = tuple(self.positions)
        self._choices = tuple(self.positions.values())
        # for mutate (called ~4,000 times per pool of 1,000 candidates): the positions with a
        # choice to make, and per position and current choice the others, in the space's order
        self._movable = [k for k, options in enumerate(self._choices) if len(options) > 1]
        self._others = [{op: [o for o in options if o != op] for op in options} for options in self._choices]

    @classmethod
    def from_table(cls, frame, columns: Sequence[str], name: str = "positional") -> "PositionalSpace":
        """Read the positions and their choices (sorted, as strings) from table columns."""
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise KeyError(f"position columns {missing} not in table (columns: {list(frame.columns)})")
        return cls({c: sorted({str(v) for v in frame[c]}) for c in columns}, name=name)

    @property
    def position_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def op_choices(self) -> tuple[str, ...]:
        return tuple(f"{p}={c}" for p, options in self.positions.items() for c in options)

    @property
    def size(self) -> int:
        return math.prod(len(c) for c in self._choices)

    def max_nodes(self) -> int:
        return len(self._names) + 2

    def make(self, choices: Sequence[str] | Mapping[str, str]) -> Architecture:
        """Build (and validate) an architecture from a choice per position."""
        if isinstance(choices, Mapping):
            unknown = set(choices) - set(self._names)
            if unknown:
                raise InvalidArchitectureError(f"unknown positions {sorted(unknown)}")
            choices = [choices.get(p, "") for p in self._names]
        arch = Architecture(self.name, tuple(str(c) for c in choices))
        self.validate(arch)
        return arch

    def sample(self, rng: np.random.Generator) -> Architecture:
        return Architecture(
            self.name, tuple(options[int(rng.integers(len(options)))] for options in self._choices)
        )

    def enumerate(self) -> Iterator[Architecture]:
        for ops in itertools.product(*self._choices):
            yield Architecture(self.name, ops)

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        self.validate(arch)
        result = []
        for k, options in enumerate(self._choices):
            for option in options:
                if option != arch.ops[k]:
                    ops = list(arch.ops)
                    ops[k] = option
                    result.append(Architecture(self.name, tuple(ops)))
        return result

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """Change one position (with more than one choice) to a different choice."""
        movable = self._movable
        if not movable:
            raise InvalidArchitectureError(f"space {self.name!r} has a single architecture")
        k = movable[int(rng.integers(len(movable)))]
        others = self._others[k].get(arch.ops[k])
        if others is None:  # not a choice of this position: every choice is another one
            others = list(self._choices[k])
        ops = list(arch.ops)
        ops[k] = others[int(rng.integers(len(others)))]
        return Architecture(self.name, tuple(ops))

    def validate(self, arch: Architecture) -> None:
        self.check_space(arch)
        if arch.matrix is not None:
            raise InvalidArchitectureError(f"positional space {self.name!r} takes no 'matrix'")
        if len(arch.ops) != len(self._names):
            raise InvalidArchitectureError(
                f"space {self.name!r} has {len(self._names)} positions {list(self._names)}, "
                f"got {len(arch.ops)} choices"
            )
        for position, options, op in zip(self._names, self._choices, arch.ops):
            choice_index(options, op, f"position {position!r}")

    def describe(self, arch: Architecture) -> str:
        return ",".join(f"{p}={c}" for p, c in zip(self._names, arch.ops))

    def parse(self, text: str) -> Architecture:
        text = text.strip()
        if text.startswith("{"):
            return super().parse(text)
        pairs = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
        return self.make(pairs)

    def to_graph(self, arch: Architecture) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_node(0, **{OP_ATTR: INPUT_OP})
        for k, (position, op) in enumerate(zip(self._names, arch.ops), start=1):
            graph.add_node(k, **{OP_ATTR: f"{position}={op}"})
            graph.add_edge(k - 1, k)
        last = len(self._names) + 1
        graph.add_node(last, **{OP_ATTR: OUTPUT_OP})
        graph.add_edge(last - 1, last)
        return graph

    def encode_positional(self, arch: Architecture) -> np.ndarray:
        return np.array([options.index(op) for options, op in zip(self._choices, arch.ops)], dtype=np.int64)

    def encode_onehot(self, arch: Architecture) -> np.ndarray:
        """Concatenated one-hot choice per position (the chain wiring is fixed)."""
        parts = []
        for options, op in zip(self._choices, arch.ops):
            part = np.zeros(len(options), dtype=np.float32)
            part[options.index(op)] = 1.0
            parts.append(part)
        return np.concatenate(parts)
