r"""The Bayesian-optimisation loop that every model-based raynas method shares (Ray-free).

:class:`BayesianOptimization` is an :class:`~raynas.search.base.ArchitectureSearch`
(state: observations with their fidelity, pending trials, failures,
save/restore) that adds, once for every method:

* **the data** (:meth:`~BayesianOptimization.model_data`): one entry per
  evaluated architecture (its latest value), oriented so that larger is
  better (the one direction rule: :meth:`~raynas.search.base.ArchitectureSearch.score`
  on the way in, its inverse in :meth:`~BayesianOptimization.predict` on the way
  out), with the fidelity it was measured at and whether that is the highest
  fidelity seen (``full``); values from lower fidelities (trials a scheduler
  stopped early) as they are, calibrated onto the full fidelity by a per-rung
  map learnt from the architectures seen at both (:mod:`raynas.bo.fidelity`),
  or left out (``low_fidelity``);
* **the initial design**: uniformly random unseen architectures while fewer
  than ``num_initial`` suggestions were made (evaluated, failed or pending:
  the random start counts towards the budget, as in BONAS's protocol), while
  fewer than ``min_observations`` results are in, or while the data hold
  fewer than two distinct values (a model needs a contrast). With one
  worker the first two conditions coincide; with many, ``min_observations``
  says how much data a method's model needs before it may steer;
* **the outcome transform**: :class:`~raynas.bo.outcome.RankWarp` (or none),
  fitted on the data at each proposal;
* **fitting** with one fallback policy (:func:`raynas.bo.fitting.fit_mll`), the
  libraries' diagnostics routed to :mod:`logging`
  (:func:`raynas.bo.fitting.diagnostics_to_log`), one thread
  (:func:`raynas.bo.threads.torch_threads`);
* **pending trials** by the kriging believer (:func:`raynas.bo.pending.kriging_believer`);
* **candidates** through :class:`raynas.bo.candidates.CandidateGenerator`.

A method implements :meth:`~BayesianOptimization.propose_with_model` (its
surrogate and the paper's own steps, given the data) and
:meth:`~BayesianOptimization.posterior` (its surrogate's prediction in
transformed units); the engine does the rest.

Example:
    >>> class Mine(BayesianOptimization):               # doctest: +SKIP
    ...     def propose_with_model(self, data): ...
    ...     def posterior(self, archs, data): ...
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch

from raynas.architecture import Architecture
from raynas.bo.fidelity import apply_rung_map, fit_rung_maps
from raynas.bo.fitting import diagnostics_to_log
from raynas.bo.outcome import KINDS, RankWarp
from raynas.bo.threads import torch_threads
from raynas.search.base import ArchitectureSearch
from raynas.spaces.base import SearchSpace

logger = logging.getLogger("raynas.bo")

#: What the model makes of values measured below the highest fidelity (trials stopped early).
LowFidelity = Literal["calibrate", "use", "drop"]


@dataclass(frozen=True)
class ModelData:
    """What a surrogate is fitted on: one entry per evaluated architecture.

    Attributes:
        archs: the architectures, in the order they were first evaluated.
        values: their latest values, oriented (larger is better), float64; with
            ``low_fidelity="calibrate"`` a value measured below the highest fidelity is put on
            that fidelity's scale (:mod:`raynas.bo.fidelity`).
        fidelity: the fidelity each value was measured at (``None``: unknown).
        full: whether each value is at the highest fidelity observed (or unknown).
    """

    archs: list[Architecture]
    values: np.ndarray
    fidelity: list[float | None]
    full: np.ndarray

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def distinct(self) -> int:
        return int(np.unique(self.values).size)

    def ranked(self) -> list[tuple[Architecture, float]]:
        """``(arch, value)`` pairs in data order (a candidate generator's population)."""
        return list(zip(self.archs, self.values.tolist()))


class BayesianOptimization(ArchitectureSearch):
    """Base class of the model-based methods: the shared loop (see the module docstring).

    Args:
        space: the search space.
        num_initial: random suggestions before the model is used (counted in the budget).
        min_observations: results needed before the model is used (at least 2).
        warping: outcome transform of the oriented values: ``"normal"``, ``"uniform"``,
            ``"minmax"`` (:class:`~raynas.bo.outcome.RankWarp`) or ``"none"``.
        num_threads: torch intra-op threads while modelling (``None``: leave as is).
        low_fidelity: values measured below the highest fidelity (trials a scheduler stopped early):
            ``"use"`` them as they are (default), ``"calibrate"`` them onto the highest fidelity
            (:mod:`raynas.bo.fidelity`), or ``"drop"`` them from the model's data. Never the incumbent
            either way. ``"use"`` is the default because it measured cheapest under ASHA
            (``docs/measurements.md``): a stopped architecture cannot be suggested again, and a model
            that rates stopped cells low steers away from cells ASHA would stop.
        **kwargs: :class:`~raynas.search.base.ArchitectureSearch` arguments
            (``mode``, ``seed``, ``points_to_evaluate``, ``allow_repeats``).
    """

    #: Fewest distinct values before the model is used.
    min_distinct: int = 2
    #: Fewest observations :meth:`predict` needs.
    min_predict: int = 2

    def __init__(
        self,
        space: SearchSpace,
        *,
        num_initial: int = 10,
        min_observations: int = 2,
        warping: str = "normal",
        num_threads: int | None = 1,
        low_fidelity: LowFidelity = "use",
        **kwargs: Any,
    ) -> None:
        if low_fidelity not in ("calibrate", "use", "drop"):
            raise ValueError(f"low_fidelity must be 'calibrate', 'use' or 'drop', got {low_fidelity!r}")
        if num_initial < 1 or min_observations < 2:
            raise ValueError(f"need num_initial >= 1 and min_observations >= 2, got {num_initial}, {min_observations}")
        if warping not in (*KINDS, "none"):
            raise ValueError(f"warping must be one of {[*KINDS, 'none']}, got {warping!r}")
        kwargs.setdefault("max_attempts", 1)
        super().__init__(space, **kwargs)
        self.num_initial = int(num_initial)
        self.min_observations = int(min_observations)
        self.warping = warping
        self.num_threads = num_threads
        self.low_fidelity = low_fidelity
        self.outcome: RankWarp | None = None if warping == "none" else RankWarp(warping)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ data
    def model_data(self) -> ModelData:
        """The observations as model data (latest value per architecture, oriented; lower fidelities
        as ``low_fidelity`` says)."""
        fidelities = [o.fidelity for o in self.observations if o.fidelity is not None]
        top = max(fidelities) if fidelities else None
        archs: list[Architecture] = []
        values: list[float] = []
        fidelity: list[float | None] = []
        full: list[bool] = []
        position: dict[Architecture, int] = {}
        for o in self.observations:
            is_full = top is None or o.fidelity is None or o.fidelity >= top
            k = position.get(o.arch)
            if k is not None:  # a repeat (allow_repeats): the latest value, in the first place
                values[k], fidelity[k], full[k] = self.score(o.value), o.fidelity, is_full
                continue
            position[o.arch] = len(archs)
            archs.append(o.arch)
            values.append(self.score(o.value))
            fidelity.append(o.fidelity)
            full.append(is_full)
        if top is not None and not all(full) and self.low_fidelity == "calibrate":
            maps = fit_rung_maps(({f: self.score(v) for f, v in by_rung.items()}
                                  for by_rung in self.rung_values.values()), top)
            for k, is_full in enumerate(full):
                if not is_full:
                    values[k] = apply_rung_map(maps, float(fidelity[k]), values[k])  # type: ignore[arg-type]
        if self.low_fidelity == "drop" and not all(full):
            keep = [k for k, is_full in enumerate(full) if is_full]
            archs, values = [archs[k] for k in keep], [values[k] for k in keep]
            fidelity, full = [fidelity[k] for k in keep], [True] * len(keep)
        return ModelData(archs, np.asarray(values, dtype=np.float64), fidelity, np.asarray(full, dtype=bool))

    def targets(self, values: np.ndarray) -> torch.Tensor:
        """Oriented values through the outcome transform (fitted on them), as an ``n x 1`` float64 tensor."""
        y = torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(-1, 1)
        if self.outcome is None:
            return y
        self.outcome.train()
        y, _ = self.outcome(y)
        self.outcome.eval()
        return y

    @property
    def num_random_initial(self) -> int | None:
        return self.num_initial

    def initial_design(self, data: ModelData) -> bool:
        """The one initial-design rule: random while ``num_initial`` suggestions are not made,
        fewer than ``min_observations`` results are in, or the data hold fewer than
        :attr:`min_distinct` distinct values."""
        return (self.num_suggested < self.num_initial or len(data) < self.min_observations
                or data.distinct < self.min_distinct)

    # ---------------------------------------------------------------- the loop
    def propose(self) -> Architecture:
        data = self.model_data()
        if self.initial_design(data):
            return self.random_unseen()  # type: ignore[return-value]
        with torch_threads(self.num_threads), diagnostics_to_log():
            arch = self.propose_with_model(data)
        if arch is None:
            logger.info("%s: no candidate left to score; suggesting a random unseen architecture",
                        type(self).__name__)
            return self.random_unseen()  # type: ignore[return-value]
        return arch

    @abstractmethod
    def propose_with_model(self, data: ModelData) -> Architecture | None:
        """The method's proposal from its surrogate (``None``: no candidate, the engine picks at random)."""

    # -------------------------------------------------------------- prediction
    @abstractmethod
    def posterior(self, archs: Sequence[Architecture], data: ModelData) -> tuple[torch.Tensor, torch.Tensor]:
        """The surrogate's ``(mean, variance)`` at ``archs`` in transformed units (larger is better),
        the model brought up to date with ``data``."""

    def predict(self, archs: Sequence[Architecture]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ``(mean, variance)`` of the metric at ``archs``, in its units and direction.

        The surrogate's posterior mapped back through the outcome transform
        (delta method for the variance) and the direction: for ``mode="min"``
        the mean is the metric itself, not its negation.
        """
        data = self.model_data()
        if len(data) < self.min_predict or data.distinct < self.min_distinct:
            raise ValueError(
                f"{type(self).__name__}.predict needs at least {self.min_predict} observations with "
                f"different values, got {len(data)} observations with {data.distinct} distinct values"
            )
        with torch_threads(self.num_threads), diagnostics_to_log():
            self.targets(data.values)
            mean, variance = self.posterior(list(archs), data)
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        variance = torch.as_tensor(variance, dtype=torch.float64).reshape(-1).clamp_min(0.0)
        if self.outcome is not None:
            mean, variance = self.outcome.untransform_mean_variance(mean, variance)
        mean_np, variance_np = mean.numpy(), variance.numpy()
        return (-mean_np if self.mode == "min" else mean_np), variance_np
