"""Several objectives: Pareto fronts, hypervolume, and what the searchers need to trade accuracy against cost.

A multi-objective search here has **one learned objective** (the trial's
metric, e.g. validation accuracy: known only after training, so a surrogate
models it) and any number of **computed objectives**: known functions of the
architecture (parameters, FLOPs; a table's columns of them), evaluated
exactly, never modelled (:class:`ComputedObjective`). All objectives are
oriented to maximisation internally (a ``"min"`` objective is negated).

* Dominance and fronts: BoTorch's ``is_non_dominated``; non-dominated sorting
  and crowding distance (Deb et al. 2002, NSGA-II §III) for the evolutionary
  baseline (:func:`nondominated_ranks`, :func:`crowding_distance`).
* Hypervolume of a set against a reference point ``r``: BoTorch's
  ``Hypervolume`` (the volume dominated by the set and bounded by ``r``).
* The acquisition of the model-based methods: expected hypervolume
  improvement (Emmerich et al. 2006; BoTorch's analytic
  ``ExpectedHypervolumeImprovement``) of a candidate whose learned objective
  is ``N(μ, σ²)`` and whose computed objectives are exact
  (:func:`expected_hypervolume_improvement`). Its reference point is BoTorch's
  ``infer_reference_point`` of the observations, except where the user bounds a
  computed objective (:attr:`ComputedObjective.reference`).
* Constraints on quantities known before training (:class:`Constraint`, e.g.
  FLOPs ≤ 60 M): every search treats an architecture outside them as seen, so
  it is never suggested and no query is spent on it.

Deviation from the issue's "constrained acquisition": a bound on a *computed*
quantity needs no probability of feasibility (it is known exactly), so it is
applied as a filter; bounds on a learned quantity (latency measured in
training) are not supported yet.

Example::

    >>> import torch
    >>> Y = torch.tensor([[90.0, -50.0], [85.0, -20.0], [80.0, -60.0]])   # (accuracy, -FLOPs)
    >>> pareto_mask(Y).tolist()
    [True, True, False]
    >>> round(hypervolume(Y, torch.tensor([70.0, -100.0])), 1)
    1450.0

This module does not import Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from raynas.architecture import Architecture


@dataclass(frozen=True)
class ComputedObjective:
    """An objective known before training: ``function(arch)``, maximised or minimised (``mode``).

    ``reference``: the worst value still worth anything (the hypervolume's reference point in
    this objective, in its own units), or ``None`` to infer it from the observations.
    """

    name: str
    mode: str
    function: Callable[[Architecture], float]
    reference: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"computed objective {self.name!r}: mode must be 'max' or 'min', got {self.mode!r}")

    def oriented(self, arch: Architecture) -> float:
        """The value, negated for ``"min"``: larger is better."""
        value = float(self.function(arch))
        return value if self.mode == "max" else -value

    @property
    def oriented_reference(self) -> float:
        """:attr:`reference` negated for ``"min"``; NaN when it is to be inferred."""
        if self.reference is None:
            return math.nan
        return float(self.reference) if self.mode == "max" else -float(self.reference)


@dataclass(frozen=True)
class Constraint:
    """A bound on a quantity known before training: ``lower <= function(arch) <= upper`` (either may be None).

    Searches never suggest an architecture outside it (it counts as seen:
    :meth:`~raynas.search.base.ArchitectureSearch.is_seen`), so no query is spent on one.
    """

    name: str
    function: Callable[[Architecture], float]
    upper: float | None = None
    lower: float | None = None

    def __post_init__(self) -> None:
        if self.upper is None and self.lower is None:
            raise ValueError(f"constraint {self.name!r} needs an upper or a lower bound")

    def satisfied(self, arch: Architecture) -> bool:
        value = float(self.function(arch))
        return (self.upper is None or value <= self.upper) and (self.lower is None or value >= self.lower)


def parse_constraint(text: str) -> tuple[str, str, float]:
    """``"flops<=60"`` → ``("flops", "<=", 60.0)``; ``>=`` likewise."""
    for op in ("<=", ">="):
        name, sep, bound = text.partition(op)
        if sep:
            try:
                return name.strip(), op, float(bound)
            except ValueError:
                break
    raise ValueError(f"--constraint: expected COLUMN<=VALUE or COLUMN>=VALUE, got {text!r}")


def parse_objectives(text: str) -> list[tuple[str, str]]:
    """``"col:max,col2:min"`` → ``[("col", "max"), ("col2", "min")]`` (at least two, each named once)."""
    out: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, mode = item.rpartition(":")
        if not sep or not name or mode not in ("max", "min"):
            raise ValueError(f"--objectives: expected COLUMN:max or COLUMN:min, got {item!r} (in {text!r})")
        out.append((name, mode))
    names = [n for n, _ in out]
    if len(out) < 2 or len(set(names)) != len(names):
        raise ValueError(f"--objectives needs at least two different columns, got {text!r}")
    return out


def orient(values: Tensor, modes: Sequence[str]) -> Tensor:
    """``values`` (``n x m``) with the ``"min"`` columns negated: larger is better in every column."""
    signs = torch.tensor([1.0 if m == "max" else -1.0 for m in modes], dtype=values.dtype)
    return values * signs


def pareto_mask(Y: Tensor) -> Tensor:
    """Which rows of ``Y`` (``n x m``, maximised) no other row dominates (duplicates all kept)."""
    from botorch.utils.multi_objective.pareto import is_non_dominated

    if Y.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    return is_non_dominated(Y, deduplicate=False)


def hypervolume(Y: Tensor, reference: Tensor) -> float:
    """The hypervolume that the rows of ``Y`` (maximised) dominate above ``reference`` (0 for none)."""
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    Y = Y.to(torch.float64)
    reference = reference.to(torch.float64)
    inside = Y[(Y > reference).all(dim=-1)]
    if inside.shape[0] == 0:
        return 0.0
    return float(Hypervolume(reference).compute(inside[pareto_mask(inside)]))


def nondominated_ranks(Y: Tensor) -> Tensor:
    """NSGA-II's front index of each row of ``Y`` (maximised): 0 for the Pareto front, 1 for the next, ..."""
    ranks = torch.full((Y.shape[0],), -1, dtype=torch.long)
    remaining = torch.arange(Y.shape[0])
    front = 0
    while remaining.numel():
        mask = pareto_mask(Y[remaining])
        ranks[remaining[mask]] = front
        remaining = remaining[~mask]
        front += 1
    return ranks


