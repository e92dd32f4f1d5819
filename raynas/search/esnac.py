"""ESNAC: compressed-architecture search by BO with K learned embedding kernels (Ray-free).

Cao, Wang, Kitani, "Learnable Embedding Space for Efficient Neural
Architecture Compression", ICLR 2019 (Algorithm 1, §3.2–3.3).

Each *step*: for each of ``K`` kernels, re-initialise the kernel
(:func:`raynas.surrogates.esnac.make_kernel`), draw a random subset ``D_k``
of the evaluated architectures, learn the kernel on ``D_k`` by maximising the
leave-one-out predictive posterior, condition a GP on ``D_k`` and propose the
candidate that maximises EI (BoTorch's ``LogExpectedImprovement``). So a step
yields ``K`` distinct proposals, which Tune evaluates in parallel. Candidates
are drawn by random compression operations (1 to ``max_ops`` of
:meth:`~raynas.spaces.compression.CompressionSpace.mutate`) around the
``num_parents`` best architectures, plus a share of fresh random compressions
of the teacher (§3.3).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Mapping, Sequence

import numpy as np
import torch
from linear_operator import settings as linop_settings
from linear_operator.utils.errors import NanError, NotPSDError

from raynas.architecture import Architecture
from raynas.bo.candidates import MutationPool
from raynas.bo.engine import BayesianOptimization, ModelData
from raynas.bo.fitting import first_success
from raynas.spaces.compression import CompressionSpace
from raynas.surrogates.esnac import (
    fit_kernel, layer_features, load_kernels, make_kernel, pad_sequences, save_kernels,
)

logger = logging.getLogger(__name__)

#: Lower bound of the noise (of standardised targets) when a kernel fit is retried (BoTorch's default: 1e-4).
SAFE_MIN_NOISE = 1e-2
#: First Cholesky jitter (float64) when a kernel fit is retried: with BoTorch's 6 tries, up to 0.1
#: (default 1e-8, up to 1e-3).
SAFE_JITTER = 1e-6


def _numerical_errors() -> tuple[type[Exception], ...]:
    """The exceptions of a kernel fit that fails numerically, which a search recovers from.

    ``NotPSDError`` / ``NanError``: a covariance matrix that no jitter factorises; ``ModelFittingError``:
    a loss or parameter that became NaN or infinite (raised by :func:`~raynas.surrogates.esnac.fit_kernel`)
    or EI / posterior values that are NaN (raised here by :func:`_log_ei` and :func:`_posterior`).
    """
    from botorch.exceptions.errors import ModelFittingError

    return NotPSDError, NanError, ModelFittingError


def _log_ei(model: Any, X: torch.Tensor, best_f: float) -> np.ndarray:
    """BoTorch's ``LogExpectedImprovement`` of ``X`` (``ModelFittingError`` if any value is NaN)."""
    from botorch.acquisition.analytic import LogExpectedImprovement
    from botorch.exceptions.errors import ModelFittingError

    with torch.no_grad():
        scores = LogExpectedImprovement(model, best_f=best_f)(X).reshape(-1).numpy()
    if np.isnan(scores).any():
        raise ModelFittingError(f"{int(np.isnan(scores).sum())} of {len(scores)} EI values are NaN")
    return scores


