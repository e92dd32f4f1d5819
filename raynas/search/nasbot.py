"""NASBOT: Bayesian optimisation over architectures with the OTMANN kernel.

Kandasamy, Neiswanger, Schneider, Póczos, Xing, "Neural Architecture Search
with Bayesian Optimisation and Optimal Transport", NeurIPS 2018.

A Gaussian process over architectures (BoTorch ``SingleTaskGP`` whose inputs
are registry ids and whose covariance is
:class:`~raynas.kernels.otmann.OTMANNKernel`) models the objective; the next
architecture maximises an acquisition (GP-UCB by default, EI as an option,
both BoTorch's) over the space, the maximisation done by an evolutionary
algorithm that starts from the best evaluated networks and applies the
space's modifiers. Pending evaluations are hallucinated with the posterior
mean (kriging believer), so concurrent suggestions differ.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Literal, Mapping

import numpy as np
import torch

from raynas.architecture import Architecture
from raynas.kernels.otmann import NU_STR, OTMANN, OTMANNDistances, OTMANNKernel
from raynas.search.base import ArchitectureSearch
from raynas.surrogates.warping import normal_scores
from raynas.spaces.base import InvalidArchitectureError, SearchSpace

Acquisition = Literal["ucb", "ei"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: leave as is), then restore.

    NASBOT's matrices are small (hundreds of rows): threading gains nothing
    and, on a loaded 2-core machine, OpenMP oversubscription made a 40-point
    GP fit about 100× slower (measured). NASBOT therefore runs single-threaded.
    """
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def default_nu_str(space: SearchSpace) -> float:
    """ν_str: 2.0 for the shallow NB201/NB101 cells, :data:`NU_STR` (0.5) otherwise.

    Cells have path lengths of at most 4 to 6, so with 0.5 the structural term
    barely counts; 2.0 ranked held-out NB201 cells a little better (Spearman
    0.51 vs 0.44 from 100 random cells, 2 seeds: a noisy, small study). On
    deep macro networks 2.0 would make two networks of different depths leave
    all their mass unmatched (structural cost above the non-assignment cost 2).
    """
    from raynas.spaces.nb101 import NB101Space
    from raynas.spaces.nb201 import NB201Space

    return 2.0 if isinstance(space, (NB201Space, NB101Space)) else NU_STR


def ucb_beta_sqrt(t: int, dim: float) -> float:
    """``β_t^{1/2} = sqrt(0.5 · D · log(2 D t + 1))`` (the NASBOT authors' GP-UCB schedule)."""
    return math.sqrt(0.5 * dim * math.log(2 * dim * max(t, 1) + 1))


