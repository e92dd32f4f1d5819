"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell is a DAG on four nodes; each of the six edges ``i -> j`` (``i < j``)
carries one of five operations, giving 5**6 = 15,625 cells. Architectures
store the ops in the order of the official string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, i.e. edges
``(0,1), (0,2), (1,2), (0,3), (1,3), (2,3)``.
"""

from __future__ import annotations

import re

import networkx as nx

from raynas.architecture import Architecture
from raynas.spaces.base import (
    INPUT_OP,
    OP_ATTR,
    OUTPUT_OP,
    InvalidArchitectureError,
    SearchSpace,
    choice_index,
)
from raynas.spaces.positional import PositionalSpace

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


class NB201Space(PositionalSpace):
    """NAS-Bench-201: six edges, five ops each.

    Structurally a positional space (one choice per edge), from which it takes
    sampling, enumeration, one-edit mutation (one edge's op, as in the NB201
    paper's evolution baseline), neighbours and the per-edge encodings; it
    adds the cell's graph and the official string format.

    ``to_graph`` returns the node-labelled view used by predictor papers
    (BONAS, BANANAS): an input node, one node per edge labelled with its op,
    and an output node; an edge node ``(i,j)`` feeds every edge node leaving
    ``j``. This fixed 8-node graph keeps ``none`` nodes so encodings have a
    fixed size; :meth:`pruned_graph` removes them for isomorphism checks.
    """

    def __init__(self, ops: tuple[str, ...] = NB201_OPS) -> None:
        super().__init__({f"e{i}{j}": ops for i, j in NB201_EDGES}, name="nb201")
        self._ops = tuple(ops)

    @property
    def op_choices(self) -> tuple[str, ...]:
        return self._ops

    def max_nodes(self) -> int:
        return len(NB201_EDGES) + 2

    def make(self, ops: tuple[str, ...] | list[str]) -> Architecture:  # type: ignore[override]
        """Build (and validate) a cell from six ops in edge order."""
        arch = Architecture(self.name, tuple(ops))
        self.validate(arch)
        return arch

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
        """The official string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

        Raises :class:`InvalidArchitectureError` naming the bad value for anything but an NB201 cell
        of this space's ops (another space's architecture, an unknown op, a wrong number of edges).
        """
        self.validate(arch)
        ops = dict(zip(NB201_EDGES, arch.ops))
        nodes = []
        for j in range(1, 4):
            nodes.append("|" + "|".join(f"{ops[(i, j)]}~{i}" for i in range(j)) + "|")
        return "+".join(nodes)

    def text_drawing(self, arch: Architecture) -> list[str]:
        """The cell as one line per node: the sum of its incoming edge ops (``none`` edges left out).

        Example::

            >>> s = NB201Space()
            >>> s.text_drawing(s.make(("nor_conv_3x3", "skip_connect", "none", "none", "none", "avg_pool_3x3")))
            ['node1 = nor_conv_3x3(node0)', 'node2 = skip_connect(node0)', 'node3 = avg_pool_3x3(node2)']
        """
        self.validate(arch)
        ops = dict(zip(NB201_EDGES, arch.ops))
        lines = []
        for j in range(1, 4):
            terms = [f"{ops[(i, j)]}(node{i})" for i in range(j) if ops[(i, j)] != "none"]
            lines.append(f"node{j} = " + (" + ".join(terms) if terms else "0 (every input edge is none)"))
        return lines

    def parse(self, text: str) -> Architecture:
        """Read the official string (or raynas JSON) into a validated cell."""
        text = text.strip()
        if text.startswith("{"):
            return SearchSpace.parse(self, text)
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
        self.validate(arch)  # InvalidArchitectureError naming the bad value, not a wrong graph
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

    def encode_positional(self, arch: Architecture):
        """The index of each edge's op (validated first: InvalidArchitectureError names a bad value)."""
        self.validate(arch)
        return super().encode_positional(arch)

    def encode_onehot(self, arch: Architecture):
        """One-hot of the op on each edge, 30 values (validated first)."""
        self.validate(arch)
        return super().encode_onehot(arch)