def _posterior(model: Any, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and variance of ``X`` (``ModelFittingError`` if any is NaN)."""
    from botorch.exceptions.errors import ModelFittingError

    with torch.no_grad():
        posterior = model.posterior(X)
        mean, variance = posterior.mean.reshape(-1), posterior.variance.reshape(-1)
    if torch.isnan(mean).any() or torch.isnan(variance).any():
        raise ModelFittingError("the posterior mean or variance is NaN")
    return mean, variance


def _safer(safe: bool) -> ContextManager[Any]:
    return linop_settings.cholesky_jitter(double_value=SAFE_JITTER) if safe else nullcontext()


class ESNAC(BayesianOptimization):
    r"""ESNAC (Cao et al., ICLR 2019) over a :class:`~raynas.spaces.compression.CompressionSpace`.

    The objective is maximised (``mode="max"``; Tune's metric ``objective`` of
    :class:`raynas.trainables.distill.DistillTrainable`: ``f = r(2 − r) A_s / A_t``).

    **Deviations, and why.**

    * Asynchronous steps: the paper evaluates K architectures then learns K
      kernels. Here a step runs whenever the queue of proposals is empty; it
      uses every finished evaluation, and pending architectures are never
      proposed again (they are excluded from the candidates), so Tune's
      workers stay busy without waiting for a whole batch.
    * The first ``num_init`` (default ``K``) suggestions are random
      compressions (Algorithm 1's "randomly sample K architectures").
    * Transferred kernels (``kernels=``) keep their embedding and lengthscale
      (the paper applies them without training); their output scale, noise and
      mean are refitted, because objectives differ in scale between settings.
      ``finetune_transfer=True`` trains the embedding too.
    * Numerical failures never abort a search. Adam's steps keep the GP's
      noise in BoTorch's bounds (``≥ 1e-4``; see
      :func:`~raynas.surrogates.esnac.project_to_bounds`). A kernel whose fit
      or EI still fails numerically (``NotPSDError``, ``NanError``,
      ``ModelFittingError``) is retried once with noise ``≥ 0.01`` and more
      Cholesky jitter, else skipped (the step's other kernels propose); a
      step where every kernel fails suggests a random unseen architecture.
      Each fallback is logged (the engine's :func:`~raynas.bo.fitting.first_success`).

    The loop (initial design, threads, diagnostics, candidates:
    :class:`~raynas.bo.candidates.MutationPool`) is the engine's, :mod:`raynas.bo`.

    Example:
        >>> search = ESNAC(CompressionSpace(teacher, (1, 8, 8)), seed=0)   # doctest: +SKIP
        >>> arch = search.suggest("trial_0")                               # doctest: +SKIP

    Args:
        space: the compression space of the teacher.
        num_kernels: ``K``, kernels (and proposals) per step.
        num_init: random suggestions before the first step (default ``K``).
        subset_fraction: share of the evaluated architectures in each ``D_k`` (at least 3 points).
        fit_iters, fit_lr: Adam iterations and learning rate of kernel learning.
        hidden: LSTM hidden size per direction.
        num_candidates: candidates scored by each kernel's EI.
        num_parents: best architectures the candidates are derived from.
        max_ops: most compression operations applied to a parent.
        random_fraction: share of candidates that are fresh random compressions.
        kernels: learned kernels to start from (a :func:`~raynas.surrogates.esnac.save_kernels` file or a list).
        finetune_transfer: train transferred kernels' embeddings as well.
        num_threads: torch threads while proposing (:func:`raynas.bo.threads.torch_threads`).
    """

    min_predict = 3

    def __init__(
        self,
        space: CompressionSpace,
        *,
        num_kernels: int = 4,
        num_init: int | None = None,
        subset_fraction: float = 0.8,
        fit_iters: int = 50,
        fit_lr: float = 0.03,
        hidden: int = 16,
        num_candidates: int = 64,
        num_parents: int = 4,
        max_ops: int = 3,
        random_fraction: float = 0.2,
        kernels: str | os.PathLike | Sequence[Any] | None = None,
        finetune_transfer: bool = False,
        num_threads: int | None = 1,
        **kwargs: Any,
    ) -> None:
        if not isinstance(space, CompressionSpace):
            raise TypeError(f"ESNAC needs a CompressionSpace, got {type(space).__name__}")
        if min(num_kernels, num_candidates, num_parents, max_ops) < 1 or not 0 < subset_fraction <= 1:
            raise ValueError("num_kernels, num_candidates, num_parents and max_ops must be >= 1 and "
                             f"subset_fraction in (0, 1], got {num_kernels}, {num_candidates}, {num_parents}, "
                             f"{max_ops}, {subset_fraction}")
        kwargs.setdefault("mode", "max")
        num_init = int(num_kernels) if num_init is None else int(num_init)
        # the random start counts results, as the paper's "randomly sample K architectures" then learn
        super().__init__(space, num_initial=max(1, num_init), min_observations=max(2, num_init),
                         warping="none", num_threads=num_threads, **kwargs)
        self.space: CompressionSpace = space
        self.num_kernels = int(num_kernels)
        self.num_init = num_init
        self.subset_fraction = float(subset_fraction)
        self.fit_iters, self.fit_lr, self.hidden = int(fit_iters), float(fit_lr), int(hidden)
        self.num_candidates, self.num_parents, self.max_ops = int(num_candidates), int(num_parents), int(max_ops)
        self.random_fraction = float(random_fraction)
        if kernels is not None and not isinstance(kernels, (list, tuple)):
            kernels = load_kernels(kernels)
        self.transferred = list(kernels) if kernels else []
        self.finetune_transfer = bool(finetune_transfer)
        self.candidates = MutationPool(size=self.num_candidates, parents=self.num_parents, max_edits=self.max_ops,
                                       random_fraction=self.random_fraction, reference=space.teacher_arch)
        self.kernels: list[Any] = []  # the kernels learned at the last step
        self.queue: list[Architecture] = []
        self.steps = 0
        self._features: dict[Architecture, torch.Tensor] = {}

    # ------------------------------------------------------------ candidates
    def _feature(self, arch: Architecture) -> torch.Tensor:
        if arch not in self._features:
            self._features[arch] = layer_features(self.space.descriptors(arch))
        return self._features[arch]

    # ------------------------------------------------------------------ step
    def _kernel(self, k: int, seed: int):
        """A fresh copy of kernel ``k``: the ``k``-th transferred kernel, else a new one from ``seed``."""
        if self.transferred:
            return copy.deepcopy(self.transferred[k % len(self.transferred)])
        return make_kernel(hidden=self.hidden, seed=seed)

    def _robust_fit(
        self,
        make_covar: Callable[[], Any],
        table: torch.Tensor,
        lengths: torch.Tensor,
        ids: list[int],
        y: np.ndarray,
        *,
        train_embedding: bool,
        seed: int,
        use: Callable[[Any], Any],
        where: str,
    ) -> tuple[Any, Any] | None:
        """``(covar, use(model))`` for a kernel learned on ``(ids, y)``, or ``None`` if it fails numerically.

        A fit (or ``use`` of the fitted GP) that raises one of :func:`_numerical_errors` is retried once from
        a fresh copy of the kernel with a safer setting (noise ``≥`` :data:`SAFE_MIN_NOISE`, Cholesky jitter
        from :data:`SAFE_JITTER`); if that fails too the kernel is given up. Both are logged as warnings.
        """
        def attempt(safe: bool) -> tuple[Any, Any]:
            covar = make_covar()
            with torch.random.fork_rng(devices=[]), _safer(safe):
                torch.manual_seed(seed)
                model = fit_kernel(covar, table, lengths, ids, y, iters=self.fit_iters, lr=self.fit_lr,
                                   train_embedding=train_embedding, min_noise=SAFE_MIN_NOISE if safe else None)
                return covar, use(model)

        return first_success(
            [("the default setting", lambda: attempt(False)),
             (f"noise >= {SAFE_MIN_NOISE:g} and Cholesky jitter from {SAFE_JITTER:g}", lambda: attempt(True))],
            what=f"ESNAC kernel [{where}]", errors=_numerical_errors(),
        )

    def step(self, data: ModelData | None = None) -> list[Architecture]:
        """One step of Algorithm 1: K kernels, each learned on a random subset, each proposing one candidate.

        A kernel whose fit fails numerically is retried with a safer setting, else skipped (the step's other
        kernels still propose); if every kernel fails the step proposes nothing, :attr:`kernels` keeps the
        previous step's kernels, and :meth:`propose` falls back to a random unseen architecture. All logged.
        """
        data = self.model_data() if data is None else data
        archs, y_all = list(data.archs), data.values
        pool = self.candidates.generate(self, data.ranked())
        if not pool or len(archs) < 3:
            return []
        table, lengths = pad_sequences([self._feature(a) for a in archs + pool])
        n = len(archs)
        size = min(n, max(3, math.ceil(self.subset_fraction * n)))
        chosen: list[Architecture] = []
        learned: list[Any] = []
        for k in range(self.num_kernels):
            seed = int(self.rng.integers(2**31 - 1))
            subset = np.sort(self.rng.choice(n, size=size, replace=False))
            y = y_all[subset]
            y = (y - y.mean()) / (y.std() if y.std() > 0 else 1.0)
            free = [i for i, a in enumerate(pool) if a not in chosen]
            if not free:
                break
            X = torch.tensor([n + i for i in free], dtype=torch.float64).reshape(-1, 1, 1)
            train_embedding = not self.transferred or self.finetune_transfer
            fitted = self._robust_fit(functools.partial(self._kernel, k, seed),
                                      table, lengths, subset.tolist(), y, train_embedding=train_embedding,
                                      seed=seed, use=functools.partial(_log_ei, X=X, best_f=float(y.max())),
                                      where=f"step {self.steps + 1}, kernel {k + 1} of {self.num_kernels}")
            if fitted is None:
                continue
            covar, scores = fitted
            chosen.append(pool[free[int(np.argmax(scores))]])
            covar.base_kernel.set_table(table[:0], lengths[:0])  # keep no tables in saved/pickled kernels
            learned.append(covar)
        if learned:
            self.kernels = learned
        else:
            logger.warning("ESNAC: every kernel of step %d failed numerically; this step proposes nothing and "
                           "a random unseen architecture is suggested instead", self.steps + 1)
        self.steps += 1
        return chosen

    def propose_with_model(self, data: ModelData) -> Architecture | None:
        """The next queued proposal of the current step, or a new step's (K proposals)."""
        for refill in (False, True):
            if refill:
                self.queue = self.step(data)
            while self.queue:
                arch = self.queue.pop(0)
                if not self.is_seen(arch):
                    return arch
        return None

    def posterior(self, archs: Sequence[Architecture], data: ModelData) -> tuple[torch.Tensor, torch.Tensor]:
        """The equal-weight mixture of the last step's K kernels at ``archs`` (oriented units).

        Each kernel is conditioned on every evaluation (embeddings kept; output
        scale, noise and mean refitted); before the first step, one freshly
        learned kernel. A kernel that fails numerically is left out (logged);
        if all do, the prior: the mean and variance of the observations.
        """
        train = list(data.archs)
        archs = list(archs)
        y = data.values
        mu, sd = float(y.mean()), float(y.std()) or 1.0
        table, lengths = pad_sequences([self._feature(a) for a in train + archs])
        X = torch.arange(len(train), len(train) + len(archs), dtype=torch.float64).reshape(-1, 1)
        kernels = [(functools.partial(copy.deepcopy, k), False) for k in self.kernels]
        kernels = kernels or [(functools.partial(make_kernel, hidden=self.hidden, seed=0), True)]
        means, variances = [], []
        for i, (make_covar, learn) in enumerate(kernels):
            fitted = self._robust_fit(make_covar, table, lengths, list(range(len(train))), (y - mu) / sd,
                                      train_embedding=learn, seed=0, use=functools.partial(_posterior, X=X),
                                      where=f"predict, kernel {i + 1} of {len(kernels)}")
            if fitted is not None:
                means.append(fitted[1][0])
                variances.append(fitted[1][1])
        if not means:
            logger.warning("ESNAC.predict: every kernel failed numerically; returning the prior (the mean and "
                           "variance of the observations)")
            zeros = torch.zeros(len(archs), dtype=torch.float64)
            means, variances = [zeros], [torch.ones_like(zeros)]
        m, v = torch.stack(means), torch.stack(variances)
        mean = m.mean(0)
        variance = ((v + m**2).mean(0) - mean**2).clamp_min(0.0)
        return mean * sd + mu, variance * sd**2

    # -------------------------------------------------------------- transfer
    def save_kernels(self, path: str | os.PathLike) -> None:
        """Write the kernels learned at the last step (for ``kernels=`` of a search on another teacher)."""
        if not self.kernels:
            raise RuntimeError("no kernels learned yet: ESNAC learns them at its first step after num_init results")
        save_kernels(path, self.kernels)

    # ---------------------------------------------------------- save/restore
    def extra_state(self) -> dict[str, Any]:
        return {"queue": [a.to_json() for a in self.queue], "steps": self.steps}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.queue = [Architecture.from_json(a) for a in state.get("queue", [])]
        self.steps = int(state.get("steps", 0))