class NASBOT(ArchitectureSearch):
    r"""NASBOT (Kandasamy et al., NeurIPS 2018), Ray-free.

    **Model.** ``f ~ GP(c, k)`` with ``k = α e^{−βd} + ᾱ e^{−β̄d̄}`` on the
    OTMANN distance ``d`` and its normalised version ``d̄``
    (:class:`~raynas.kernels.otmann.OTMANNKernel`), Gaussian noise, outcomes
    standardised, after replacing them by the normal scores of their ranks
    (``warping="rank"``, :func:`raynas.surrogates.warping.normal_scores`; not in
    the paper, which models raw values: on NAS-Bench-201 it took 3 seeds of
    UCB from "not found within 150-200 queries" to 75, >200 and 50, because
    the 10 %-accuracy failures no longer dominate the fit; ``"none"``
    restores the paper). ``α, β, ᾱ, β̄``, the noise and ``c`` maximise the marginal
    likelihood (``botorch.fit.fit_gpytorch_mll``), refitted every
    ``max(refit_every, n/10)`` observations (warm-started from the last fit;
    a fit costs O(n³) per step, so the interval grows with ``n`` to keep refits
    under 5–10 % of suggestions) and reused in between.

    **Acquisition.** GP-UCB ``φ_t(x) = μ_{t−1}(x) + β_t^{1/2} σ_{t−1}(x)`` with
    ``β_t^{1/2} = sqrt(0.5 · D · log(2Dt + 1))`` (``D = ucb_dim``; the
    schedule of the authors' implementation, which uses ``D = 3`` for
    non-Euclidean domains), ``t`` the number of the query; or EI (BoTorch's
    ``LogExpectedImprovement``) over the best posterior mean at the evaluated
    architectures.

    **Acquisition optimiser.** An evolutionary algorithm over networks: the
    first parents are the ``ea_parents`` best evaluated architectures plus the
    ``ea_elite`` best (by acquisition) of ``ea_random`` random ones; each
    generation the parents are mutated (their one-edit neighbours,
    :meth:`SearchSpace.neighbours` — NASBOT's modifiers on the macro spaces —
    at most ``ea_children`` per parent, drawn at random), children already
    evaluated or pending are dropped, the rest scored by the acquisition, and
    the ``ea_elite`` best candidates scored so far become the next parents;
    after ``ea_generations`` the best candidate ever scored is proposed.
    Every scored candidate costs OTMANN distances to all training points
    (cached), so the elite is kept small: the first generation's
    neighbourhood of the best evaluated networks changes little between
    suggestions and is mostly cached.

    **Parallel workers.** Pending architectures join the training set with
    their posterior mean as value (kriging believer; the "hallucinated"
    observations of the paper); the GP keeps its hyperparameters. Their
    posterior variance collapses, so the next suggestion goes elsewhere.

    **Initialisation.** The first ``num_init`` (default 10) suggestions are
    uniformly random (counted in the budget, as in BONAS's protocol).

    Save/restore keeps the fitted hyperparameters and the refit counter
    (:meth:`extra_state`); OTMANN distances are a cache and are recomputed on
    demand after a restore, giving the same suggestions.

    Args:
        space: the search space (any raynas space; see
            :func:`raynas.spaces.layer_graph.layer_graph`).
        acquisition: ``"ucb"`` or ``"ei"``.
        num_init: random architectures before the GP is used.
        ucb_dim: ``D`` of the UCB schedule.
        refit_every: observations between hyperparameter refits (at least; ``n/10`` for large ``n``).
        ea_generations, ea_parents, ea_elite, ea_children, ea_random: the evolutionary optimiser.
        nu_str: ν_str, weight of OTMANN's structural term (default :func:`default_nu_str`).
        warping: ``"rank"`` (default) or ``"none"``: the outcome warping above.
        fit_maxiter: L-BFGS iterations per hyperparameter fit.
        threads: torch intra-op threads while proposing (see :func:`torch_threads`).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        acquisition: Acquisition = "ucb",
        num_init: int = 10,
        ucb_dim: float = 3.0,
        refit_every: int = 10,
        ea_generations: int = 3,
        ea_parents: int = 10,
        ea_elite: int = 3,
        ea_children: int = 30,
        ea_random: int = 10,
        nu_str: float | None = None,
        warping: Literal["none", "rank"] = "rank",
        fit_maxiter: int = 75,
        threads: int | None = 1,
        **kwargs: Any,
    ) -> None:
        if acquisition not in ("ucb", "ei"):
            raise ValueError(f"acquisition must be 'ucb' or 'ei', got {acquisition!r}")
        if min(num_init, refit_every, ea_generations, ea_parents, ea_elite, ea_children) < 1:
            raise ValueError(
                "num_init, refit_every, ea_generations, ea_parents, ea_elite and ea_children must be >= 1"
            )
        if warping not in ("none", "rank"):
            raise ValueError(f"warping must be 'none' or 'rank', got {warping!r}")
        if ea_random < 0 or ucb_dim <= 0:
            raise ValueError(f"need ea_random >= 0 and ucb_dim > 0, got {ea_random}, {ucb_dim}")
        super().__init__(space, max_attempts=1, **kwargs)
        self.acquisition = acquisition
        self.num_init = int(num_init)
        self.ucb_dim = float(ucb_dim)
        self.refit_every = int(refit_every)
        self.ea_generations = int(ea_generations)
        self.ea_parents = int(ea_parents)
        self.ea_elite = int(ea_elite)
        self.ea_children = int(ea_children)
        self.ea_random = int(ea_random)
        self.fit_maxiter = int(fit_maxiter)
        self.threads = threads
        self.nu_str = default_nu_str(space) if nu_str is None else float(nu_str)
        self.warping = warping
        self.distances = OTMANNDistances(space, OTMANN(nu_str=self.nu_str))
        self._hypers: dict[str, list] | None = None
        self._fitted_at = 0

    # ------------------------------------------------------------------ model
    def _kernel(self) -> OTMANNKernel:
        return OTMANNKernel(self.distances)

    def _build(self, ids: np.ndarray, y: np.ndarray):
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Standardize

        X = torch.as_tensor(ids, dtype=torch.float64).unsqueeze(-1)
        Y = torch.as_tensor(y, dtype=torch.float64).unsqueeze(-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ids are not in the unit cube: intended
            return SingleTaskGP(X, Y, covar_module=self._kernel(), outcome_transform=Standardize(m=1))

    def _hyper_names(self, model) -> list[str]:
        return [n for n, _ in model.named_parameters()] + ["covar_module.scale", "covar_module.scale_bar"]

    def _load_hypers(self, model) -> None:
        assert self._hypers is not None
        state = model.state_dict()
        for name, value in self._hypers.items():
            if name in state:
                state[name] = torch.as_tensor(value, dtype=state[name].dtype).reshape(state[name].shape)
        model.load_state_dict(state)

    def _save_hypers(self, model) -> None:
        state = model.state_dict()
        self._hypers = {n: state[n].detach().cpu().reshape(-1).tolist() for n in self._hyper_names(model)}

    def _fit(self, model, ids: np.ndarray) -> None:
        from botorch.exceptions import ModelFittingError
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        if self._hypers is not None:
            self._load_hypers(model)
        model.covar_module.set_scales(ids)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self.fit_maxiter}})
        except (ModelFittingError, RuntimeError, ValueError):  # keep the previous hyperparameters
            if self._hypers is not None:
                self._load_hypers(model)
        self._save_hypers(model)
        self._fitted_at = len(self.observations)

    def model(self):
        """The GP on the observations, with pending architectures at their posterior mean."""
        archs = [o.arch for o in self.observations]
        ids = self.distances.add_all(archs)
        y = np.array([self.score(o.value) for o in self.observations], dtype=np.float64)
        if self.warping == "rank":
            y = normal_scores(y)
        model = self._build(ids, y)
        interval = max(self.refit_every, len(self.observations) // 10)  # fits cost O(n³): amortise
        stale = self._hypers is None or len(self.observations) - self._fitted_at >= interval
        if stale:
            self._fit(model, ids)
        else:
            self._load_hypers(model)
        model.eval()
        pending = [a for a in self.pending.values() if a not in self.evaluated]
        if pending:
            pending_ids = self.distances.add_all(pending)
            with torch.no_grad():
                mean = model.posterior(torch.as_tensor(pending_ids, dtype=torch.float64).unsqueeze(-1)).mean
            model = self._build(np.concatenate([ids, pending_ids]), np.concatenate([y, mean.reshape(-1).numpy()]))
            self._load_hypers(model)
            model.eval()
        return model, ids

    def acquisition_function(self, model, train_ids: np.ndarray):
        """The BoTorch acquisition for this step (UCB with ``β_t`` or log-EI)."""
        from botorch.acquisition.analytic import LogExpectedImprovement, UpperConfidenceBound

        if self.acquisition == "ucb":
            t = len(self.observations) + len(self.pending) + 1
            return UpperConfidenceBound(model, beta=ucb_beta_sqrt(t, self.ucb_dim) ** 2)
        with torch.no_grad():
            incumbent = model.posterior(torch.as_tensor(train_ids, dtype=torch.float64).unsqueeze(-1)).mean.max()
        return LogExpectedImprovement(model, best_f=incumbent)

    # ------------------------------------------------------- EA optimiser
    def _score(self, acq, archs: list[Architecture]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        ids = self.distances.add_all(archs)
        X = torch.as_tensor(ids, dtype=torch.float64).reshape(-1, 1, 1)
        with torch.no_grad():
            return acq(X).reshape(-1).numpy().astype(np.float64)

    def _children(self, parent: Architecture) -> list[Architecture]:
        try:
            options = self.space.neighbours(parent)
        except InvalidArchitectureError:
            return []
        if len(options) > self.ea_children:
            picks = self.rng.choice(len(options), size=self.ea_children, replace=False)
            options = [options[i] for i in sorted(picks)]
        return options

    def evolve(self, acq) -> tuple[Architecture | None, dict[Architecture, float]]:
        """Maximise ``acq`` over unseen architectures with the evolutionary algorithm."""
        ranked = sorted(self.observations, key=lambda o: -self.score(o.value))
        parents = list(dict.fromkeys(o.arch for o in ranked))[: self.ea_parents]
        scored: dict[Architecture, float] = {}
        randoms = []
        for _ in range(self.ea_random):
            arch = self.space.sample(self.rng)
            if not self.is_seen(arch) and arch not in scored:
                randoms.append(arch)
        randoms = list(dict.fromkeys(randoms))
        scored.update(zip(randoms, self._score(acq, randoms)))
        parents += sorted(randoms, key=lambda a: -scored[a])[: self.ea_elite]
        for _ in range(self.ea_generations):
            children: dict[Architecture, None] = {}
            for parent in parents:
                for child in self._children(parent):
                    if child not in scored and not self.is_seen(child):
                        children.setdefault(child)
            new = list(children)
            scored.update(zip(new, self._score(acq, new)))
            if not scored:
                break
            parents = sorted(scored, key=lambda a: -scored[a])[: self.ea_elite]
        if not scored:
            return None, scored
        best = max(scored, key=lambda a: scored[a])
        return best, scored

    # ----------------------------------------------------------- lifecycle
    def propose(self) -> Architecture:
        if len(self.observations) < self.num_init:
            return self.space.sample(self.rng)
        with torch_threads(self.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. GPyTorch clipping tiny negative variances
            model, ids = self.model()
            acq = self.acquisition_function(model, ids)
            best, _ = self.evolve(acq)
        if best is None:
            fallback = self.random_unseen()
            return fallback if fallback is not None else self.space.sample(self.rng)
        return best

    def extra_state(self) -> dict[str, Any]:
        return {"hypers": self._hypers, "fitted_at": self._fitted_at}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        hypers = state.get("hypers")
        self._hypers = None if hypers is None else {k: list(v) for k, v in hypers.items()}
        self._fitted_at = int(state.get("fitted_at", 0))
