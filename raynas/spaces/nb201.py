"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell is a DAG on four nodes; each of the six edges ``i -> j`` (``i < j``)
carries one of five operations, giving 5**6 = 15,625 cells. Architectures
store the ops in the order of the official string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, i.e. edges
``(0,1), (0,2), (1,2), (0,3), (1,3), (2,3)``.
"""

from __future__ import annotations

import itertools
import re
from typing import Iterator

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

NB201_OPS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)
NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
#: Column names of the per-edge form used by tabular files (``op_e01`` ... ``op_e23``).
NB201_EDGE_COLUMNS: tuple[str, ...] = tuple(f"op_e{i}{j}" for i, j in NB201_EDGES)

_NODE_RE = re.compile(r"^\|(.+)\|$")


class NB201Space(SearchSpace):
    """NAS-Bench-201: six edges, five ops each.

    ``to_graph`` returns the node-labelled view used by predictor papers
    (BONAS, BANANAS): an input node, one node per edge labelled with its op,
    and an output node; an edge node ``(i,j)`` feeds every edge node leaving
    ``j``. This fixed 8-node graph keeps ``none`` nodes so encodings have a
    fixed size; :meth:`pruned_graph` removes them for isomorphism checks.
    """

    name = "nb201"

    def __init__(self, ops: tuple[str, ...] = NB201_OPS) -> None:
        self._ops = tuple(ops)

    @property
    def op_choices(self) -> tuple[str, ...]:
        return self._ops

    @property
    def size(self) -> int:
        return len(self._ops) ** len(NB201_EDGES)

    def max_nodes(self) -> int:
        return len(NB201_EDGES) + 2

    # ------------------------------------------------------------- creation
    def make(self, ops: tuple[str, ...] | list[str]) -> Architecture:
        """Build (and validate) a cell from six ops in edge order."""
        arch = Architecture(self.name, tuple(ops))
        self.validate(arch)
        return arch

    def sample(self, rng: np.random.Generator) -> Architecture:
        picks = rng.integers(len(self._ops), size=len(NB201_EDGES))
        return Architecture(self.name, tuple(self._ops[i] for i in picks))

    def enumerate(self) -> Iterator[Architecture]:
        for ops in itertools.product(self._ops, repeat=len(NB201_EDGES)):
            yield Architecture(self.name, ops)

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        self.validate(arch)
        result = []
        for position, current in enumerate(arch.ops):
            for op in self._ops:
                if op != current:
                    ops = list(arch.ops)
                    ops[position] = op
                    result.append(Architecture(self.name, tuple(ops)))
        return result

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """Change the op of one random edge to a different op (the NB201 paper's mutation)."""
        position = int(rng.integers(len(NB201_EDGES)))
        others = [op for op in self._ops if op != arch.ops[position]]
        ops = list(arch.ops)
        ops[position] = others[int(rng.integers(len(others)))]
        return Architecture(self.name, tuple(ops))

    # ----------------------------------------------------------- validation
    def validate(self, arch: Architecture) -> None:
        self.check_space(arch)
        if arch.matrix is not None:
            raise InvalidArchitectureError("NB201 cells have fixed wiring: 'matrix' must be None")
        if len(arch.ops) != len(NB201_EDGES):
            raise InvalidArchitectureError(
                f"NB201 cells have {len(NB201_EDGES)} edge ops, got {len(arch.ops)}: {arch.ops}"
            )
        for (i, j), op in zip(NB201_EDGES, arch.ops):
            choice_index(self._ops, op, f"edge {i}->{j}")

    # ------------------------------------------------------ string formats
    def describe(self, arch: Architecture) -> str:
        """The official string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
        ops = dict(zip(NB201_EDGES, arch.ops))
        nodes = []
        for j in range(1, 4):
            nodes.append("|" + "|".join(f"{ops[(i, j)]}~{i}" for i in range(j)) + "|")
        return "+".join(nodes)

    def parse(self, text: str) -> Architecture:
        """Read the official string (or raynas JSON) into a validated cell."""
        text = text.strip()
        if text.startswith("{"):
            return super().parse(text)
        parts = text.split("+")
        if len(parts) != 3:
            raise InvalidArchitectureError(
                f"NB201 string needs 3 '+'-separated nodes, got {len(parts)}: {text!r}"
            )
        ops: dict[tuple[int, int], str] = {}
        for j, part in enumerate(parts, start=1):
            match = _NODE_RE.match(part)
            if not match:
                raise InvalidArchitectureError(f"malformed node {j} in NB201 string: {part!r}")
            entries = match.group(1).split("|")
            if len(entries) != j:
                raise InvalidArchitectureError(
                    f"node {j} of NB201 string needs {j} inputs, got {len(entries)}: {part!r}"
                )
            for entry in entries:
                op, sep, source = entry.rpartition("~")
                if not sep or not source.isdigit() or int(source) >= j:
                    raise InvalidArchitectureError(
                        f"malformed input {entry!r} of node {j} in NB201 string {text!r}"
                    )
                ops[(int(source), j)] = op
        if set(ops) != set(NB201_EDGES):
            raise InvalidArchitectureError(f"NB201 string does not name every edge once: {text!r}")
        return self.make(tuple(ops[edge] for edge in NB201_EDGES))

    # ---------------------------------------------------------- encodings
    def to_graph(self, arch: Architecture) -> nx.DiGraph:
        graph = nx.DiGraph()
        output = len(NB201_EDGES) + 1
        graph.add_node(0, **{OP_ATTR: INPUT_OP})
        for k, op in enumerate(arch.ops, start=1):
            graph.add_node(k, **{OP_ATTR: op})
        graph.add_node(output, **{OP_ATTR: OUTPUT_OP})
        for k, (i, j) in enumerate(NB201_EDGES, start=1):
            if i == 0:
                graph.add_edge(0, k)
            if j == 3:
                graph.add_edge(k, output)
            for m, (i2, _) in enumerate(NB201_EDGES, start=1):
                if i2 == j:
                    graph.add_edge(k, m)
        return graph

    def encode_positional(self, arch: Architecture) -> np.ndarray:
        return np.array([self._ops.index(op) for op in arch.ops], dtype=np.int64)

    def encode_onehot(self, arch: Architecture) -> np.ndarray:
        """One-hot op per edge (the wiring is fixed, so the adjacency adds nothing)."""
        encoding = np.zeros((len(NB201_EDGES), len(self._ops)), dtype=np.float32)
        encoding[np.arange(len(NB201_EDGES)), self.encode_positional(arch)] = 1.0
        return encoding.ravel()
