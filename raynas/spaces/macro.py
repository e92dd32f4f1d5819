"""The macro spaces of NASBOT (Kandasamy et al., NeurIPS 2018): whole networks as DAGs of layers.

**Encoding.** An architecture's ``ops`` are ``"input"``, then one string per
layer in topological order, then ``"output"``. A layer is ``"<label>:<units>"``
for layers with units (``"conv3:64"``, ``"fc:256"``, ``"relu:128"``) and
``"<label>"`` for layers without (``"max-pool"``, ``"avg-pool"``,
``"softmax"``, and the MLP output layer ``"linear"``). ``matrix`` is
``None`` for a chain ``input → layer_1 → ... → output`` (what :meth:`sample`
draws) and otherwise the upper-triangular 0/1 adjacency over all the nodes
(input and output included): the modifiers *dup path* and *skip path* make
non-chain DAGs. A chain is always stored with ``matrix=None``, so a chain has
one representation; a DAG's representation depends on the topological order
chosen (the modifiers keep the existing order and put new layers right after
their first parent), which at worst makes the same network appear twice.

**macro_cnn** layers: ``conv3, conv5, conv7, res3, res5, res7`` (units),
``max-pool, avg-pool`` (no units: channels pass through), ``fc`` (units),
``softmax`` (decision layer). **macro_mlp** hidden layers: ``relu, crelu,
tanh, logistic, elu, leaky-relu, softplus, linear`` (units); decision layer
``linear`` (no units; labelled ``"linear-out"`` in :meth:`to_graph`).

**Validity** (:meth:`MacroSpace.validate`, each rule with its own message):
input first and output last; known labels; units present exactly where the
label has units, an integer in ``[min_units, max_units]``; between
``min_layers`` and ``max_layers`` layers; matrix square, 0/1 and strictly
upper triangular; every layer has a parent and a child (so it lies on an
input → output path); the input feeds only processing layers (CNN:
convolutions); the output is fed only by decision layers and decision layers
feed only the output; CNN: a decision layer is fed only by ``fc`` layers,
nothing but ``fc``/``softmax`` follows an ``fc`` (no conv or pooling after a
fully connected layer), and at most ``max_pools`` pooling layers lie on any
path; MLP: decision layers are fed by hidden layers.

**Modifiers** (the paper's nine, :data:`MODIFIERS`): ``inc_single`` /
``dec_single`` (units of one layer × / ÷ a factor), ``inc_en_masse`` /
``dec_en_masse`` (the same for a run of consecutive layers), ``remove_layer``
(parents reconnected to children), ``wedge_layer`` (a new layer on an
edge), ``swap_label`` (another label of the same family: conv/res sizes,
pool types, activations), ``dup_path`` (a copy of a path between two
layers, in parallel) and ``skip_path`` (a new edge to a descendant).
:meth:`~MacroSpace.mutate` applies one at random, :meth:`~MacroSpace.neighbours`
enumerates them with fixed parameters (factor 1.25, wedged layers copying the
layer above, paths of up to two layers).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import networkx as nx
import numpy as np

from raynas.architecture import Architecture
from raynas.spaces.base import INPUT_OP, OP_ATTR, OUTPUT_OP, InvalidArchitectureError, SearchSpace
from raynas.spaces.layer_graph import IP, OP, LayerGraph, build_layer_graph

CNN_CONV: tuple[str, ...] = ("conv3", "conv5", "conv7", "res3", "res5", "res7")
CNN_POOL: tuple[str, ...] = ("max-pool", "avg-pool")
CNN_LABELS: tuple[str, ...] = (*CNN_CONV, *CNN_POOL, "fc", "softmax")
MLP_HIDDEN: tuple[str, ...] = ("relu", "crelu", "tanh", "logistic", "elu", "leaky-relu", "softplus", "linear")
#: Graph label of the MLP decision layer (written ``"linear"`` in ``ops``).
MLP_OUT = "linear-out"
MODIFIERS: tuple[str, ...] = (
    "inc_single", "dec_single", "inc_en_masse", "dec_en_masse", "remove_layer",
    "wedge_layer", "swap_label", "dup_path", "skip_path",
)
_FACTORS = (1.125, 1.25, 1.5, 2.0)
_MUTATION_ATTEMPTS = 200


class _Net:
    """Mutable working form: node labels, units (``None`` if none) and edges; 0 = input, last = output."""

    def __init__(self, labels: list[str], units: list[int | None], edges: set[tuple[int, int]]) -> None:
        self.labels, self.units, self.edges = labels, units, edges

    def copy(self) -> "_Net":
        return _Net(list(self.labels), list(self.units), set(self.edges))

    @property
    def n(self) -> int:
        return len(self.labels)

    def parents(self, v: int) -> list[int]:
        return sorted(u for u, w in self.edges if w == v)

    def children(self, u: int) -> list[int]:
        return sorted(w for v, w in self.edges if v == u)

    def insert(self, position: int, label: str, units: int | None) -> int:
        """Insert a node at ``position`` (shifting later ones); returns its index."""
        self.labels.insert(position, label)
        self.units.insert(position, units)
        self.edges = {(u + (u >= position), v + (v >= position)) for u, v in self.edges}
        return position

    def remove(self, node: int) -> None:
        del self.labels[node], self.units[node]
        self.edges = {(u - (u > node), v - (v > node)) for u, v in self.edges if node not in (u, v)}


class MacroSpace(SearchSpace):
    """NASBOT's macro space of whole networks (see the module docstring for the encoding).

    Args:
        kind: ``"cnn"`` or ``"mlp"``.
        min_layers, max_layers: bounds on the number of layers (input and output excluded).
        min_units, max_units: bounds on the units of a layer.
        max_pools: CNN only: most pooling layers on any input → output path
            (5 halvings take a 32×32 image to 1×1).
        sample_layers: ``(low, high)`` processing layers of a sampled network.
    """

    def __init__(
        self,
        kind: str = "cnn",
        *,
        min_layers: int = 2,
        max_layers: int = 30,
        min_units: int = 8,
        max_units: int = 1024,
        max_pools: int = 5,
        sample_layers: tuple[int, int] = (3, 8),
    ) -> None:
        if kind not in ("cnn", "mlp"):
            raise ValueError(f"kind must be 'cnn' or 'mlp', got {kind!r}")
        if not 1 <= min_layers <= max_layers or not 1 <= min_units <= max_units:
            raise ValueError(
                f"need 1 <= min_layers <= max_layers and 1 <= min_units <= max_units, got layers "
                f"[{min_layers}, {max_layers}], units [{min_units}, {max_units}]"
            )
        self.kind = kind
        self.name = f"macro_{kind}"
        self.min_layers, self.max_layers = int(min_layers), int(max_layers)
        self.min_units, self.max_units = int(min_units), int(max_units)
        self.max_pools = int(max_pools)
        self.sample_layers = (int(sample_layers[0]), int(sample_layers[1]))
        if kind == "cnn":
            self._labels = CNN_LABELS
            self._with_units = frozenset({*CNN_CONV, "fc"})
            self._decision = frozenset({"softmax"})
            self._families = (CNN_CONV, CNN_POOL)
        else:
            self._labels = (*MLP_HIDDEN, MLP_OUT)
            self._with_units = frozenset(MLP_HIDDEN)
            self._decision = frozenset({MLP_OUT})
            self._families = (MLP_HIDDEN,)

    # ------------------------------------------------------------ properties
    @property
    def op_choices(self) -> tuple[str, ...]:
        return self._labels

    def max_nodes(self) -> int:
        return self.max_layers + 2

    def make(self, layers: Sequence[str], matrix: Sequence[Sequence[int]] | None = None) -> Architecture:
        """Build (and validate) a network from its layer strings; ``"input"``/``"output"`` are
        added when missing. A chain ``matrix`` is normalised to ``None``."""
        ops = list(layers)
        if not ops or ops[0] != INPUT_OP:
            ops.insert(0, INPUT_OP)
        if ops[-1] != OUTPUT_OP:
            ops.append(OUTPUT_OP)
        arch = Architecture(self.name, tuple(ops), None if matrix is None else tuple(map(tuple, matrix)))
        self.validate(arch)
        if arch.matrix is not None:
            arch = self._arch(self._net(arch))
        return arch

    # -------------------------------------------------------- parse / format
    def parse_layer(self, text: str, where: str = "layer") -> tuple[str, int | None]:
        """``"conv3:64" -> ("conv3", 64)``, ``"max-pool" -> ("max-pool", None)``; the MLP output
        ``"linear"`` (no units) becomes ``("linear-out", None)``."""
        label, sep, units_text = str(text).partition(":")
        if self.kind == "mlp" and label == "linear" and not sep:
            label = MLP_OUT
        if label not in self._labels:
            known = [lab if lab != MLP_OUT else "linear (output, no units)" for lab in self._labels]
            raise InvalidArchitectureError(f"{where}: unknown layer {text!r}; labels are {known}")
        if label in self._with_units:
            if not sep:
                raise InvalidArchitectureError(f"{where}: {label!r} needs units, e.g. '{label}:64', got {text!r}")
            try:
                units = int(units_text)
            except ValueError:
                raise InvalidArchitectureError(f"{where}: units of {text!r} are not an integer") from None
            if str(units) != units_text.strip() or not self.min_units <= units <= self.max_units:
                raise InvalidArchitectureError(
                    f"{where}: units {units_text!r} of {text!r} out of range "
                    f"[{self.min_units}, {self.max_units}]"
                )
            return label, units
        if sep:
            raise InvalidArchitectureError(f"{where}: {label!r} takes no units, got {text!r}")
        return label, None

    def format_layer(self, label: str, units: int | None) -> str:
        if label == MLP_OUT:
            return "linear"
        return label if units is None else f"{label}:{units}"

    def _net(self, arch: Architecture) -> _Net:
        """Parse ``arch`` (structure only; :meth:`validate` checks the rules)."""
        ops = arch.ops
        if len(ops) < 2 or ops[0] != INPUT_OP or ops[-1] != OUTPUT_OP:
            raise InvalidArchitectureError(
                f"ops must start with {INPUT_OP!r} and end with {OUTPUT_OP!r}, got {list(ops[:1])}...{list(ops[-1:])}"
            )
        labels: list[str] = [INPUT_OP]
        units: list[int | None] = [None]
        for k, text in enumerate(ops[1:-1], start=1):
            label, u = self.parse_layer(text, f"layer {k}")
            labels.append(label)
            units.append(u)
        labels.append(OUTPUT_OP)
        units.append(None)
        n = len(ops)
        if arch.matrix is None:
            edges = {(k, k + 1) for k in range(n - 1)}
        else:
            rows = arch.matrix
            if len(rows) != n or any(len(r) != n for r in rows):
                raise InvalidArchitectureError(f"matrix must be {n}x{n} (one row per op), got {len(rows)} rows")
            edges = set()
            for i, row in enumerate(rows):
                for j, value in enumerate(row):
                    if value not in (0, 1):
                        raise InvalidArchitectureError(f"matrix entry [{i}][{j}] is {value}, entries must be 0 or 1")
                    if value and j <= i:
                        raise InvalidArchitectureError(
                            f"matrix is not strictly upper triangular: entry [{i}][{j}] is 1"
                        )
                    if value:
                        edges.add((i, j))
        return _Net(labels, units, edges)

    def _arch(self, net: _Net) -> Architecture:
        """Back to an :class:`Architecture` (topologically re-sorted; ``matrix=None`` for a chain)."""
        graph = nx.DiGraph()
        graph.add_nodes_from(range(net.n))
        graph.add_edges_from(net.edges)
        if not nx.is_directed_acyclic_graph(graph):
            raise InvalidArchitectureError("the layers form a cycle")
        order = list(nx.lexicographical_topological_sort(graph, key=lambda v: (v == net.n - 1, v)))
        if order[0] != 0:
            order.remove(0)
            order.insert(0, 0)
        position = {v: k for k, v in enumerate(order)}
        ops = [self.format_layer(net.labels[v], net.units[v]) if 0 < v < net.n - 1 else net.labels[v] for v in order]
        edges = {(position[u], position[v]) for u, v in net.edges}
        n = net.n
        if edges == {(k, k + 1) for k in range(n - 1)}:
            return Architecture(self.name, tuple(ops))
        matrix = [[0] * n for _ in range(n)]
        for u, v in edges:
            matrix[u][v] = 1
        return Architecture(self.name, tuple(ops), tuple(tuple(r) for r in matrix))

    # ------------------------------------------------------------ validation
    def validate(self, arch: Architecture) -> None:
        self.check_space(arch)
        net = self._net(arch)
        self._check(net)

    def _check(self, net: _Net) -> None:
        n = net.n
        layers = n - 2
        if not self.min_layers <= layers <= self.max_layers:
            raise InvalidArchitectureError(
                f"{layers} layers, need between {self.min_layers} and {self.max_layers}"
            )
        parents: list[list[int]] = [[] for _ in range(n)]
        children: list[list[int]] = [[] for _ in range(n)]
        for u, v in net.edges:
            if not 0 <= u < v < n:
                raise InvalidArchitectureError(f"edge {u}->{v} does not go forward")
            parents[v].append(u)
            children[u].append(v)
        for k in range(1, n):
            if not parents[k]:
                raise InvalidArchitectureError(f"layer {k} ({net.labels[k]}) has no input: not reachable from the input")
        for k in range(n - 1):
            if not children[k]:
                raise InvalidArchitectureError(f"layer {k} ({net.labels[k]}) feeds nothing: does not reach the output")
        first_ok = CNN_CONV if self.kind == "cnn" else MLP_HIDDEN
        for c in children[0]:
            if net.labels[c] not in first_ok:
                what = "a convolution" if self.kind == "cnn" else "a hidden layer"
                raise InvalidArchitectureError(
                    f"the input feeds layer {c} ({net.labels[c]}): layers after the input must be {what}"
                )
        for p in parents[n - 1]:
            if net.labels[p] not in self._decision:
                raise InvalidArchitectureError(
                    f"layer {p} ({net.labels[p]}) feeds the output: only "
                    f"{'softmax' if self.kind == 'cnn' else 'the linear output'} layers may"
                )
        for k in range(1, n - 1):
            label = net.labels[k]
            if label in self._decision:
                if children[k] != [n - 1]:
                    raise InvalidArchitectureError(f"decision layer {k} ({label}) must feed only the output")
                for p in parents[k]:
                    if self.kind == "cnn" and net.labels[p] != "fc":
                        raise InvalidArchitectureError(
                            f"softmax layer {k} is fed by layer {p} ({net.labels[p]}): softmax must follow fc layers"
                        )
                    if self.kind == "mlp" and net.labels[p] not in MLP_HIDDEN:
                        raise InvalidArchitectureError(
                            f"output layer {k} is fed by layer {p} ({net.labels[p]}), not a hidden layer"
                        )
            if self.kind == "cnn" and label == "fc":
                for c in children[k]:
                    if net.labels[c] not in ("fc", "softmax"):
                        raise InvalidArchitectureError(
                            f"layer {c} ({net.labels[c]}) follows fc layer {k}: no convolution or pooling after fc"
                        )
        if self.kind == "cnn":
            pools = [0] * n
            for v in range(1, n):
                pools[v] = max(pools[p] for p in parents[v]) + (net.labels[v] in CNN_POOL)
            if max(pools) > self.max_pools:
                raise InvalidArchitectureError(
                    f"a path has {max(pools)} pooling layers, at most {self.max_pools} allowed"
                )

    # -------------------------------------------------------------- graphs
    def to_graph(self, arch: Architecture) -> nx.DiGraph:
        net = self._net(arch)
        graph = nx.DiGraph()
        for k, (label, units) in enumerate(zip(net.labels, net.units)):
            graph.add_node(k, **{OP_ATTR: label, "units": units or 0})
        graph.add_edges_from(sorted(net.edges))
        return graph

    def layer_graph(self, arch: Architecture) -> LayerGraph:
        """OTMANN's view: the paper's layer masses (see :mod:`raynas.spaces.layer_graph`)."""
        net = self._net(arch)
        labels = [IP, *net.labels[1:-1], OP]
        units = [0, *[u or 0 for u in net.units[1:-1]], 0]
        return build_layer_graph(labels, units, sorted(net.edges), fc_factor=0.1 if self.kind == "cnn" else 1.0)

    def encode_positional(self, arch: Architecture) -> np.ndarray:
        """Fixed length ``3·S + S(S−1)/2`` (``S = max_nodes()``): per slot a label code, log2-units
        code and a present bit, then the padded upper-triangular adjacency (output in the last slot).

        Label codes index ``("input", "output", *op_choices)``; an absent slot gets
        ``len(op_choices) + 2``; units are ``round(log2(units))`` (0 without units).
        """
        net = self._net(arch)
        size = self.max_nodes()
        vocab = {INPUT_OP: 0, OUTPUT_OP: 1, **{lab: k + 2 for k, lab in enumerate(self._labels)}}
        absent = len(vocab)
        position = [*range(net.n - 1), size - 1]
        labels = np.full(size, absent, dtype=np.int64)
        units = np.zeros(size, dtype=np.int64)
        present = np.zeros(size, dtype=np.int64)
        matrix = np.zeros((size, size), dtype=np.int64)
        for k in range(net.n):
            labels[position[k]] = vocab[net.labels[k]]
            units[position[k]] = round(math.log2(net.units[k])) if net.units[k] else 0
            present[position[k]] = 1
        for u, v in net.edges:
            matrix[position[u], position[v]] = 1
        return np.concatenate([labels, units, present, matrix[np.triu_indices(size, k=1)]])

    # ------------------------------------------------------------ sampling
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A random chain: CNN convs with pools in between, then fc layers and softmax; MLP hidden layers then linear."""
        low, high = self.sample_layers
        widths = [w for w in (16, 32, 64, 128, 256, 512) if self.min_units <= w <= self.max_units] or [self.min_units]
        for _ in range(100):
            layers: list[str] = []
            body = int(rng.integers(max(low, self.min_layers), high + 1))
            if self.kind == "cnn":
                n_fc = int(rng.integers(1, 3))
                n_conv = max(body - n_fc - 1, 1)
                level = int(rng.integers(0, max(len(widths) - 2, 1)))
                pools = 0
                for k in range(n_conv):
                    label = CNN_CONV[int(rng.integers(len(CNN_CONV)))]
                    layers.append(f"{label}:{widths[min(level, len(widths) - 1)]}")
                    if k < n_conv - 1 and pools < self.max_pools and rng.random() < 0.35:
                        layers.append(CNN_POOL[int(rng.integers(2))])
                        pools += 1
                        level += 1
                for _ in range(n_fc):
                    layers.append(f"fc:{widths[int(rng.integers(len(widths)))]}")
                layers.append("softmax")
            else:
                for _ in range(max(body - 1, 1)):
                    label = MLP_HIDDEN[int(rng.integers(len(MLP_HIDDEN)))]
                    layers.append(f"{label}:{widths[int(rng.integers(len(widths)))]}")
                layers.append("linear")
            arch = Architecture(self.name, (INPUT_OP, *layers, OUTPUT_OP))
            if self.is_valid(arch):
                return arch
        raise InvalidArchitectureError(  # pragma: no cover - only for absurd bounds
            f"could not sample a valid network with layers {self.sample_layers} and units "
            f"[{self.min_units}, {self.max_units}]"
        )

    # ------------------------------------------------------------ modifiers
    def _scaled(self, units: int, factor: float) -> int:
        value = math.ceil(units * factor) if factor > 1 else math.floor(units * factor)
        return int(min(max(value, self.min_units), self.max_units))

    def _family(self, label: str) -> tuple[str, ...]:
        for family in self._families:
            if label in family:
                return family
        return ()

    def _unit_layers(self, net: _Net) -> list[int]:
        return [k for k in range(1, net.n - 1) if net.units[k] is not None]

    def apply(self, arch: Architecture, modifier: str, **params) -> Architecture:
        """Apply one modifier with explicit parameters; raises if the result is invalid.

        Parameters per modifier: ``inc_single``/``dec_single``: ``layer``,
        ``factor``; ``inc_en_masse``/``dec_en_masse``: ``layers`` (indices),
        ``factor``; ``remove_layer``: ``layer``; ``wedge_layer``: ``edge``
        ``(u, v)``, ``label``, ``units``; ``swap_label``: ``layer``, ``label``;
        ``dup_path``: ``path`` (node indices ``u, x_1.., v``; the inner nodes
        are copied); ``skip_path``: ``edge`` ``(u, v)``. Indices are
        positions in ``arch.ops``.
        """
        net = self._net(arch)
        out = self._modify(net, modifier, **params)
        self._check(out)
        return self._arch(out)

    def _modify(self, net: _Net, modifier: str, **p) -> _Net:
        net = net.copy()
        if modifier in ("inc_single", "dec_single"):
            k = p["layer"]
            if net.units[k] is None:
                raise InvalidArchitectureError(f"layer {k} ({net.labels[k]}) has no units to change")
            factor = p.get("factor", 1.25)
            net.units[k] = self._scaled(net.units[k], factor if modifier == "inc_single" else 1 / factor)
        elif modifier in ("inc_en_masse", "dec_en_masse"):
            factor = p.get("factor", 1.25)
            for k in p["layers"]:
                if net.units[k] is not None:
                    net.units[k] = self._scaled(net.units[k], factor if modifier == "inc_en_masse" else 1 / factor)
        elif modifier == "remove_layer":
            k = p["layer"]
            if not 0 < k < net.n - 1:
                raise InvalidArchitectureError("the input and the output cannot be removed")
            ps, cs = net.parents(k), net.children(k)
            net.edges |= {(u, v) for u in ps for v in cs}
            net.remove(k)
        elif modifier == "wedge_layer":
            u, v = p["edge"]
            if (u, v) not in net.edges:
                raise InvalidArchitectureError(f"no edge {u}->{v} to wedge a layer into")
            w = net.insert(u + 1, p["label"], p.get("units"))
            v += 1
            net.edges.discard((u, v))
            net.edges |= {(u, w), (w, v)}
        elif modifier == "swap_label":
            k, label = p["layer"], p["label"]
            if label not in self._family(net.labels[k]) or label == net.labels[k]:
                raise InvalidArchitectureError(f"cannot swap {net.labels[k]!r} for {label!r}")
            net.labels[k] = label
        elif modifier == "dup_path":
            path = list(p["path"])
            if len(path) < 3 or any((a, b) not in net.edges for a, b in zip(path, path[1:])):
                raise InvalidArchitectureError(f"{path} is not a path with inner layers")
            prev = path[0]
            for x in path[1:-1]:
                anchor = max(prev, x)
                w = net.insert(anchor + 1, net.labels[x], net.units[x])
                path = [q + (q >= w) for q in path]
                prev = prev + (prev >= w)
                net.edges.add((prev, w))
                prev = w
            net.edges.add((prev, path[-1]))
        elif modifier == "skip_path":
            u, v = p["edge"]
            if (u, v) in net.edges or not 0 <= u < v < net.n:
                raise InvalidArchitectureError(f"cannot add a skip edge {u}->{v}")
            net.edges.add((u, v))
        else:
            raise ValueError(f"unknown modifier {modifier!r}; choose from {MODIFIERS}")
        return net

    def _candidates(self, net: _Net) -> list[tuple[str, dict]]:
        """Every modifier application with the fixed parameters :meth:`neighbours` uses."""
        unit_layers = self._unit_layers(net)
        out: list[tuple[str, dict]] = []
        for k in unit_layers:
            out += [("inc_single", {"layer": k}), ("dec_single", {"layer": k})]
        half = len(unit_layers) // 2
        for group in (unit_layers, unit_layers[:half], unit_layers[half:]):
            if group:
                out += [("inc_en_masse", {"layers": group}), ("dec_en_masse", {"layers": group})]
        for k in range(1, net.n - 1):
            out.append(("remove_layer", {"layer": k}))
            for label in self._family(net.labels[k]):
                if label != net.labels[k]:
                    out.append(("swap_label", {"layer": k, "label": label}))
        for u, v in sorted(net.edges):
            src = u if 0 < u else v
            if 0 < src < net.n - 1 and net.labels[src] not in self._decision:
                out.append(("wedge_layer", {"edge": (u, v), "label": net.labels[src], "units": net.units[src]}))
        graph = nx.DiGraph(sorted(net.edges))
        for u in range(net.n - 1):
            for v in sorted(nx.descendants(graph, u)):
                if (u, v) not in net.edges:
                    out.append(("skip_path", {"edge": (u, v)}))
            for x in net.children(u):
                for v in net.children(x):
                    out.append(("dup_path", {"path": (u, x, v)}))
                    for y in net.children(v):
                        out.append(("dup_path", {"path": (u, x, v, y)}))
        return out

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every valid network one modifier away, with fixed parameters (see the module docstring)."""
        self.validate(arch)
        net = self._net(arch)
        result: dict[Architecture, None] = {}
        for modifier, params in self._candidates(net):
            try:
                out = self._modify(net, modifier, **params)
                self._check(out)
                child = self._arch(out)
            except InvalidArchitectureError:
                continue
            if child != arch:
                result.setdefault(child)
        return list(result)

    def _random_params(self, net: _Net, modifier: str, rng: np.random.Generator) -> dict:
        pick: Callable[[Sequence], object] = lambda seq: seq[int(rng.integers(len(seq)))]
        inner = list(range(1, net.n - 1))
        factor = float(pick(_FACTORS))
        if modifier in ("inc_single", "dec_single"):
            return {"layer": pick(self._unit_layers(net)), "factor": factor}
        if modifier in ("inc_en_masse", "dec_en_masse"):
            layers = self._unit_layers(net)
            i = int(rng.integers(len(layers)))
            j = int(rng.integers(i, len(layers)))
            return {"layers": layers[i : j + 1], "factor": factor}
        if modifier == "remove_layer":
            return {"layer": pick(inner)}
        if modifier == "swap_label":
            k = pick([k for k in inner if len(self._family(net.labels[k])) > 1])
            return {"layer": k, "label": pick([lab for lab in self._family(net.labels[k]) if lab != net.labels[k]])}
        if modifier == "wedge_layer":
            u, v = pick(sorted(net.edges))
            src = u if u > 0 else v
            label = net.labels[src]
            if label in self._decision or src == net.n - 1:
                label = "fc" if self.kind == "cnn" else pick(MLP_HIDDEN)
            elif len(self._family(label)) > 1 and rng.random() < 0.5:
                label = pick(self._family(label))
            units = None
            if label in self._with_units:
                base = net.units[src] or net.units[v if 0 < v < net.n - 1 else src] or 64
                units = self._scaled(int(base), float(pick((0.5, 1.0, 1.0, 2.0))))
            return {"edge": (u, v), "label": label, "units": units}
        graph = nx.DiGraph(sorted(net.edges))
        if modifier == "skip_path":
            u = pick(list(range(net.n - 1)))
            options = [v for v in sorted(nx.descendants(graph, u)) if (u, v) not in net.edges]
            return {"edge": (u, pick(options))}
        if modifier == "dup_path":
            u = pick(list(range(net.n - 2)))
            path = [u]
            length = int(rng.integers(1, 4))
            for _ in range(length + 1):
                options = net.children(path[-1])
                if not options:
                    break
                path.append(pick(options))
            return {"path": tuple(path)}
        raise ValueError(f"unknown modifier {modifier!r}")

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """One modifier drawn uniformly from :data:`MODIFIERS`, with random parameters (retried until valid)."""
        self.validate(arch)
        net = self._net(arch)
        for _ in range(_MUTATION_ATTEMPTS):
            modifier = MODIFIERS[int(rng.integers(len(MODIFIERS)))]
            try:
                params = self._random_params(net, modifier, rng)
                out = self._modify(net, modifier, **params)
                self._check(out)
                child = self._arch(out)
            except (InvalidArchitectureError, ValueError, IndexError):
                continue
            if child != arch:
                return child
        raise InvalidArchitectureError(f"no valid mutation of {arch} in {_MUTATION_ATTEMPTS} tries")


class MacroCNNSpace(MacroSpace):
    """``macro_cnn``: NASBOT's CNN space (conv/res/pool/fc/softmax layers)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("cnn", **kwargs)


class MacroMLPSpace(MacroSpace):
    """``macro_mlp``: NASBOT's MLP space (hidden layers with activation labels, linear output)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("mlp", **kwargs)
