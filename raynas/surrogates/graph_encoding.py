"""Architectures as PyTorch Geometric graphs with a global node (BONAS, Shi et al. 2020, §3.1).

:func:`arch_to_data` turns the DAG of :meth:`SearchSpace.to_graph` into a
:class:`torch_geometric.data.Data`:

* **nodes**: the cell's nodes in topological order (``0`` is the input, the
  last cell node the output), then one extra **global node**, always the last
  node of the graph;
* **features** ``x`` (``num_nodes x len(vocabulary)``): one-hot op labels over
  :func:`op_vocabulary` = ``("input", *space.op_choices, "output", "global")``;
* **edges** ``edge_index`` (``2 x E``, PyG's ``source -> target``): the DAG's
  data-flow edges ``u -> v`` plus ``v -> global`` for every cell node ``v``.

Direction. By default edges are kept **directed**, as in the paper's GCN (its
``A`` is the cell's directed adjacency plus the global node's column; BONAS'
reference implementation builds exactly this and propagates ``Â X W`` with
``Â`` the transposed, normalised matrix). With PyG's convention a node
aggregates from its *predecessors*, so information flows with the data, from
the input to the output, and the global node aggregates from every node: its
embedding is the read-out. ``bidirectional=True`` adds the reverse of every
*cell* edge (the global node stays a sink, read-out only), so a node also
hears from its successors: with only two layers a directed GCN cannot tell,
e.g., an op feeding the output directly from the same op feeding another op,
and on NAS-Bench-201 the bidirectional graph made BONAS find the optimum
markedly sooner (the default of :class:`~raynas.surrogates.bonas.BONASPredictor`).
The GCN (:class:`~torch_geometric.nn.DenseGCNConv`, or
:class:`~torch_geometric.nn.GCNConv` on the sparse form) adds a self loop to
every node and normalises with ``D̃^-1/2 Ã D̃^-1/2``, where ``D̃`` is the
**in**-degree with the self loop (Kipf & Welling's propagation on a directed
graph); see :func:`gcn_normalized_edges`.

Pruning. With ``prune=True`` the graph is :meth:`SearchSpace.pruned_graph`
(nodes labelled ``none`` and nodes off every input->output path removed,
relabelled to ``0..m-1`` in order), so that cells computing the same network
get the same graph; a cell whose input cannot reach its output becomes an
input and an output node with no edge between them. NB101 cells are stored
pruned already; on NB201 the unpruned graph is the fixed 8-node edge graph
(see :class:`~raynas.spaces.NB201Space`).

Example:
    >>> from raynas.spaces import NB201Space
    >>> space = NB201Space()
    >>> data = arch_to_data(space, space.make(("nor_conv_3x3",) * 6))
    >>> data.num_nodes, data.edge_index.shape[1]   # 8 cell nodes + global; 10 + 8 edges
    (9, 18)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_dense_adj

from raynas.architecture import Architecture
from raynas.spaces.base import INPUT_OP, OP_ATTR, OUTPUT_OP, SearchSpace

#: Label of the extra node connected to every node; its embedding embeds the graph.
GLOBAL_OP = "global"
#: Label :meth:`SearchSpace.pruned_graph` gives a cell whose input cannot reach its output.
_DISCONNECTED = "disconnected"


def op_vocabulary(space: SearchSpace) -> tuple[str, ...]:
    """Labels of the one-hot node features: ``("input", *op_choices, "output", "global")``."""
    return (INPUT_OP, *space.op_choices, OUTPUT_OP, GLOBAL_OP)


def arch_to_data(
    space: SearchSpace, arch: Architecture, *, prune: bool = False, bidirectional: bool = False
) -> Data:
    """The architecture as a directed PyG graph with a global node (see the module docstring).

    Args:
        space: the space ``arch`` belongs to (gives the graph and the op vocabulary).
        arch: the architecture.
        prune: encode :meth:`SearchSpace.pruned_graph` instead of :meth:`SearchSpace.to_graph`.
        bidirectional: add the reverse ``v -> u`` of every cell edge (the global node
            stays a sink), so a node also hears from its successors.

    Returns:
        ``Data`` with ``x`` (``[n + 1, V]`` float one-hot, ``V = len(op_vocabulary(space))``),
        ``edge_index`` (``[2, E]`` long) and ``num_nodes = n + 1``; node ``n`` is the global node.

    Raises:
        ValueError: a node label of the graph is not in the space's vocabulary.
    """
    vocabulary = _vocabulary_index(space)
    if prune and type(space).pruned_graph is SearchSpace.pruned_graph:
        labels, edge_list = _pruned(space.to_graph(arch))  # same rule, without networkx copies
        nodes = list(range(len(labels)))
    else:
        graph = space.pruned_graph(arch) if prune else space.to_graph(arch)
        nodes = sorted(graph.nodes)
        labels = [graph.nodes[node].get(OP_ATTR) for node in nodes]
        edge_list = list(graph.edges)
    if prune and labels == [_DISCONNECTED]:
        ops, edges = [INPUT_OP, OUTPUT_OP], []
    else:
        ops = labels
        if nodes == list(range(len(nodes))):
            edges = sorted(edge_list)
        else:
            order = {node: k for k, node in enumerate(nodes)}
            edges = sorted((order[u], order[v]) for u, v in edge_list)
    n = len(ops)
    columns = []
    for k, op in enumerate(ops):
        column = vocabulary.get(op)
        if column is None or op == GLOBAL_OP:
            raise ValueError(
                f"node {k} of {arch} has op {op!r}, which is not in the vocabulary of space "
                f"{space.name!r}: {list(vocabulary)[:-1]}"
            )
        columns.append(column)
    columns.append(vocabulary[GLOBAL_OP])
    x = torch.zeros((n + 1, len(vocabulary)), dtype=torch.float32)
    x[torch.arange(n + 1), torch.tensor(columns)] = 1.0
    pairs = edges + [(k, n) for k in range(n)]
    if bidirectional:
        pairs += [(v, u) for u, v in edges]
    edge_index = torch.tensor(pairs, dtype=torch.long).t().contiguous()
    return Data(x=x, edge_index=edge_index, num_nodes=n + 1)


def _pruned(graph) -> tuple[list[str], list[tuple[int, int]]]:
    """:meth:`SearchSpace.pruned_graph`'s rule on a small DAG, relabelled ``0..m-1``.

    Drops ``none`` nodes, then every node not on a path from the first to
    the last remaining node; ``(["disconnected"], [])`` when there is no such path.
    """
    nodes = sorted(n for n, op in graph.nodes(data=OP_ATTR) if op != "none")
    keep = set(nodes)
    if not nodes:
        return [_DISCONNECTED], []
    edges = [(u, v) for u, v in graph.edges if u in keep and v in keep]
    source, sink = nodes[0], nodes[-1]
    forward = {source}
    backward = {sink}
    # to_graph numbers nodes in topological order, so one sweep each way suffices
    for u, v in sorted(edges):
        if u in forward:
            forward.add(v)
    for u, v in sorted(edges, reverse=True):
        if v in backward:
            backward.add(u)
    if sink not in forward:
        return [_DISCONNECTED], []
    live = sorted(forward & backward)
    index = {node: k for k, node in enumerate(live)}
    labels = [graph.nodes[node][OP_ATTR] for node in live]
    return labels, [(index[u], index[v]) for u, v in edges if u in index and v in index]


_VOCABULARIES: dict[tuple[str, ...], dict[str, int]] = {}


def _vocabulary_index(space: SearchSpace) -> dict[str, int]:
    labels = op_vocabulary(space)
    index = _VOCABULARIES.get(labels)
    if index is None:
        index = _VOCABULARIES[labels] = {op: i for i, op in enumerate(labels)}
    return index


@dataclass(frozen=True)
class DenseGraphs:
    """A batch of graphs in PyTorch Geometric's dense layout (for :class:`~torch_geometric.nn.DenseGCNConv`).

    Attributes:
        x: ``[B, N, V]`` node features, zero rows for padding.
        adj: ``[B, N, N]`` with ``adj[b, i, j] = 1`` when ``j -> i`` (node ``i``
            aggregates from its predecessors ``j``), self loops not included.
        mask: ``[B, N]`` bool, the real nodes.
        readout: ``[B]`` index of each graph's global node.
    """

    x: torch.Tensor
    adj: torch.Tensor
    mask: torch.Tensor
    readout: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def select(self, rows: torch.Tensor | slice) -> "DenseGraphs":
        """The sub-batch of the graphs ``rows``."""
        return DenseGraphs(self.x[rows], self.adj[rows], self.mask[rows], self.readout[rows])


def to_dense(data: Data, num_nodes: int) -> DenseGraphs:
    """One graph padded to ``num_nodes`` nodes, as a batch of one (cache these per architecture)."""
    n = int(data.num_nodes)
    if n > num_nodes:
        raise ValueError(f"graph has {n} nodes, more than the padding size {num_nodes}")
    x = torch.zeros((1, num_nodes, data.x.shape[1]), dtype=torch.float32)
    x[0, :n] = data.x
    adj = torch.zeros((1, num_nodes, num_nodes), dtype=torch.float32)
    adj[0, data.edge_index[1], data.edge_index[0]] = 1.0  # row = target: aggregate predecessors
    mask = torch.zeros((1, num_nodes), dtype=torch.bool)
    mask[0, :n] = True
    return DenseGraphs(x, adj, mask, torch.tensor([n - 1]))


def stack_dense(graphs: Sequence[DenseGraphs]) -> DenseGraphs:
    """Concatenate single-graph :class:`DenseGraphs` padded to the same size."""
    if not graphs:
        raise ValueError("cannot stack an empty list of graphs")
    return DenseGraphs(
        torch.cat([g.x for g in graphs]),
        torch.cat([g.adj for g in graphs]),
        torch.cat([g.mask for g in graphs]),
        torch.cat([g.readout for g in graphs]),
    )


def dense_from_batch(batch: Batch) -> DenseGraphs:
    """A PyG :class:`Batch` in the dense layout (padding to its largest graph)."""
    from torch_geometric.utils import to_dense_batch

    x, mask = to_dense_batch(batch.x, batch.batch)
    adj = to_dense_adj(batch.edge_index, batch.batch, max_num_nodes=x.shape[1]).transpose(1, 2)
    readout = mask.sum(-1) - 1
    return DenseGraphs(x, adj.contiguous(), mask, readout)


def batch_graphs(graphs: Sequence[Data]) -> Batch:
    """Collate graphs into one PyG :class:`Batch` (global node of graph ``i``: ``ptr[i+1] - 1``)."""
    if not graphs:
        raise ValueError("cannot batch an empty list of graphs")
    return Batch.from_data_list(list(graphs))


def global_node_index(batch: Batch) -> torch.Tensor:
    """Index of each graph's global node (the last node of each graph) in ``batch``."""
    return batch.ptr[1:] - 1


def gcn_normalized_edges(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Self loops and Kipf-Welling weights ``D̃^-1/2 Ã D̃^-1/2`` for a directed graph.

    The same computation :class:`~torch_geometric.nn.GCNConv` does on every call
    (``gcn_norm``, in-degree with self loops); done once per batch so a stack of
    layers built with ``normalize=False`` shares it.

    Returns:
        ``(edge_index, edge_weight)`` with the self loops added.
    """
    return gcn_norm(edge_index, None, num_nodes, add_self_loops=True, flow="source_to_target")
