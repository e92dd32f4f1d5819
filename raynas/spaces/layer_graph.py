"""The layer-graph view of an architecture that OTMANN (Kandasamy et al., NeurIPS 2018) compares.

A :class:`LayerGraph` is a DAG of *layers*. Node 0 is the special input
layer ``ip``, the last node the special output layer ``op``; every node has a
**label** (``conv3``, ``max-pool``, ``relu``, ...), a number of **units**
(channels / neurons; ``0`` where the layer has none of its own) and a
**layer mass** ``ℓm``, the amount of "stuff" the optimal-transport problem
matches between two networks. Each node also carries the six **path-length
features** of the paper: the shortest, longest and random-walk path lengths
from ``ip`` to the node and from the node to ``op``.

Layer masses (the paper's definition, Section 3 / the figures on the slides):

* a processing layer with parameters (conv, res, MLP hidden layers) has mass
  ``units × (sum of the units of its parents)``; a layer fed directly by
  ``ip`` has mass ``units`` (the input's dimension is not counted);
* fully connected layers of a CNN get ``0.1 × units × incoming units`` (the
  paper's down-weighting: a conv unit's weights are shared over positions);
* pooling layers have no parameters: their units and their mass are the sum
  of their parents' units;
* decision layers (``softmax``, MLP ``linear`` output) share ``ζ × total``
  equally, and ``ip`` and ``op`` each get ``ζ × total``, where ``total`` is
  the mass of all processing layers and ``ζ = 0.1`` (checked against the
  ResNet figure of the slides: ip = op = softmax = 57,735 = 0.1 × 577,356).

Cell spaces (NAS-Bench-201, NAS-Bench-101) are read through
:meth:`SearchSpace.pruned_graph`, so ``none`` ops (which compute nothing)
and dead nodes are removed first. Their ops become layers with canonical
labels (``nor_conv_3x3``/``conv3x3-bn-relu`` → ``conv3``, ``nor_conv_1x1`` /
``conv1x1-bn-relu`` → ``conv1``, ``avg_pool_3x3`` → ``avg-pool``,
``maxpool3x3`` → ``max-pool``, ``skip_connect`` → ``skip``), each with the
cell's channel count ``C`` as units. Cells aggregate by summation (NB201) or
summation after projection (NB101), so every op sees ``C`` input channels,
including the ops fed by the cell input (which, unlike a network's input,
already has ``C`` channels): conv mass ``C × C``. Parameter-free ops (pools,
skip) get the mass of their input, ``C``, as pools do in the paper; because
that makes them nearly invisible next to convs (``C`` vs ``C²``) while a
skip connection changes a cell's accuracy a lot, they are given
``param_free_mass`` (default ``C²/4``) instead — a deviation chosen by a
small study on NAS-Bench-201 (held-out Spearman correlation of the GP's
posterior mean after 100 random cells, 2 seeds: ``C``: 0.30–0.47,
``C²/4``: 0.39–0.58, ``C²``: 0.43–0.52; noisy).

Positional spaces become a chain ``ip → position_0 → ... → op`` of layers of
mass 1 labelled ``"<position>=<choice>"``. Any other space falls back on its
pruned ``to_graph`` with unit masses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import networkx as nx
import numpy as np

from raynas.architecture import Architecture
from raynas.spaces.base import OP_ATTR, SearchSpace

IP = "ip"
OP = "op"
#: ζ: mass of ``ip``/``op`` (and, shared, of the decision layers) relative to the processing mass.
ZETA = 0.1
#: Path-length feature names, in the column order of :attr:`LayerGraph.paths`.
PATH_FEATURES: tuple[str, ...] = ("sp_ip", "lp_ip", "rw_ip", "sp_op", "lp_op", "rw_op")

#: Canonical layer labels of cell ops (NB201 and NB101 names).
CELL_LABELS: dict[str, str] = {
    "nor_conv_3x3": "conv3",
    "nor_conv_1x1": "conv1",
    "avg_pool_3x3": "avg-pool",
    "skip_connect": "skip",
    "conv3x3-bn-relu": "conv3",
    "conv1x1-bn-relu": "conv1",
    "maxpool3x3": "max-pool",
}
#: Labels of parameter-free layers (their units are those of their inputs).
PARAM_FREE: frozenset[str] = frozenset({"max-pool", "avg-pool", "skip"})
#: Labels of decision layers (the network's outputs, before ``op``).
DECISION: frozenset[str] = frozenset({"softmax", "linear-out"})


@dataclass(frozen=True, eq=False)
class LayerGraph:
    """A network as OTMANN sees it.

    Graphs compare and hash by identity (they hold arrays).

    Attributes:
        labels: one label per node; ``labels[0] == "ip"``, ``labels[-1] == "op"``.
        units: units per node (``0`` for layers without units of their own), shape ``(n,)``.
        masses: layer masses ``ℓm``, shape ``(n,)``, float64, all ``> 0``.
        edges: ``(u, v)`` pairs with ``u < v`` (nodes are in topological order).
        paths: path-length features, shape ``(n, 6)``, columns :data:`PATH_FEATURES`.
    """

    labels: tuple[str, ...]
    units: np.ndarray
    masses: np.ndarray
    edges: tuple[tuple[int, int], ...]
    paths: np.ndarray

    @property
    def num_layers(self) -> int:
        return len(self.labels)

    @property
    def total_mass(self) -> float:
        return float(self.masses.sum())  # cheap: a handful of layers

    def to_networkx(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        for k, label in enumerate(self.labels):
            graph.add_node(k, label=label, units=int(self.units[k]), mass=float(self.masses[k]))
        graph.add_edges_from(self.edges)
        return graph

    def describe(self) -> str:
        """One line per layer in the slides' style: ``#k label, units, (mass)``."""
        return "\n".join(
            f"#{k} {label}, {int(u) if u else ''}, ({m:.0f})"
            for k, (label, u, m) in enumerate(zip(self.labels, self.units, self.masses))
        )


