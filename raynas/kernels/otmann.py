"""OTMANN, the optimal-transport distance between neural networks, and its GP kernel.

Kandasamy, Neiswanger, Schneider, Póczos, Xing, "Neural Architecture Search
with Bayesian Optimisation and Optimal Transport", NeurIPS 2018, Section 3.

Two networks ``G1``, ``G2`` are :class:`~raynas.spaces.layer_graph.LayerGraph`
objects (layers with labels, masses ``ℓm`` and path-length features). A
matching ``Z ∈ R^{n1×n2}``, ``Z ≥ 0``, ``Z 1 ≤ ℓm1``, ``Zᵀ 1 ≤ ℓm2`` moves
mass between their layers at cost

    φ(Z) = ⟨Z, C_lmm⟩ + ν_str ⟨Z, C_str⟩ + φ_nas(Z)

* ``C_lmm(i, j) = M(label_i, label_j)``: label mismatch (:func:`label_cost`;
  incompatible labels cost :data:`INCOMPATIBLE`, i.e. they are never matched);
* ``C_str(i, j) = 1/6 Σ_{s∈{sp,lp,rw}} Σ_{t∈{ip,op}} |δ_t^s(i) − δ_t^s(j)|``:
  structural position;
* ``φ_nas(Z) = Σ_i (ℓm1_i − Σ_j Z_ij) + Σ_j (ℓm2_j − Σ_i Z_ij)``: every unit
  of unmatched mass costs 1 (the non-assignment penalty).

``d(G1, G2) = min_Z φ(Z)``. As in the paper it is solved as a balanced
optimal-transport problem: each side gets a *sink* layer holding the other
side's total mass, reached from every layer at cost 1 (sink to sink costs 0),
and POT's exact network-simplex solver gives the cost. The normalised variant
is ``d̄ = d / (tm(G1) + tm(G2))`` with ``tm`` the total mass. OTMANN is a
pseudo-distance (the paper's Theorem 1): zero for identical (or isomorphic)
networks, symmetric, triangle inequality.

:class:`OTMANNDistances` keeps a registry of architectures and their layer
graphs and caches every computed pair; :class:`OTMANNKernel` is the
GPyTorch kernel ``α exp(−β d) + ᾱ exp(−β̄ d̄)`` over registry ids.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from gpytorch.constraints import Positive
from gpytorch.kernels import Kernel

from raynas.architecture import Architecture
from raynas.spaces.base import SearchSpace
from raynas.spaces.layer_graph import LayerGraph, layer_graph

try:  # POT's C++ network simplex without the Python-side checks of ot.emd2 (~10x faster on tiny problems)
    from ot.lp.emd_wrap import emd_c as _emd_c
except ImportError:  # pragma: no cover - other POT layouts
    _emd_c = None
import ot

#: Cost of matching layers whose labels cannot be matched. Any cost ≥ 2 is never
#: used by an optimal plan (leaving both masses unassigned costs 2 per unit).
INCOMPATIBLE = 10.0
#: Default weight ν_str of the structural term.
NU_STR = 0.5

_CONV = re.compile(r"^(conv|res)(\d+)$")
_RECTIFIERS = frozenset({"relu", "crelu", "leaky-relu", "elu", "softplus"})
_SIGMOIDS = frozenset({"logistic", "tanh"})
_ACTIVATIONS = _RECTIFIERS | _SIGMOIDS | {"linear"}
_POOLS = frozenset({"max-pool", "avg-pool", "skip"})


def label_cost(a: str, b: str) -> float:
    """The label-mismatch cost ``M(a, b)`` (symmetric, zero on the diagonal).

    Values follow the paper's tables in spirit (its exact numbers are not in
    our sources):

    * convolutions ``convK``/``resK``: 0.2 per kernel-size step of 2, 0.3 for
      two steps, 0.4 for three (``conv3``–``conv5`` 0.2, ``conv3``–``conv7``
      0.3, ``conv1``–``conv7`` 0.4), plus 0.1 between a conv and a res layer;
    * ``max-pool``, ``avg-pool`` and ``skip`` (identity): 0.25 between each other;
    * MLP activations: 0.1 within the rectifier family (relu, crelu,
      leaky-relu, elu, softplus) and within the sigmoid family (logistic,
      tanh), 0.25 across families and to ``linear``;
    * positional layers ``"p=a"`` vs ``"p=b"`` at the same position: 0.5;
    * everything else, including ``ip``/``op``/decision layers against any
      other label: :data:`INCOMPATIBLE`.
    """
    if a == b:
        return 0.0
    ma, mb = _CONV.match(a), _CONV.match(b)
    if ma and mb:
        steps = abs(int(ma.group(2)) - int(mb.group(2))) // 2
        cost = {0: 0.0, 1: 0.2, 2: 0.3}.get(steps, 0.4)
        return cost + (0.1 if ma.group(1) != mb.group(1) else 0.0)
    if a in _POOLS and b in _POOLS:
        return 0.25
    if a in _ACTIVATIONS and b in _ACTIVATIONS:
        if (a in _RECTIFIERS and b in _RECTIFIERS) or (a in _SIGMOIDS and b in _SIGMOIDS):
            return 0.1
        return 0.25
    if "=" in a and "=" in b and a.split("=", 1)[0] == b.split("=", 1)[0]:
        return 0.5
    return INCOMPATIBLE


class _LabelTable:
    """Label → index, and the growing matrix of :func:`label_cost` between indices."""

    def __init__(self, cost: Callable[[str, str], float]) -> None:
        self.cost = cost
        self.index: dict[str, int] = {}
        self.matrix = np.zeros((0, 0))

    def ids(self, labels: Sequence[str]) -> np.ndarray:
        new = [lab for lab in dict.fromkeys(labels) if lab not in self.index]
        if new:
            for lab in new:
                self.index[lab] = len(self.index)
            names = list(self.index)
            n = len(names)
            matrix = np.empty((n, n))
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    matrix[i, j] = self.cost(a, b)
            if not np.allclose(matrix, matrix.T):
                raise ValueError("label_cost must be symmetric")
            self.matrix = matrix
        return np.array([self.index[lab] for lab in labels], dtype=np.int64)


def _solve(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """Exact OT cost with POT (network simplex)."""
    if _emd_c is not None:
        _, value, _, _, code = _emd_c(a, b, cost, 100_000, 1)
        if code == 1:  # OPTIMAL
            return float(value)
    return float(ot.emd2(a, b, cost, numItermax=100_000))


class OTMANN:
    """The OTMANN distance between two layer graphs.

    Args:
        nu_str: weight ν_str of the structural cost.
        non_assignment: cost per unit of unmatched mass (1 in the paper).
        label_costs: label-mismatch function, default :func:`label_cost`.

    Example:
        >>> from raynas.spaces import NB201Space
        >>> from raynas.spaces.layer_graph import layer_graph
        >>> space = NB201Space()
        >>> g = layer_graph(space, space.make(("nor_conv_3x3",) * 6))
        >>> OTMANN()(g, g)
        (0.0, 0.0)
    """

    def __init__(
        self,
        nu_str: float = NU_STR,
        non_assignment: float = 1.0,
        label_costs: Callable[[str, str], float] = label_cost,
    ) -> None:
        if nu_str < 0 or non_assignment <= 0:
            raise ValueError(f"need nu_str >= 0 and non_assignment > 0, got {nu_str}, {non_assignment}")
        self.nu_str = float(nu_str)
        self.non_assignment = float(non_assignment)
        self.labels = _LabelTable(label_costs)
        self._label_ids: dict[LayerGraph, np.ndarray] = {}

    def _ids(self, g: LayerGraph) -> np.ndarray:
        cached = self._label_ids.get(g)  # LayerGraph hashes by identity
        if cached is None:
            cached = self._label_ids[g] = self.labels.ids(g.labels)
        return cached

    def cost_matrix(self, g1: LayerGraph, g2: LayerGraph) -> np.ndarray:
        """``C_lmm + ν_str C_str`` between the layers of ``g1`` (rows) and ``g2`` (columns)."""
        i1, i2 = self._ids(g1), self._ids(g2)
        lmm = self.labels.matrix[np.ix_(i1, i2)]
        struct = np.abs(g1.paths[:, None, :] - g2.paths[None, :, :]).mean(axis=2)
        return lmm + self.nu_str * struct

    def __call__(self, g1: LayerGraph, g2: LayerGraph) -> tuple[float, float]:
        """``(d, d̄)``: the distance and its normalised version."""
        return self.many(g1, [g2])[0]

    def many(self, g: LayerGraph, others: Sequence[LayerGraph]) -> list[tuple[float, float]]:
        """``(d, d̄)`` from ``g`` to each of ``others`` (cost matrices built in one batch)."""
        if not others:
            return []
        labels, paths, masses = self.padded(others)
        d, dn = self.batch(g, labels, paths, masses)
        return list(zip(d.tolist(), dn.tolist()))

    def padded(self, graphs: Sequence[LayerGraph], width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Label ids ``(B, W)``, path features ``(B, W, 6)`` and masses ``(B, W)``, zero-mass padded."""
        width = width or max(g.num_layers for g in graphs)
        B = len(graphs)
        labels = np.zeros((B, width), dtype=np.int64)
        paths = np.zeros((B, width, 6))
        masses = np.zeros((B, width))
        for k, o in enumerate(graphs):
            n = o.num_layers
            labels[k, :n] = self._ids(o)
            paths[k, :n] = o.paths
            masses[k, :n] = o.masses
        return labels, paths, masses

    def batch(
        self, g: LayerGraph, labels: np.ndarray, paths: np.ndarray, masses: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(d, d̄)`` arrays from ``g`` to a padded batch (see :meth:`padded`).

        Index 0 of each side is its sink (the other side's total mass, cost
        ``non_assignment`` to every layer, 0 to the other sink); each problem
        is solved on the padded arrays (padding has zero mass, so it does not
        change the optimum).
        """
        B, width = labels.shape
        n1 = g.num_layers
        tm1 = g.total_mass
        tm2 = masses.sum(axis=1)
        ids = self._ids(g)
        cost = np.full((B, n1 + 1, width + 1), self.non_assignment)
        struct = np.abs(g.paths[None, :, None, :] - paths[:, None, :, :]).mean(axis=3)
        cost[:, 1:, 1:] = self.labels.matrix[ids[:, None], labels[:, None, :]] + self.nu_str * struct
        cost[:, 0, 0] = 0.0
        a = np.empty((B, n1 + 1))
        a[:, 0] = tm2
        a[:, 1:] = g.masses
        b = np.empty((B, width + 1))
        b[:, 0] = tm1
        b[:, 1:] = masses  # zero on padding: those columns carry no mass
        if _emd_c is not None:
            values = np.empty(B)
            for k in range(B):
                _, value, _, _, code = _emd_c(a[k], b[k], cost[k], 100_000, 1)
                values[k] = value if code == 1 else _solve(a[k], b[k], cost[k])
        else:  # pragma: no cover
            values = np.array([_solve(a[k], b[k], cost[k]) for k in range(B)])
        # Rounded so that d(G1, G2) and d(G2, G1), solved separately, agree exactly
        # (suggestions must not depend on which side a cache happened to solve).
        values = np.round(np.maximum(values, 0.0), 8)
        return values, values / (tm1 + tm2)


class OTMANNDistances:
    """A registry of architectures with a cache of their pairwise OTMANN distances.

    Architectures get integer ids in order of registration (the GP's inputs).
    Distances are computed lazily, per pair, and cached in per-id rows that
    grow with the registry, so a pair is solved at most once; identical layer
    graphs (isomorphic cells) share one row of work through a canonical key.

    Args:
        space: the space of the architectures.
        otmann: the distance (default :class:`OTMANN` with its defaults).
        graph_fn: ``arch -> LayerGraph``, default :func:`layer_graph` on ``space``.
    """

    def __init__(
        self,
        space: SearchSpace,
        otmann: OTMANN | None = None,
        graph_fn: Callable[[Architecture], LayerGraph] | None = None,
    ) -> None:
        self.space = space
        self.otmann = otmann or OTMANN()
        self.graph_fn = graph_fn
        self.archs: list[Architecture] = []
        self._id: dict[Architecture, int] = {}
        self._gid_of: list[int] = []  # arch id -> id of its (deduplicated) layer graph
        self.graphs: list[LayerGraph] = []  # by graph id
        self._graph_key: dict[tuple, int] = {}
        self._rows: dict[int, np.ndarray] = {}  # graph id -> (capacity, 2) float64, NaN = unknown
        self._capacity = 64
        # padded features of every graph, for batched cost matrices (see OTMANN.padded)
        self._labels = np.zeros((0, 2), dtype=np.int64)
        self._paths = np.zeros((0, 2, 6))
        self._masses = np.zeros((0, 2))
        self.pairs_solved = 0

    def __len__(self) -> int:
        return len(self.archs)

    def graph(self, index: int) -> LayerGraph:
        """The layer graph of the architecture with id ``index``."""
        return self.graphs[self._gid_of[index]]

    def add(self, arch: Architecture) -> int:
        """The id of ``arch``, registering it (and building its layer graph) if new."""
        known = self._id.get(arch)
        if known is not None:
            return known
        graph = layer_graph(self.space, arch) if self.graph_fn is None else self.graph_fn(arch)
        key = (graph.labels, graph.edges, graph.masses.tobytes())
        gid = self._graph_key.get(key)
        if gid is None:
            gid = self._graph_key[key] = len(self.graphs)
            self.graphs.append(graph)
            self._store(graph)
            if gid >= self._capacity:
                self._capacity *= 2
                for g, row in self._rows.items():
                    grown = np.full((self._capacity, 2), np.nan)
                    grown[: len(row)] = row
                    self._rows[g] = grown
        index = len(self.archs)
        self.archs.append(arch)
        self._id[arch] = index
        self._gid_of.append(gid)
        return index

    def add_all(self, archs: Iterable[Architecture]) -> np.ndarray:
        return np.array([self.add(a) for a in archs], dtype=np.int64)

    def _store(self, graph: LayerGraph) -> None:
        width = max(self._labels.shape[1], graph.num_layers)
        if width > self._labels.shape[1]:
            grow = width - self._labels.shape[1]
            self._labels = np.pad(self._labels, ((0, 0), (0, grow)))
            self._paths = np.pad(self._paths, ((0, 0), (0, grow), (0, 0)))
            self._masses = np.pad(self._masses, ((0, 0), (0, grow)))
        labels, paths, masses = self.otmann.padded([graph], width)
        if len(self.graphs) > len(self._labels):
            size = max(2 * len(self._labels), 64)
            self._labels = np.resize(self._labels, (size, width))
            self._paths = np.resize(self._paths, (size, width, 6))
            self._masses = np.resize(self._masses, (size, width))
        gid = len(self.graphs) - 1
        self._labels[gid], self._paths[gid], self._masses[gid] = labels[0], paths[0], masses[0]

    def _row(self, gid: int) -> np.ndarray:
        row = self._rows.get(gid)
        if row is None:
            row = np.full((self._capacity, 2), np.nan)
            row[gid] = 0.0
            for other, values in self._rows.items():  # symmetry: reuse what other rows know
                row[other] = values[gid]
            self._rows[gid] = row
        return row

    def matrices(self, ids1: Sequence[int], ids2: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(D, D̄)``, each ``(len(ids1), len(ids2))``, computing missing pairs.

        Rows of the cache are kept for the ids in ``ids2`` (a GP passes its
        training set there), so memory grows as ``len(train) × len(registry)``.
        Missing pairs are solved in batches along the shorter side.
        """
        ids1 = np.asarray(ids1, dtype=np.int64).ravel()
        ids2 = np.asarray(ids2, dtype=np.int64).ravel()
        gid = np.asarray(self._gid_of, dtype=np.int64)
        g1, g2 = gid[ids1], gid[ids2]
        u1, inv1 = np.unique(g1, return_inverse=True)
        u2, inv2 = np.unique(g2, return_inverse=True)
        rows = [self._row(int(j)) for j in u2]
        block = np.stack([row[u1] for row in rows], axis=1)  # (len(u1), len(u2), 2)
        missing = np.isnan(block[..., 0])
        if missing.any():
            if len(u1) <= len(u2):
                groups = [(u1[a], u2[missing[a]]) for a in np.flatnonzero(missing.any(axis=1))]
            else:
                groups = [(u2[b], u1[missing[:, b]]) for b in np.flatnonzero(missing.any(axis=0))]
            for fixed, others in groups:
                d, dn = self.otmann.batch(
                    self.graphs[int(fixed)], self._labels[others], self._paths[others], self._masses[others]
                )
                self.pairs_solved += len(d)
                values = np.stack([d, dn], axis=1)
                for other, value in zip(others.tolist(), values):
                    for x, y in ((int(fixed), other), (other, int(fixed))):
                        row = self._rows.get(x)
                        if row is not None:
                            row[y] = value
            block = np.stack([row[u1] for row in rows], axis=1)
        table = block[inv1][:, inv2]  # (n1, n2, 2)
        return table[..., 0], table[..., 1]


class _ProjectPSD(torch.autograd.Function):
    """``V max(Λ, 0) Vᵀ`` for symmetric ``K = V Λ Vᵀ``: the nearest PSD matrix in Frobenius norm.

    The backward pass uses the Daleckii–Krein formula, which stays finite for
    repeated eigenvalues (where differentiating ``eigh`` directly does not).
    """

    @staticmethod
    def forward(ctx, matrix: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        sym = (matrix + matrix.mT) / 2
        lam, vec = torch.linalg.eigh(sym)
        ctx.save_for_backward(lam, vec)
        return (vec * lam.clamp_min(0).unsqueeze(-2)) @ vec.mT

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        lam, vec = ctx.saved_tensors
        grad = (grad + grad.mT) / 2
        f = lam.clamp_min(0)
        fprime = (lam > 0).to(lam.dtype)
        dl = lam.unsqueeze(-1) - lam.unsqueeze(-2)
        tol = 1e-10 * lam.abs().amax(dim=-1, keepdim=True).unsqueeze(-1).clamp_min(1.0)
        same = dl.abs() <= tol
        divided = (f.unsqueeze(-1) - f.unsqueeze(-2)) / torch.where(same, torch.ones_like(dl), dl)
        weights = torch.where(same, (fprime.unsqueeze(-1) + fprime.unsqueeze(-2)) / 2, divided)
        return vec @ ((vec.mT @ grad @ vec) * weights) @ vec.mT


def project_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Clip the negative eigenvalues of a symmetric (batch of) matrix (differentiable)."""
    return _ProjectPSD.apply(matrix)


class OTMANNKernel(Kernel):
    r"""``k(x, x') = α exp(−β d(x, x')/s) + ᾱ exp(−β̄ d̄(x, x')/s̄)`` over architecture ids.

    The GP's inputs are float tensors ``(..., n, 1)`` holding registry ids of
    an :class:`OTMANNDistances`; the kernel looks the distances up (computing
    missing pairs once). ``α, β, ᾱ, β̄`` are positive (GPyTorch ``Positive``
    constraints) and learned by maximising the marginal likelihood; ``s`` and
    ``s̄`` are fixed scales (set by :meth:`set_scales`, e.g. the median
    distance among training points) so that ``β ≈ 1`` is a sensible start
    whatever the networks' masses.

    **Positive definiteness.** ``exp(−βd)`` of a pseudo-distance is not
    guaranteed PSD, and for OTMANN it is not: on 300 random NB201 cells the
    smallest eigenvalue of ``exp(−βd/s)`` is about −0.2 for ``β`` between 0.3
    and 1 (tests/kernels/test_otmann.py checks this). With ``project=True``
    (default) a *square* kernel matrix of a set with itself (the training
    covariance, in the marginal likelihood and in the posterior) is replaced by
    its projection onto the PSD cone, ``V max(Λ, 0) Vᵀ`` (differentiable, see
    :func:`project_psd`), as the NASBOT paper suggests. Cross-covariances
    ``k(x*, X)`` and prior variances stay raw; GPyTorch clips the rare tiny
    negative posterior variance this inconsistency can produce.

    Example:
        >>> from raynas.spaces import NB201Space
        >>> space = NB201Space()
        >>> distances = OTMANNDistances(space)
        >>> ids = distances.add_all(space.sample(np.random.default_rng(k)) for k in range(5))
        >>> kernel = OTMANNKernel(distances)
        >>> kernel(torch.tensor(ids, dtype=torch.float64)[:, None]).to_dense().shape
        torch.Size([5, 5])
    """

    has_lengthscale = False

    def __init__(self, distances: OTMANNDistances, project: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.distances = distances
        self.project = project
        for name, init in (("alpha", 0.5), ("beta", 1.0), ("alpha_bar", 0.5), ("beta_bar", 1.0)):
            self.register_parameter(f"raw_{name}", torch.nn.Parameter(torch.zeros((), dtype=torch.float64)))
            self.register_constraint(f"raw_{name}", Positive())
            self._set(name, init)
        self.register_buffer("scale", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("scale_bar", torch.tensor(1.0, dtype=torch.float64))
        self._memo: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _set(self, name: str, value: float) -> None:
        constraint = getattr(self, f"raw_{name}_constraint")
        raw = getattr(self, f"raw_{name}")
        raw.data = constraint.inverse_transform(torch.as_tensor(value, dtype=raw.dtype))

    @property
    def alpha(self) -> torch.Tensor:
        return self.raw_alpha_constraint.transform(self.raw_alpha)

    @property
    def beta(self) -> torch.Tensor:
        return self.raw_beta_constraint.transform(self.raw_beta)

    @property
    def alpha_bar(self) -> torch.Tensor:
        return self.raw_alpha_bar_constraint.transform(self.raw_alpha_bar)

    @property
    def beta_bar(self) -> torch.Tensor:
        return self.raw_beta_bar_constraint.transform(self.raw_beta_bar)

    def set_scales(self, ids: Sequence[int]) -> None:
        """Set ``s``, ``s̄`` to the median non-zero distance among ``ids`` (no-op if none)."""
        d, dn = self.distances.matrices(ids, ids)
        upper = np.triu_indices(len(ids), k=1)
        for values, buffer in ((d[upper], self.scale), (dn[upper], self.scale_bar)):
            positive = values[values > 0]
            if positive.size:
                buffer.fill_(float(np.median(positive)))

    def distance_tensors(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D, D̄)`` with the broadcast batch shape of ``x1 (..., n1, 1)`` and ``x2 (..., n2, 1)``."""
        a = x1[..., 0].detach().round().long()
        b = x2[..., 0].detach().round().long()
        key = (a.shape, b.shape, a.cpu().numpy().tobytes(), b.cpu().numpy().tobytes(), x1.dtype)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        ua, ia = torch.unique(a, return_inverse=True)
        ub, ib = torch.unique(b, return_inverse=True)
        d, dn = self.distances.matrices(ua.cpu().numpy(), ub.cpu().numpy())
        d = torch.as_tensor(d, dtype=x1.dtype, device=x1.device)
        dn = torch.as_tensor(dn, dtype=x1.dtype, device=x1.device)
        rows, cols = ia.unsqueeze(-1), ib.unsqueeze(-2)
        out = (d[rows, cols], dn[rows, cols])
        if len(self._memo) > 16:
            self._memo.clear()
        self._memo[key] = out
        return out

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params):
        if last_dim_is_batch:
            raise NotImplementedError("OTMANNKernel does not support last_dim_is_batch")
        same = x1.shape == x2.shape and torch.equal(x1, x2)
        if same and (diag or x1.shape[-2] == 1):
            # k(x, x) = α + ᾱ: no look-up. (BoTorch scores b candidates as a (b, 1, 1) batch:
            # looking up their (b, 1, 1) test-test block as one id set would solve b² pairs.)
            value = (self.alpha + self.alpha_bar).to(x1.dtype)
            return value.expand(x1.shape[:-1] if diag else x1.shape[:-1] + (1,))
        if diag:
            d, dn = self.distance_tensors(x1, x2)
            d, dn = d.diagonal(dim1=-2, dim2=-1), dn.diagonal(dim1=-2, dim2=-1)
        else:
            d, dn = self.distance_tensors(x1, x2)
        matrix = self.alpha * torch.exp(-self.beta * d / self.scale) + self.alpha_bar * torch.exp(
            -self.beta_bar * dn / self.scale_bar
        )
        if self.project and same and not diag and x1.shape[-2] > 1:
            matrix = project_psd(matrix)
        return matrix


__all__ = [
    "INCOMPATIBLE",
    "NU_STR",
    "OTMANN",
    "OTMANNDistances",
    "OTMANNKernel",
    "label_cost",
    "project_psd",
]
