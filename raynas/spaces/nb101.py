"""The NAS-Bench-101 cell space (Ying et al., ICML 2019).

A cell is a DAG of at most 7 nodes and at most 9 edges, given by an
upper-triangular 0/1 adjacency matrix and one op label per node: node 0 is
``"input"``, the last node ``"output"`` and every intermediate node one of
``conv3x3-bn-relu``, ``conv1x1-bn-relu`` or ``maxpool3x3`` (the published
label strings).

The validity and pruning rules follow the ``ModelSpec`` of the official
``nasbench`` API: *pruning* removes every node that is not on a path from
the input to the output (its row, its column and its op); a cell is valid when,
after pruning, the input still reaches the output and the cell has at most
``max_nodes`` nodes and ``max_edges`` edges.

raynas always stores the **pruned** form, so one cell has one representation:
:meth:`NB101Space.make`, :meth:`~NB101Space.sample`, :meth:`~NB101Space.mutate`
and :meth:`~NB101Space.neighbours` return pruned cells and
:meth:`~NB101Space.validate` rejects a cell that still has a dead node.

Example:
    >>> space = NB101Space()
    >>> arch = space.make([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", "maxpool3x3", "output"])
    >>> space.describe(arch)
    '[[0,1,1],[0,0,1],[0,0,0]]|input,maxpool3x3,output'
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple, Sequence

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

NB101_OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
NB101_MAX_NODES = 7
NB101_MAX_EDGES = 9
#: Number of unique (non-isomorphic) valid cells reported by the NAS-Bench-101 paper.
#: The space is not enumerated here, so :attr:`NB101Space.size` is ``None``.
NB101_UNIQUE_CELLS = 423_624

#: How many random single edits :meth:`NB101Space.mutate` tries before giving up.
_MUTATION_ATTEMPTS = 1000
#: How many random 7-node matrices :meth:`NB101Space.sample` draws before giving up
#: (a draw is accepted with probability ~0.7 for the default limits).
_SAMPLE_ATTEMPTS = 100_000

Matrix = tuple[tuple[int, ...], ...]


class PaddedMutation(NamedTuple):
    """The trace of one :meth:`NB101Space.mutate` step.

    ``parent_matrix``/``parent_ops`` is the padded (``max_nodes``-node,
    unpruned) form of the parent, ``matrix``/``ops`` the same form after the
    single edit, and ``child`` its pruned, validated cell.
    """

    parent_matrix: Matrix
    parent_ops: tuple[str, ...]
    matrix: Matrix
    ops: tuple[str, ...]
    child: Architecture


class NB101Space(SearchSpace):
    """NAS-Bench-101: node-labelled DAGs of at most 7 nodes and 9 edges.

    Architectures are ``Architecture("nb101", ops, matrix)`` where ``ops``
    includes the ``"input"`` and ``"output"`` labels, ``len(ops) == len(matrix)``
    and the matrix is the pruned, upper-triangular adjacency matrix.

    Args:
        max_nodes: most nodes of a (pruned) cell, input and output included.
        max_edges: most edges of a (pruned) cell.
        ops: labels an intermediate node can carry.
    """

    name = "nb101"

    def __init__(
        self,
        max_nodes: int = NB101_MAX_NODES,
        max_edges: int = NB101_MAX_EDGES,
        ops: Sequence[str] = NB101_OPS,
    ) -> None:
        if max_nodes < 2:
            raise ValueError(f"max_nodes must be >= 2 (input and output), got {max_nodes}")
        if max_edges < 1:
            raise ValueError(f"max_edges must be >= 1, got {max_edges}")
        ops = tuple(str(op) for op in ops)
        if not ops or len(set(ops)) != len(ops):
            raise ValueError(f"ops must be non-empty and distinct, got {ops}")
        if INPUT_OP in ops or OUTPUT_OP in ops:
            raise ValueError(f"ops must not contain {INPUT_OP!r} or {OUTPUT_OP!r}: {ops}")
        self._max_nodes = int(max_nodes)
        self._max_edges = int(max_edges)
        self._ops = ops
        self._pairs = tuple(
            (i, j) for i in range(self._max_nodes) for j in range(i + 1, self._max_nodes)
        )

    @property
    def op_choices(self) -> tuple[str, ...]:
        return self._ops

    @property
    def max_edges(self) -> int:
        return self._max_edges

    @property
    def size(self) -> None:
        """``None``: the space is not enumerated (the paper counts
        :data:`NB101_UNIQUE_CELLS` = 423,624 unique cells)."""
        return None

    def max_nodes(self) -> int:
        return self._max_nodes

    # ------------------------------------------------------------ structure
    def _check_structure(self, matrix: Any, ops: Any) -> tuple[Matrix, tuple[str, ...]]:
        """Check everything that does not depend on pruning; return normalised tuples.

        Checks: matrix present and square, one op per node, 0/1 entries, strictly
        upper triangular, at least two nodes, ``input``/``output`` at the ends and
        intermediate labels from :attr:`op_choices`.
        """
        if matrix is None:
            raise InvalidArchitectureError("NB101 cells need an adjacency 'matrix', got None")
        if ops is None or isinstance(ops, str):
            raise InvalidArchitectureError(f"NB101 'ops' must be a list of labels, got {ops!r}")
        try:
            rows = [list(row) for row in matrix]
        except TypeError:
            raise InvalidArchitectureError(
                f"matrix must be a list of rows, got {matrix!r}"
            ) from None
        n = len(rows)
        for i, row in enumerate(rows):
            if len(row) != n:
                raise InvalidArchitectureError(
                    f"matrix is not square: row {i} has {len(row)} entries, expected {n}"
                )
        ops = tuple(str(op) for op in ops)
        if len(ops) != n:
            raise InvalidArchitectureError(
                f"ops has {len(ops)} labels but the matrix has {n} nodes"
            )
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if isinstance(value, str) or value not in (0, 1):
                    raise InvalidArchitectureError(
                        f"matrix entry [{i}][{j}] is {value!r}, entries must be 0 or 1"
                    )
                if value and j <= i:
                    raise InvalidArchitectureError(
                        f"matrix is not upper triangular: entry [{i}][{j}] "
                        f"(on or below the diagonal) is 1"
                    )
        if n < 2:
            raise InvalidArchitectureError(
                f"a cell needs at least 2 nodes (input and output), got {n}"
            )
        if ops[0] != INPUT_OP:
            raise InvalidArchitectureError(
                f"first op (node 0) must be {INPUT_OP!r}, got {ops[0]!r}"
            )
        if ops[-1] != OUTPUT_OP:
            raise InvalidArchitectureError(
                f"last op (node {n - 1}) must be {OUTPUT_OP!r}, got {ops[-1]!r}"
            )
        for k in range(1, n - 1):
            choice_index(self._ops, ops[k], f"op of node {k}")
        return tuple(tuple(int(v) for v in row) for row in rows), ops

    @staticmethod
    def _live_nodes(matrix: Matrix) -> list[int]:
        """Nodes on a path from node 0 to the last node, in order (empty if none)."""
        n = len(matrix)
        from_input = {0}
        for j in range(1, n):  # upper triangular: one pass in index order is a BFS
            if any(matrix[i][j] for i in from_input if i < j):
                from_input.add(j)
        to_output = {n - 1}
        for i in range(n - 2, -1, -1):
            if any(matrix[i][j] for j in to_output if j > i):
                to_output.add(i)
        if n - 1 not in from_input:
            return []
        return sorted(from_input & to_output)

    def prune(self, matrix: Any, ops: Any) -> tuple[Matrix, tuple[str, ...]]:
        """Remove every node not on an input -> output path (the ``ModelSpec`` rule).

        Returns the pruned ``(matrix, ops)`` as tuples. Raises
        :class:`InvalidArchitectureError` if the structure is malformed (see
        :meth:`validate`) or the input does not reach the output. Node and edge
        limits are *not* checked here (they apply to the result; see :meth:`make`).
        """
        matrix, ops = self._check_structure(matrix, ops)
        live = self._live_nodes(matrix)
        if not live:
            raise InvalidArchitectureError(
                f"input and output are disconnected: no path from node 0 to node {len(ops) - 1}"
            )
        return (
            tuple(tuple(matrix[i][j] for j in live) for i in live),
            tuple(ops[i] for i in live),
        )

    # ------------------------------------------------------------- creation
    def make(self, matrix: Any, ops: Sequence[str]) -> Architecture:
        """Prune, validate and return a cell (any square 0/1 matrix and one op per node).

        Unlike the ``nasbench`` API, labels of nodes that pruning removes must
        still be valid NB101 labels, so that typos are never silently dropped.
        """
        pruned_matrix, pruned_ops = self.prune(matrix, ops)
        arch = Architecture(self.name, pruned_ops, pruned_matrix)
        self.validate(arch)
        return arch

    def _try_make(self, matrix: Any, ops: Sequence[str]) -> Architecture | None:
        try:
            return self.make(matrix, ops)
        except InvalidArchitectureError:
            return None

    def sample(self, rng: np.random.Generator) -> Architecture:
        """The NAS-Bench-101 paper's sampler.

        Draws a ``max_nodes``-node upper-triangular matrix with Bernoulli(0.5)
        entries and uniform intermediate ops, and rejects it until it is valid
        after pruning; returns the pruned cell.
        """
        n = self._max_nodes
        for _ in range(_SAMPLE_ATTEMPTS):
            matrix = np.triu(rng.integers(0, 2, size=(n, n)), k=1)
            picks = rng.integers(len(self._ops), size=n)
            ops = [INPUT_OP, *(self._ops[k] for k in picks[1:-1]), OUTPUT_OP]
            arch = self._try_make(matrix.tolist(), ops)
            if arch is not None:
                return arch
        raise InvalidArchitectureError(  # pragma: no cover - only for absurd limits
            f"no valid cell in {_SAMPLE_ATTEMPTS} random draws "
            f"(max_nodes={n}, max_edges={self._max_edges})"
        )

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every distinct valid cell one edit away: one edge flip or one op change.

        Edits are applied to the stored (pruned) form. Padding it with
        *disconnected* nodes would give the same set: a single edit cannot put
        an isolated node on an input -> output path (that needs an edge in and
        an edge out), so such nodes are pruned away again. Cells that grow a
        node come from :meth:`mutate`, which pads with wired dead nodes.
        """
        self.validate(arch)
        assert arch.matrix is not None
        n = len(arch.ops)
        result: dict[Architecture, None] = {}
        for i in range(n):
            for j in range(i + 1, n):
                matrix = [list(row) for row in arch.matrix]
                matrix[i][j] = 1 - matrix[i][j]
                child = self._try_make(matrix, arch.ops)
                if child is not None and child != arch:
                    result.setdefault(child)
        for k in range(1, n - 1):
            for op in self._ops:
                if op != arch.ops[k]:
                    ops = list(arch.ops)
                    ops[k] = op
                    child = self._try_make(arch.matrix, ops)
                    if child is not None and child != arch:
                        result.setdefault(child)
        return list(result)

    def _random_padding(
        self, arch: Architecture, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[str]]:
        """A random unpruned ``max_nodes``-node form of ``arch`` whose extra nodes are dead.

        The live intermediate nodes keep their order at random padded positions;
        the output goes last. Each extra node gets a random op and is, with
        probability 1/2 each, a *source* (no incoming edges) or a *sink* (no
        outgoing edges); every other edge touching an extra node is drawn
        Bernoulli(0.5). A source cannot be reached from the input and a sink
        cannot reach the output, so pruning the result gives ``arch`` back, yet
        one edge flip can bring an extra node to life (a live node -> source
        with a path on, or sink -> output), or a sink -> source pair at once.
        """
        assert arch.matrix is not None
        size, n = self._max_nodes, len(arch.ops)
        inner = sorted(rng.choice(np.arange(1, size - 1), size=n - 2, replace=False).tolist())
        position = [0, *inner, size - 1]
        matrix = np.zeros((size, size), dtype=np.int64)
        for a in range(n):
            for b in range(a + 1, n):
                matrix[position[a], position[b]] = arch.matrix[a][b]
        ops: list[str] = [""] * size
        for a, p in enumerate(position):
            ops[p] = arch.ops[a]
        extra = [p for p in range(size) if p not in set(position)]
        is_source = {p: bool(rng.integers(2)) for p in extra}
        for p in extra:
            ops[p] = self._ops[int(rng.integers(len(self._ops)))]
        for i, j in self._pairs:
            if i not in is_source and j not in is_source:
                continue  # live -> live edges come from arch
            if is_source.get(j) is True or is_source.get(i) is False:
                continue  # nothing enters a source, nothing leaves a sink
            matrix[i, j] = int(rng.integers(2))
        return matrix, ops

    def padded_mutation(self, arch: Architecture, rng: np.random.Generator) -> PaddedMutation:
        """:meth:`mutate` with its trace: the padded parent, the single edit, the child.

        Each attempt pads ``arch`` to ``max_nodes`` nodes (:meth:`_random_padding`),
        picks one edit uniformly among all edge flips ``i < j`` and all changes
        of an intermediate node's op to a different op, and applies it; the
        attempt is kept if the pruned result is valid and differs from ``arch``.
        """
        self.validate(arch)
        n = self._max_nodes
        op_edits = [(k, op) for k in range(1, n - 1) for op in range(len(self._ops) - 1)]
        for _ in range(_MUTATION_ATTEMPTS):
            parent_matrix, parent_ops = self._random_padding(arch, rng)
            matrix, ops = parent_matrix.copy(), list(parent_ops)
            edit = int(rng.integers(len(self._pairs) + len(op_edits)))
            if edit < len(self._pairs):
                i, j = self._pairs[edit]
                matrix[i, j] = 1 - matrix[i, j]
            else:
                k, other = op_edits[edit - len(self._pairs)]
                ops[k] = [op for op in self._ops if op != ops[k]][other]
            child = self._try_make(matrix.tolist(), ops)
            if child is not None and child != arch:
                return PaddedMutation(
                    tuple(map(tuple, parent_matrix.tolist())),
                    tuple(parent_ops),
                    tuple(map(tuple, matrix.tolist())),
                    tuple(ops),
                    child,
                )
        raise InvalidArchitectureError(
            f"no valid one-edit mutation of {self.describe(arch)} in {_MUTATION_ATTEMPTS} tries"
        )

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """Exactly one edit (an edge flip or an op change) on a padded form of ``arch``.

        Like the NAS-Bench-101 paper's evolution, which mutates the unpruned
        7-node matrix, the edit is applied to a ``max_nodes``-node form in which
        ``arch`` is padded with random *dead* nodes (each with either no inputs
        or no outputs, see :meth:`_random_padding`), so one flip can also add a
        node. Unlike the paper's mutation (each edge/op mutated with a small
        probability) exactly one edit is made; draws are repeated until the
        pruned result is valid and differs from ``arch``.
        """
        return self.padded_mutation(arch, rng).child

    # ----------------------------------------------------------- validation
    def validate(self, arch: Architecture) -> None:
        """Raise :class:`InvalidArchitectureError` naming the first problem found.

        Order: space, structure (matrix present, square, one op per node, 0/1
        entries, upper triangular, input/output/intermediate labels), then
        connectivity, node and edge limits after pruning, and finally that the
        cell is stored pruned (no dead node).
        """
        self.check_space(arch)
        matrix, ops = self._check_structure(arch.matrix, arch.ops)
        n = len(ops)
        live = self._live_nodes(matrix)
        if not live:
            raise InvalidArchitectureError(
                f"input and output are disconnected: no path from node 0 to node {n - 1}"
            )
        if len(live) > self._max_nodes:
            raise InvalidArchitectureError(
                f"too many nodes: {len(live)} after pruning, at most {self._max_nodes} allowed"
            )
        edges = sum(matrix[i][j] for i in live for j in live)
        if edges > self._max_edges:
            raise InvalidArchitectureError(
                f"too many edges: {edges} after pruning, at most {self._max_edges} allowed"
            )
        if len(live) != n:
            dead = sorted(set(range(n)) - set(live))
            raise InvalidArchitectureError(
                f"cell is not pruned: node(s) {dead} are not on a path from input to output "
                f"(build cells with NB101Space.make, which prunes)"
            )

    # ------------------------------------------------------ string formats
    def describe(self, arch: Architecture) -> str:
        """Compact form ``[[0,1,..],...]|input,op,...,output`` (matrix rows, then node ops).

        Validated first: :class:`InvalidArchitectureError` names a bad value (another space's
        architecture, an unknown op, a malformed or unpruned matrix).
        """
        self.validate(arch)
        matrix = json.dumps([list(row) for row in arch.matrix], separators=(",", ":"))
        return f"{matrix}|{','.join(arch.ops)}"

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`describe`; also accepts raynas JSON (which must be pruned).

        The compact form goes through :meth:`make`, so an unpruned matrix is
        accepted and the pruned cell returned.
        """
        text = text.strip()
        if text.startswith("{"):
            return super().parse(text)
        matrix_text, sep, ops_text = text.partition("|")
        if not sep:
            raise InvalidArchitectureError(
                f"NB101 string needs the form '<matrix>|<op>,<op>,...', got {text!r}"
            )
        try:
            matrix = json.loads(matrix_text)
        except json.JSONDecodeError:
            raise InvalidArchitectureError(
                f"matrix part of NB101 string is not a JSON list of rows: {matrix_text!r}"
            ) from None
        if not isinstance(matrix, list):
            raise InvalidArchitectureError(
                f"matrix part of NB101 string is not a list of rows: {matrix_text!r}"
            )
        ops = [op.strip() for op in ops_text.split(",")]
        return self.make(matrix, ops)

    # ---------------------------------------------------------- encodings
    def to_graph(self, arch: Architecture) -> nx.DiGraph:
        """Nodes ``0..n-1`` labelled with their ops (as stored), one edge per matrix 1 (validated first)."""
        self.validate(arch)
        graph = nx.DiGraph()
        for k, op in enumerate(arch.ops):
            graph.add_node(k, **{OP_ATTR: op})
        for i, row in enumerate(arch.matrix):
            for j, value in enumerate(row):
                if value:
                    graph.add_edge(i, j)
        return graph

    def padded_layout(self, arch: Architecture) -> tuple[np.ndarray, list[str | None]]:
        """The fixed-size layout used by the encodings.

        A cell of ``n`` nodes keeps nodes ``0..n-2`` at their indices and puts
        the output at index ``max_nodes - 1``; the absent nodes ``n-1 ..
        max_nodes-2`` have no edges and op ``None``. Validated first (both encodings use it).
        """
        self.validate(arch)
        size, n = self._max_nodes, len(arch.ops)
        if n > size:
            raise InvalidArchitectureError(
                f"too many nodes: {n}, at most {size} allowed"
            )
        position = [*range(n - 1), size - 1]
        matrix = np.zeros((size, size), dtype=np.int64)
        ops: list[str | None] = [None] * size
        for a in range(n):
            ops[position[a]] = arch.ops[a]
            for b in range(n):
                matrix[position[a], position[b]] = arch.matrix[a][b]
        return matrix, ops

    @property
    def absent_op_index(self) -> int:
        """Op index :meth:`encode_positional` uses for an absent (padding) node."""
        return len(self._ops)

    def encode_positional(self, arch: Architecture) -> np.ndarray:
        """The 21 upper-triangular bits of the padded matrix, then the ops of nodes 1..5.

        Uses :meth:`padded_layout` (output at index ``max_nodes - 1``). Ops are
        indices into :attr:`op_choices`; an absent node gets the dedicated index
        :attr:`absent_op_index` (= ``len(op_choices)`` = 3), so every value is a
        non-negative category.
        """
        matrix, ops = self.padded_layout(arch)
        size = self._max_nodes
        bits = matrix[np.triu_indices(size, k=1)]
        op_codes = [
            self.absent_op_index if op is None else self._ops.index(op) for op in ops[1:-1]
        ]
        return np.concatenate([bits, np.array(op_codes, dtype=np.int64)]).astype(np.int64)

    def encode_onehot(self, arch: Architecture) -> np.ndarray:
        """Padded upper-triangular adjacency plus one-hot ops of the intermediate slots.

        The generic encoder would put the output of a small cell in the middle
        of the padding; this one uses :meth:`padded_layout` so the output is
        always at index ``max_nodes - 1``. Absent nodes have an all-zero op row;
        the length is ``21 + 5 * 3 = 36`` for the default space.
        """
        matrix, ops = self.padded_layout(arch)
        size = self._max_nodes
        onehot = np.zeros((size - 2, len(self._ops)), dtype=np.float32)
        for k, op in enumerate(ops[1:-1]):
            if op is not None:
                onehot[k, self._ops.index(op)] = 1.0
        bits = matrix[np.triu_indices(size, k=1)].astype(np.float32)
        return np.concatenate([bits, onehot.ravel()])