def path_lengths(num_nodes: int, edges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Shortest, longest and random-walk path lengths from node 0 and to the last node.

    Nodes must be in topological order and every node on a path from node 0
    to the last one. The random-walk length from ``ip`` is the expected number
    of hops of a walk from the node back to ``ip`` choosing a parent uniformly
    at each step; to ``op``, forward choosing a child uniformly (the paper's
    ``δ_rw``). Returns an ``(n, 6)`` array with columns :data:`PATH_FEATURES`.
    """
    parents: list[list[int]] = [[] for _ in range(num_nodes)]
    children: list[list[int]] = [[] for _ in range(num_nodes)]
    for u, v in edges:
        if not 0 <= u < v < num_nodes:
            raise ValueError(f"edge {(u, v)} is not forward in a {num_nodes}-node topological order")
        parents[v].append(u)
        children[u].append(v)
    out = np.zeros((num_nodes, 6), dtype=np.float64)
    for v in range(1, num_nodes):
        if not parents[v]:
            raise ValueError(f"node {v} is not reachable from the input")
        ps = parents[v]
        out[v, 0] = 1 + min(out[p, 0] for p in ps)
        out[v, 1] = 1 + max(out[p, 1] for p in ps)
        out[v, 2] = 1 + sum(out[p, 2] for p in ps) / len(ps)
    for u in range(num_nodes - 2, -1, -1):
        if not children[u]:
            raise ValueError(f"node {u} does not reach the output")
        cs = children[u]
        out[u, 3] = 1 + min(out[c, 3] for c in cs)
        out[u, 4] = 1 + max(out[c, 4] for c in cs)
        out[u, 5] = 1 + sum(out[c, 5] for c in cs) / len(cs)
    return out


def build_layer_graph(
    labels: Sequence[str],
    units: Sequence[int],
    edges: Sequence[tuple[int, int]],
    *,
    masses: Sequence[float] | None = None,
    fc_factor: float = 0.1,
    zeta: float = ZETA,
    min_mass: float = 1.0,
) -> LayerGraph:
    """Assemble a :class:`LayerGraph`, computing the paper's masses unless ``masses`` is given.

    ``labels[0]`` must be ``"ip"`` and ``labels[-1]`` ``"op"``; nodes in
    topological order. With ``masses`` given, only the ``ip``/``op``/decision
    entries (which depend on the total) are recomputed. ``min_mass`` keeps
    masses positive for networks with no processing layer (e.g. a cell whose
    input is disconnected from its output).
    """
    labels = tuple(labels)
    n = len(labels)
    if n < 2 or labels[0] != IP or labels[-1] != OP:
        raise ValueError(f"a layer graph runs from {IP!r} to {OP!r}, got labels {labels}")
    unit_arr = np.asarray(units, dtype=np.float64).copy()
    parents: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        parents[v].append(u)
    mass = np.zeros(n, dtype=np.float64)
    decision = [k for k in range(1, n - 1) if labels[k] in DECISION]
    for k in range(1, n - 1):
        if labels[k] in DECISION:
            continue
        if masses is not None:
            mass[k] = float(masses[k])
            continue
        incoming = sum(unit_arr[p] for p in parents[k])
        from_input = all(p == 0 for p in parents[k])
        if labels[k] in PARAM_FREE:
            unit_arr[k] = incoming
            mass[k] = incoming
        elif from_input:
            mass[k] = unit_arr[k]
        elif labels[k] == "fc":
            mass[k] = fc_factor * unit_arr[k] * incoming
        else:
            mass[k] = unit_arr[k] * incoming
    total = mass.sum()
    special = max(zeta * total, min_mass)
    mass[0] = mass[-1] = special
    for k in decision:
        mass[k] = special / len(decision)
    mass = np.maximum(mass, min_mass * 1e-3)  # strictly positive (e.g. a 0-unit input to a pool)
    return LayerGraph(
        labels=labels,
        units=unit_arr.astype(np.int64),
        masses=mass,
        edges=tuple((int(u), int(v)) for u, v in edges),
        paths=path_lengths(n, edges),
    )


# ---------------------------------------------------------------- per space
def _cell_layer_graph(
    space: SearchSpace, arch: Architecture, channels: int, param_free_mass: float | None
) -> LayerGraph:
    graph = space.pruned_graph(arch)
    nodes = sorted(graph.nodes)
    if len(nodes) < 2:  # input disconnected from output: the cell outputs zeros
        return build_layer_graph((IP, OP), (channels, 0), [(0, 1)])
    index = {node: k for k, node in enumerate(nodes)}
    labels, units, masses = [], [], []
    free = channels * channels / 4 if param_free_mass is None else param_free_mass
    for k, node in enumerate(nodes):
        op = graph.nodes[node][OP_ATTR]
        if k == 0:
            labels.append(IP)
        elif k == len(nodes) - 1:
            labels.append(OP)
        else:
            labels.append(CELL_LABELS.get(op, op))
        units.append(channels if k < len(nodes) - 1 else 0)
        label = labels[-1]
        masses.append(free if label in PARAM_FREE else float(channels * channels))
    edges = sorted((index[u], index[v]) for u, v in graph.edges)
    return build_layer_graph(labels, units, edges, masses=masses)


def _positional_layer_graph(space: SearchSpace, arch: Architecture) -> LayerGraph:
    graph = space.to_graph(arch)
    n = graph.number_of_nodes()
    labels = [IP, *(graph.nodes[k][OP_ATTR] for k in range(1, n - 1)), OP]
    return build_layer_graph(
        labels, [1] * n, [(k, k + 1) for k in range(n - 1)], masses=[1.0] * n, zeta=1.0 / max(n - 2, 1)
    )


def _generic_layer_graph(space: SearchSpace, arch: Architecture) -> LayerGraph:
    graph = space.pruned_graph(arch)
    nodes = sorted(graph.nodes)
    if len(nodes) < 2:
        return build_layer_graph((IP, OP), (1, 0), [(0, 1)])
    index = {node: k for k, node in enumerate(nodes)}
    labels = [IP, *(str(graph.nodes[v][OP_ATTR]) for v in nodes[1:-1]), OP]
    return build_layer_graph(
        labels, [1] * len(nodes), sorted((index[u], index[v]) for u, v in graph.edges),
        masses=[1.0] * len(nodes),
    )


def layer_graph(
    space: SearchSpace,
    arch: Architecture,
    *,
    channels: int | None = None,
    param_free_mass: float | None = None,
) -> LayerGraph:
    """The :class:`LayerGraph` of ``arch`` in ``space`` (any raynas space).

    Args:
        space: the search space ``arch`` belongs to.
        arch: the architecture.
        channels: cell channel count ``C`` for cell spaces (default 16 for
            NB201, the first stage of its network; 128 for NB101, its stem).
        param_free_mass: mass of a parameter-free cell op (pool, skip);
            default ``C²/4``. The paper's rule would give ``C`` (the mass of
            its input); pass ``channels`` to get it.

    Spaces may define ``layer_graph(arch)`` themselves (the macro spaces do);
    that method is used when present.
    """
    own = getattr(space, "layer_graph", None)
    if callable(own):
        return own(arch)
    from raynas.spaces.nb101 import NB101Space
    from raynas.spaces.nb201 import NB201Space
    from raynas.spaces.positional import PositionalSpace

    if isinstance(space, NB201Space):
        return _cell_layer_graph(space, arch, channels or 16, param_free_mass)
    if isinstance(space, NB101Space):
        return _cell_layer_graph(space, arch, channels or 128, param_free_mass)
    if isinstance(space, PositionalSpace):
        return _positional_layer_graph(space, arch)
    return _generic_layer_graph(space, arch)
