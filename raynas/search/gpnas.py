"""GP-NAS as a search method (Li et al., CVPR 2020): mutual-information sampling, then the predicted best.

See :class:`GPNAS`. The model is :class:`raynas.surrogates.gpnas.GPNASModel`
(grouped kernel of eq. 7 plus a Bayesian linear mean); acquisition functions
are BoTorch's, evaluated on the GP posterior over a pool of candidates; the
loop (initial design, pending trials, outcome warping, fitting, candidates)
is the engine's, :mod:`raynas.bo`.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import torch
from botorch.acquisition.analytic import (
    LogExpectedImprovement,
    PosteriorMean,
    PosteriorStandardDeviation,
    UpperConfidenceBound,
)
from torch import Tensor

from raynas.architecture import Architecture
from raynas.bo.acquisition import score_candidates
from raynas.bo.candidates import Exhaustive, LocalPool
from raynas.bo.engine import BayesianOptimization, ModelData
from raynas.kernels.grouped import Grouping
from raynas.pareto import expected_hypervolume_improvement
from raynas.spaces.base import SearchSpace
from raynas.surrogates.gpnas import FitMethod, GPNASModel

Acquisition = Literal["ei", "ucb", "mean"]
Warping = Literal["none", "rank"]
#: Finite spaces up to this size are scored whole at every suggestion (NB201: 15,625).
ENUMERATE_LIMIT = 16384


class GPNAS(BayesianOptimization):
    """GP-NAS: mutual-information sampling until the expected MSE is low, then the predicted best.

    Phases (Algorithm 1 of the paper, adapted to a budgeted search):

    1. **Initial design**: the first ``num_initial`` suggestions (default 10,
       as in BONAS) are uniformly random, counted in the budget.
    2. **Mutual-information sampling** (eq. 12). Maximising
       ``M = ½ log |K(u,u)| / |K(u|s)|`` over the next sample is done greedily:
       the candidate with the largest posterior variance given every sampled
       *and pending* architecture (``PosteriorStandardDeviation``). The GP
       variance does not depend on the observed values, so conditioning on
       pending trials is exact here and N concurrent suggestions are N
       different, jointly informative points (the batch-greedy rule).
    3. **Exploitation**: once the expected MSE (Theorem 3, as
       :meth:`GPNASModel.expected_mse`: mean posterior variance over the
       candidate pool relative to the variance of the observations) falls
       under ``mse_threshold``, or after ``max_explore`` MI suggestions, the
       search switches for good to the predicted best, scored by BoTorch's
       ``LogExpectedImprovement`` (or ``UpperConfidenceBound`` /
       ``PosteriorMean``). Pending trials enter as *kriging believers*: the
       model is conditioned (``condition_on_observations``) on them at their
       posterior mean, which removes their variance so concurrent suggestions
       spread out.

    Candidates: finite spaces of at most ``enumerate_limit`` architectures
    (NB201) are scored whole; ``K(candidates, train)`` is cached and extended
    column by column between refits. Larger spaces (MobileNet, 12**14) use a
    pool of ``pool_random`` random architectures plus every one-edit neighbour
    of the ``pool_top`` best observations and ``pool_mutations`` two-edit
    mutations of them.

    Refits: hyperparameters (σ_i, prior variance of w, noise, bias) are
    re-estimated by maximum likelihood when the number of observations has
    grown by ``refit_fraction`` (at least one) since the last fit, warm
    started from the last values; in between the GP is only re-conditioned
    with fixed hyperparameters (one Cholesky factorisation of ``n x n``).

    Objective values enter the model oriented (larger is better). With
    ``warping="rank"`` (default) they are first mapped to normal scores
    ``Φ⁻¹((rank - ½)/n)`` (the engine's :class:`~raynas.bo.outcome.RankWarp`;
    deviation from the paper, which models raw values: NAS objectives are
    heavy-tailed and a standardised GP spends its capacity on the tail).
    ``warping="none"`` is the paper's model.

    Other deviations, each with its reason: a budgeted search switches to
    exploiting the fitted GP (EI) where the paper stops and reports the
    predicted best; the expected-MSE rule uses the GP's posterior variance
    (eq. 35 as printed keeps the prior residual variance, which never
    shrinks); hyperparameters are refitted when the data grew by
    ``refit_fraction`` to keep ``suggest`` fast.

    Example:
        >>> from raynas.spaces import NB201Space
        >>> search = GPNAS(NB201Space(), mode="max", seed=0)
        >>> arch = search.suggest("trial_0")

    Saved state: the hyperparameters of the last fit, its bookkeeping and
    the phase, so a restored search continues with exactly the same model
    (the GP itself is re-conditioned on the restored observations).

    Several objectives (``computed_objectives``, :mod:`raynas.pareto`): after
    the exploration phase, candidates are scored by expected hypervolume
    improvement of (learned value, computed objectives) instead of EI.

    Args:
        space: the search space.
        num_initial: random architectures first.
        mse_threshold: relative expected MSE under which exploration stops.
        max_explore: most MI suggestions (a budget guard; the paper only has
            the threshold).
        acquisition: ``"ei"`` (LogEI), ``"ucb"`` or ``"mean"`` in the exploitation phase.
        ucb_beta: ``β`` of UCB.
        refit_fraction: refit when observations grew by this fraction.
        warping: ``"rank"`` or ``"none"`` (see above).
        pool_random, pool_top, pool_mutations, enumerate_limit: candidate pool (see above).
        num_threads: PyTorch threads while modelling (restored afterwards).
            Matrices here are small; on a shared machine extra threads only
            oversubscribe the cores.
        learn_lengthscale, linear_mean, nb201_grouping, method, fit_maxiter:
            passed to :class:`GPNASModel`.
        kwargs: :class:`ArchitectureSearch` settings (``mode``, ``seed``,
            ``points_to_evaluate``, ``allow_repeats``).
    """

    #: several objectives: EHVI with the computed ones exact (:mod:`raynas.pareto`)
    supports_computed_objectives = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        num_initial: int = 10,
        mse_threshold: float = 0.5,
        max_explore: int = 20,
        acquisition: Acquisition = "ei",
        ucb_beta: float = 4.0,
        refit_fraction: float = 0.1,
        warping: Warping = "rank",
        pool_random: int = 1000,
        pool_top: int = 10,
        pool_mutations: int = 500,
        enumerate_limit: int = ENUMERATE_LIMIT,
        num_threads: int | None = 1,
        learn_lengthscale: bool = False,
        linear_mean: bool = True,
        nb201_grouping: Grouping = "type",
        method: FitMethod = "marginal",
        fit_maxiter: int = 200,
        **kwargs: Any,
    ) -> None:
        if acquisition not in ("ei", "ucb", "mean"):
            raise ValueError(f"acquisition must be 'ei', 'ucb' or 'mean', got {acquisition!r}")
        if warping not in ("none", "rank"):
            raise ValueError(f"warping must be 'none' or 'rank', got {warping!r}")
        if num_initial < 2:
            raise ValueError(f"num_initial must be >= 2 (the GP needs data), got {num_initial}")
        if not refit_fraction >= 0:
            raise ValueError(f"refit_fraction must be >= 0, got {refit_fraction}")
        super().__init__(space, num_initial=num_initial, warping="normal" if warping == "rank" else "none",
                         num_threads=num_threads, **kwargs)
        self.mse_threshold = float(mse_threshold)
        self.max_explore = int(max_explore)
        self.acquisition = acquisition
        self.ucb_beta = float(ucb_beta)
        self.refit_fraction = float(refit_fraction)
        self.model = GPNASModel(
            space, learn_lengthscale=learn_lengthscale, linear_mean=linear_mean,
            nb201_grouping=nb201_grouping, method=method, fit_maxiter=fit_maxiter,
        )
        self.exploring = True
        self.num_explored = 0
        self.switched_at: tuple[int, float] | None = None  # (observations, expected MSE) at the switch
        self.last_expected_mse: float | None = None
        self._fit_n = 0  # observations at the last hyperparameter fit
        self._model_n = -1  # observations the current GP is conditioned on
        # whole-space candidates of small finite spaces, else a local pool
        self._enumerated = space.size is not None and space.size <= enumerate_limit
        self.candidates: Exhaustive | LocalPool = (
            Exhaustive(space) if self._enumerated
            else LocalPool(top=int(pool_top), mutations=int(pool_mutations), random=int(pool_random))
        )
        self._all_X: Tensor | None = None
        self._cross: Tensor | None = None  # K(all candidates, observed), columns in observation order
        self._cross_version = -1

    # ------------------------------------------------------------- model
    def _refresh_model(self, data: ModelData) -> GPNASModel:
        """The GP on every observation; hyperparameters refit on the schedule."""
        n = len(data)
        if n == self._model_n and self.model.gp is not None:
            return self.model
        due = max(1, math.ceil(self.refit_fraction * self._fit_n))
        refit = self.model.gp is None and self.model.hyperparameters is None or n - self._fit_n >= due
        self.model.fit(data.archs, self.targets(data.values).reshape(-1).numpy(), refit=refit)
        if refit:
            self._fit_n = n
        self._model_n = n
        return self.model

    def posterior(self, archs: Sequence[Architecture], data: ModelData) -> tuple[Tensor, Tensor]:
        """The GP's ``(mean, variance)`` of the latent value at ``archs`` (warped units)."""
        mean, variance = self._refresh_model(data).predict(archs)
        return torch.as_tensor(mean), torch.as_tensor(variance)

    # -------------------------------------------------------- candidates
    def _candidates(self, model: GPNASModel, data: ModelData) -> tuple[list[Architecture], Tensor, Tensor | None]:
        """Unseen candidates, their encodings and ``K(candidates, observed)`` when it is cached."""
        if isinstance(self.candidates, Exhaustive):
            everything = self.candidates.enumerate()
            if self._all_X is None:
                self._all_X = model.encode(everything)
            rows = torch.as_tensor(self.candidates.unseen_rows(self), dtype=torch.long)
            cross = self._whole_space_cross(model).index_select(0, rows)
            return [everything[i] for i in rows.tolist()], self._all_X.index_select(0, rows), cross
        archs = self.candidates.generate(self, data.ranked())
        return archs, model.encode(archs), None

    def _whole_space_cross(self, model: GPNASModel) -> Tensor:
        """``K(every architecture, observed)``: recomputed after a refit, else extended by new columns."""
        if self._cross_version != model.version or (
            self._cross is not None and self._cross.shape[-1] > model.num_train
        ):
            self._cross, self._cross_version = None, model.version
        done = 0 if self._cross is None else self._cross.shape[-1]
        if done < model.num_train:
            extra = model.cross_covariance(self._all_X, start=done)
            self._cross = extra if self._cross is None else torch.cat([self._cross, extra], dim=-1)
        return self._cross

    # ----------------------------------------------------------- propose
    def propose_with_model(self, data: ModelData) -> Architecture | None:
        model = self._refresh_model(data)
        archs, X, cross = self._candidates(model, data)
        if not archs:
            return None
        fantasy = model.condition_on_pending(list(self.pending.values()))
        mean, variance, _ = fantasy.mean_variance(X, cross)
        if self.exploring:
            self.last_expected_mse = float(variance.mean())
            if self.last_expected_mse < self.mse_threshold or self.num_explored >= self.max_explore:
                self.exploring = False
                self.switched_at = (len(self.observations), self.last_expected_mse)
        if self.computed_objectives and not self.exploring:
            scores = self._hypervolume_gain(model, data, archs, mean, variance)
        else:
            scores = self._acquire(fantasy, X, mean, variance)
        if self.exploring:
            self.num_explored += 1
        return archs[int(torch.argmax(scores))]

    def _hypervolume_gain(self, model: GPNASModel, data: ModelData, archs: list[Architecture], mean: Tensor,
                          variance: Tensor) -> Tensor:
        """EHVI of the candidates (:func:`raynas.pareto.expected_hypervolume_improvement`): the learned
        objective from the posterior (pending trials believed), the computed ones exact; the
        observations enter at their posterior means, as EI's incumbent does."""
        observed, _, _ = model.mean_variance(model.train_X, with_variance=False)
        Y = torch.cat([torch.as_tensor(observed, dtype=torch.float64).reshape(-1, 1),
                       self.computed_matrix(data.archs)], dim=1)
        return expected_hypervolume_improvement(torch.as_tensor(mean), torch.as_tensor(variance),
                                                self.computed_matrix(archs), Y, self.objective_reference())

    def _acquire(self, model: GPNASModel, X: Tensor, mean: Tensor, variance: Tensor) -> Tensor:
        """BoTorch acquisition values of the candidates (q = 1) from the computed posterior."""
        if self.exploring:
            make = PosteriorStandardDeviation
        elif self.acquisition == "ei":
            observed, _, _ = model.mean_variance(model.train_X, with_variance=False)
            make = lambda m: LogExpectedImprovement(m, best_f=observed.max())  # noqa: E731
        elif self.acquisition == "ucb":
            make = lambda m: UpperConfidenceBound(m, beta=self.ucb_beta)  # noqa: E731
        else:
            make = PosteriorMean
        return score_candidates(model, X, make, mean=mean, variance=variance)

    # -------------------------------------------------------- save/restore
    def extra_state(self) -> dict[str, Any]:
        hyper = self.model.hyperparameters
        return {
            "hyper": None if hyper is None else {k: v.tolist() for k, v in hyper.items()},
            "fit_n": self._fit_n,
            "version": self.model.version,
            "exploring": self.exploring,
            "num_explored": self.num_explored,
            "switched_at": None if self.switched_at is None else list(self.switched_at),
            "last_expected_mse": self.last_expected_mse,
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.model.version = int(state.get("version", 0))
        self.model.load_hyperparameters(state.get("hyper"))  # also invalidates kernel caches
        self._fit_n = int(state.get("fit_n", 0))
        self._model_n = -1
        self.exploring = bool(state.get("exploring", True))
        self.num_explored = int(state.get("num_explored", 0))
        switched = state.get("switched_at")
        self.switched_at = None if switched is None else (int(switched[0]), float(switched[1]))
        self.last_expected_mse = state.get("last_expected_mse")
        self._cross, self._cross_version = None, -1


__all__ = ["ENUMERATE_LIMIT", "GPNAS"]
