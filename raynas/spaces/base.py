"""The :class:`SearchSpace` interface every raynas space implements.

A space owns the meaning of an :class:`~raynas.architecture.Architecture`:
how to sample and mutate one, whether one is valid, how to draw it as a
networkx graph and how to encode it as a vector for surrogate models.
Searchers only talk to this interface, so a new space works with every
searcher without changes.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Iterator, Sequence

import networkx as nx
import numpy as np

from raynas.architecture import Architecture

#: Node attribute holding the operation label in :meth:`SearchSpace.to_graph`.
OP_ATTR = "op"
INPUT_OP = "input"
OUTPUT_OP = "output"


class InvalidArchitectureError(ValueError):
    """An architecture that does not belong to the space; the message says why."""


class InfiniteSpaceError(TypeError):
    """Raised by :meth:`SearchSpace.enumerate` on a space that cannot be enumerated."""


class SearchSpace(ABC):
    """A space of architectures.

    Subclasses implement :meth:`sample`, :meth:`neighbours`, :meth:`validate`,
    :meth:`to_graph`, :meth:`encode_positional` and :attr:`op_choices`; the rest
    has generic implementations they may override for speed.
    """

    #: Short name, stored in every architecture of the space.
    name: str

    # ----------------------------------------------------------- abstract API
    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A valid architecture drawn at random (uniformly where the space allows)."""

    @abstractmethod
    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """All valid architectures one edit away from ``arch`` (excluding itself)."""

    @abstractmethod
    def validate(self, arch: Architecture) -> None:
        """Raise :class:`InvalidArchitectureError` naming the problem if ``arch`` is invalid."""

    @abstractmethod
    def to_graph(self, arch: Architecture) -> nx.DiGraph:
        """The architecture as a DAG whose nodes carry an ``op`` label.

        Node 0 is the input (op ``"input"``) and the last node the output
        (op ``"output"``); nodes are integers in topological order.
        """

    @abstractmethod
    def encode_positional(self, arch: Architecture) -> np.ndarray:
        """One integer per position: the index of the chosen option."""

    @property
    @abstractmethod
    def op_choices(self) -> tuple[str, ...]:
        """Every operation label a node of :meth:`to_graph` can carry (input/output excluded)."""

    # -------------------------------------------------------- generic helpers
    @property
    def size(self) -> int | None:
        """Number of architectures, or ``None`` when unknown or infinite."""
        return None

    def enumerate(self) -> Iterator[Architecture]:
        """Every architecture of a finite space, each once."""
        raise InfiniteSpaceError(f"search space {self.name!r} cannot be enumerated")

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """A random one-edit neighbour of ``arch``."""
        options = self.neighbours(arch)
        if not options:
            raise InvalidArchitectureError(f"{arch} has no neighbours in space {self.name!r}")
        return options[int(rng.integers(len(options)))]

    def is_valid(self, arch: Architecture) -> bool:
        try:
            self.validate(arch)
        except InvalidArchitectureError:
            return False
        return True

    def check_space(self, arch: Architecture) -> None:
        """Shared first step of :meth:`validate`: the architecture names this space."""
        if not isinstance(arch, Architecture):
            raise InvalidArchitectureError(
                f"expected an Architecture, got {type(arch).__name__}: {arch!r}"
            )
        if arch.space != self.name:
            raise InvalidArchitectureError(
                f"architecture belongs to space {arch.space!r}, not {self.name!r}"
            )

    def describe(self, arch: Architecture) -> str:
        """Human-readable form; spaces with a published string format override this."""
        return arch.to_json()

    def text_drawing(self, arch: Architecture) -> list[str]:
        """The architecture as lines of text, one per computed node: ``n2 = conv3x3(n0, n1)``.

        Read from :meth:`to_graph` (a node applies its op to the sum of its
        inputs); spaces with a more natural form (NB201's edge ops) override it.

        Example::

            >>> from raynas.spaces import NB101Space
            >>> NB101Space().text_drawing(NB101Space().make([[0, 1], [0, 0]], ["input", "output"]))
            ['n1 = output(n0)']
        """
        graph = self.to_graph(arch)
        lines = []
        for node in nx.topological_sort(graph):
            inputs = sorted(graph.predecessors(node))
            if inputs:
                lines.append(f"n{node} = {graph.nodes[node].get('op', '?')}({', '.join(f'n{i}' for i in inputs)})")
        return lines

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`describe`; also accepts the JSON form."""
        arch = Architecture.from_json(text)
        self.validate(arch)
        return arch

    def encode_onehot(self, arch: Architecture) -> np.ndarray:
        """Flattened upper-triangular adjacency of :meth:`to_graph` plus one-hot node ops.

        Spaces whose graphs vary in size pad to :meth:`max_nodes` so every
        encoding of a space has the same length.
        """
        graph = self.to_graph(arch)
        n = self.max_nodes()
        adjacency = np.zeros((n, n), dtype=np.float32)
        for u, v in graph.edges:
            adjacency[u, v] = 1.0
        vocabulary = {op: i for i, op in enumerate(self.op_choices)}
        ops = np.zeros((n, len(vocabulary)), dtype=np.float32)
        for node, op in graph.nodes(data=OP_ATTR):
            if op in vocabulary:
                ops[node, vocabulary[op]] = 1.0
        return np.concatenate([adjacency[np.triu_indices(n, k=1)], ops.ravel()])

    def max_nodes(self) -> int:
        """Largest number of nodes :meth:`to_graph` returns in this space."""
        raise NotImplementedError(f"space {self.name!r} does not define max_nodes()")

    def pruned_graph(self, arch: Architecture) -> nx.DiGraph:
        """:meth:`to_graph` without nodes that cannot affect the output.

        Nodes labelled ``none`` (a zero op) are dropped, then every node not on
        a path from the input to the output.
        """
        graph = self.to_graph(arch)
        graph = graph.subgraph(n for n, op in graph.nodes(data=OP_ATTR) if op != "none").copy()
        source, sink = min(graph.nodes), max(graph.nodes)
        if source not in graph or sink not in graph or not nx.has_path(graph, source, sink):
            empty = nx.DiGraph()
            empty.add_node(0, **{OP_ATTR: "disconnected"})
            return empty
        live = (nx.descendants(graph, source) | {source}) & (nx.ancestors(graph, sink) | {sink})
        return graph.subgraph(live).copy()

    def canonical_hash(self, arch: Architecture) -> str:
        """Equal for isomorphic (pruned) cells: networkx's Weisfeiler-Lehman graph hash.

        WL hashing labels nodes by their op and iterates over in- and out-
        neighbourhoods (the graph is directed), which separates the small DAGs
        of cell spaces; isomorphic graphs always get the same hash.
        """
        graph = self.pruned_graph(arch)
        with warnings.catch_warnings():  # networkx >= 3.5 notes that directed hashes changed
            warnings.filterwarnings("ignore", message="The hashes produced for directed graphs changed",
                                    category=UserWarning)
            return nx.weisfeiler_lehman_graph_hash(graph, node_attr=OP_ATTR, iterations=len(graph))

    def is_isomorphic(self, a: Architecture, b: Architecture) -> bool:
        """Exact check (VF2) that two architectures have isomorphic pruned graphs."""
        return nx.is_isomorphic(
            self.pruned_graph(a),
            self.pruned_graph(b),
            node_match=lambda x, y: x.get(OP_ATTR) == y.get(OP_ATTR),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, size={self.size})"


def choice_index(options: Sequence[str], value: str, where: str) -> int:
    """Index of ``value`` in ``options`` or a clear error naming ``where`` it was found."""
    try:
        return list(options).index(value)
    except ValueError:
        raise InvalidArchitectureError(
            f"{where}: {value!r} is not one of {list(options)}"
        ) from None