def crowding_distance(Y: Tensor, ranks: Tensor) -> Tensor:
    """NSGA-II's crowding distance of each row within its front (``inf`` at a front's extremes)."""
    distance = torch.zeros(Y.shape[0], dtype=torch.float64)
    for front in ranks.unique():
        members = (ranks == front).nonzero().reshape(-1)
        if members.numel() <= 2:
            distance[members] = math.inf
            continue
        for column in range(Y.shape[1]):
            values = Y[members, column].to(torch.float64)
            order = torch.argsort(values)
            span = float(values[order[-1]] - values[order[0]])
            distance[members[order[0]]] = distance[members[order[-1]]] = math.inf
            if span > 0:
                gaps = (values[order[2:]] - values[order[:-2]]) / span
                distance[members[order[1:-1]]] += gaps
    return distance


def expected_hypervolume_improvement(mean: Tensor, variance: Tensor, computed: Tensor, observed: Tensor,
                                     reference: Tensor | None = None) -> Tensor:
    """EHVI of ``n`` candidates: learned objective ``N(mean, variance)``, computed objectives ``computed`` exact.

    ``computed`` is ``n x k`` and ``observed`` ``N x (1 + k)`` (learned objective first, on the
    model's scale), all maximised. The computed objectives enter BoTorch's analytic EHVI as
    deterministic outputs (variance clamped to its 1e-9 floor). The reference point is
    ``reference`` (``1 + k``, maximised) where it is not NaN, else BoTorch's
    ``infer_reference_point(observed)``: the user's bound on a computed objective (say FLOPs
    ≤ 222.86 M) keeps architectures dearer than any seen so far in play, which an inferred
    point (just past the worst observation) would give no gain at all. The learned
    objective's reference is always inferred, on the model's scale.
    """
    from botorch.acquisition.multi_objective.analytic import ExpectedHypervolumeImprovement
    from botorch.models.deterministic import GenericDeterministicModel
    from botorch.models.model import ModelList
    from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning
    from botorch.utils.multi_objective.hypervolume import infer_reference_point

    from raynas.bo.acquisition import MarginalPosterior

    n = mean.shape[0]
    if computed.shape[0] != n or observed.shape[1] != 1 + computed.shape[1]:
        raise ValueError(f"expected_hypervolume_improvement: {n} candidates with {tuple(computed.shape)} computed "
                         f"values, observations {tuple(observed.shape)}")
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    index = torch.arange(n, dtype=torch.float64).unsqueeze(-1)  # the models' input: the candidate's row
    table = computed.to(torch.float64)
    outputs = [MarginalPosterior(index, mean.to(torch.float64), variance.to(torch.float64))]
    for column in range(table.shape[1]):
        outputs.append(GenericDeterministicModel(
            lambda X, c=column: table[X[..., 0].long(), c].unsqueeze(-1), num_outputs=1))
    observed = observed.to(torch.float64)
    inferred = infer_reference_point(observed)
    if reference is not None:
        reference = reference.to(torch.float64)
        inferred = torch.where(torch.isnan(reference), inferred, reference)
    reference = inferred
    partitioning = FastNondominatedPartitioning(ref_point=reference, Y=observed)
    acquisition = ExpectedHypervolumeImprovement(ModelList(*outputs), ref_point=reference.tolist(),
                                                 partitioning=partitioning)
    with torch.no_grad():
        return acquisition(index.unsqueeze(-2)).reshape(-1)


__all__ = [
    "ComputedObjective",
    "Constraint",
    "parse_constraint",
    "crowding_distance",
    "expected_hypervolume_improvement",
    "hypervolume",
    "nondominated_ranks",
    "orient",
    "parse_objectives",
    "pareto_mask",
]
