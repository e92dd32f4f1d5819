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
import math
import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from raynas.architecture import Architecture
from raynas.search.base import ArchitectureSearch
from raynas.bo.threads import torch_threads
from raynas.spaces.base import InvalidArchitectureError
from raynas.spaces.compression import CompressionSpace
from raynas.surrogates.esnac import (
    fit_kernel, layer_features, load_kernels, make_kernel, pad_sequences, save_kernels,
)


class ESNAC(ArchitectureSearch):
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
        threads: torch threads while proposing (see :func:`raynas.search.nasbot.torch_threads`).
    """

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
        threads: int | None = 1,
        **kwargs: Any,
    ) -> None:
        if not isinstance(space, CompressionSpace):
            raise TypeError(f"ESNAC needs a CompressionSpace, got {type(space).__name__}")
        if min(num_kernels, num_candidates, num_parents, max_ops) < 1 or not 0 < subset_fraction <= 1:
            raise ValueError("num_kernels, num_candidates, num_parents and max_ops must be >= 1 and "
                             f"subset_fraction in (0, 1], got {num_kernels}, {num_candidates}, {num_parents}, "
                             f"{max_ops}, {subset_fraction}")
        kwargs.setdefault("mode", "max")
        super().__init__(space, max_attempts=1, **kwargs)
        self.space: CompressionSpace = space
        self.num_kernels = int(num_kernels)
        self.num_init = self.num_kernels if num_init is None else int(num_init)
        self.subset_fraction = float(subset_fraction)
        self.fit_iters, self.fit_lr, self.hidden = int(fit_iters), float(fit_lr), int(hidden)
        self.num_candidates, self.num_parents, self.max_ops = int(num_candidates), int(num_parents), int(max_ops)
        self.random_fraction = float(random_fraction)
        if kernels is not None and not isinstance(kernels, (list, tuple)):
            kernels = load_kernels(kernels)
        self.transferred = list(kernels) if kernels else []
        self.finetune_transfer = bool(finetune_transfer)
        self.threads = threads
        self.kernels: list[Any] = []  # the kernels learned at the last step
        self.queue: list[Architecture] = []
        self.steps = 0
        self._features: dict[Architecture, torch.Tensor] = {}

    # ------------------------------------------------------------ candidates
    def _feature(self, arch: Architecture) -> torch.Tensor:
        if arch not in self._features:
            self._features[arch] = layer_features(self.space.descriptors(arch))
        return self._features[arch]

    def candidates(self) -> list[Architecture]:
        """Unseen candidates: random compression operations around the best architectures, plus random ones."""
        ranked = sorted(self.evaluated, key=lambda a: -self.score(self.evaluated[a]))
        parents = ranked[: self.num_parents] or [self.space.teacher_arch]
        out: dict[Architecture, None] = {}
        for _ in range(4 * self.num_candidates):
            if len(out) >= self.num_candidates:
                break
            if self.rng.random() < self.random_fraction:
                arch = self.space.sample(self.rng)
            else:
                arch = parents[int(self.rng.integers(len(parents)))]
                try:
                    for _ in range(int(self.rng.integers(1, self.max_ops + 1))):
                        arch = self.space.mutate(arch, self.rng)
                except InvalidArchitectureError:
                    continue
            if not self.is_seen(arch):
                out.setdefault(arch)
        return list(out)

    # ------------------------------------------------------------------ step
    def _kernel(self, k: int, seed: int):
        if self.transferred:
            return copy.deepcopy(self.transferred[k % len(self.transferred)]), self.finetune_transfer
        return make_kernel(hidden=self.hidden, seed=seed), True

    def step(self) -> list[Architecture]:
        """One step of Algorithm 1: K kernels, each learned on a random subset, each proposing one candidate."""
        from botorch.acquisition.analytic import LogExpectedImprovement

        archs = list(self.evaluated)
        y_all = np.array([self.score(self.evaluated[a]) for a in archs], dtype=np.float64)
        pool = self.candidates()
        if not pool or len(archs) < 3:
            return []
        table, lengths = pad_sequences([self._feature(a) for a in archs + pool])
        n = len(archs)
        size = min(n, max(3, math.ceil(self.subset_fraction * n)))
        chosen: list[Architecture] = []
        self.kernels = []
        for k in range(self.num_kernels):
            seed = int(self.rng.integers(2**31 - 1))
            subset = np.sort(self.rng.choice(n, size=size, replace=False))
            y = y_all[subset]
            y = (y - y.mean()) / (y.std() if y.std() > 0 else 1.0)
            covar, train_embedding = self._kernel(k, seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = fit_kernel(covar, table, lengths, subset.tolist(), y, iters=self.fit_iters,
                                   lr=self.fit_lr, train_embedding=train_embedding)
            free = [i for i, a in enumerate(pool) if a not in chosen]
            if not free:
                break
            X = torch.tensor([n + i for i in free], dtype=torch.float64).reshape(-1, 1, 1)
            with torch.no_grad():
                scores = LogExpectedImprovement(model, best_f=float(y.max()))(X).reshape(-1).numpy()
            chosen.append(pool[free[int(np.argmax(scores))]])
            covar.base_kernel.set_table(table[:0], lengths[:0])  # keep no tables in saved/pickled kernels
            self.kernels.append(covar)
        self.steps += 1
        return chosen

    def propose(self) -> Architecture:
        if len(self.observations) < self.num_init:
            return self.space.sample(self.rng)
        while self.queue:
            arch = self.queue.pop(0)
            if not self.is_seen(arch):
                return arch
        with torch_threads(self.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.queue = self.step()
        while self.queue:
            arch = self.queue.pop(0)
            if not self.is_seen(arch):
                return arch
        fallback = self.random_unseen()
        return fallback if fallback is not None else self.space.sample(self.rng)

    def predict(self, archs: Sequence[Architecture]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ``(mean, variance)`` of the metric of ``archs``, in its units.

        The equal-weight mixture of the last step's K kernels, each conditioned on every evaluation
        (embeddings kept; output scale, noise and mean refitted); before the first step, one freshly
        learned kernel. For ``mode="min"`` the mean is the metric itself.
        """
        train = list(self.evaluated)
        if len(train) < 3:
            raise ValueError(f"ESNAC.predict needs at least 3 observations, got {len(train)}")
        archs = list(archs)
        y = np.array([self.score(self.evaluated[a]) for a in train], dtype=np.float64)
        mu, sd = float(y.mean()), float(y.std()) or 1.0
        table, lengths = pad_sequences([self._feature(a) for a in train + archs])
        X = torch.arange(len(train), len(train) + len(archs), dtype=torch.float64).reshape(-1, 1)
        kernels = [(copy.deepcopy(k), False) for k in self.kernels] or [(make_kernel(hidden=self.hidden, seed=0), True)]
        means, variances = [], []
        with torch_threads(self.threads), warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            for covar, learn in kernels:
                model = fit_kernel(covar, table, lengths, list(range(len(train))), (y - mu) / sd,
                                   iters=self.fit_iters, lr=self.fit_lr, train_embedding=learn)
                with torch.no_grad():
                    posterior = model.posterior(X)
                means.append(posterior.mean.reshape(-1))
                variances.append(posterior.variance.reshape(-1))
        m, v = torch.stack(means), torch.stack(variances)
        mean = m.mean(0)
        variance = (v + m**2).mean(0) - mean**2
        mean_np = mean.numpy() * sd + mu
        return (-mean_np if self.mode == "min" else mean_np), np.clip(variance.numpy(), 0.0, None) * sd**2

    # -------------------------------------------------------------- transfer
    def save_kernels(self, path: str | os.PathLike) -> None:
        """Write the kernels learned at the last step (for ``kernels=`` of a search on another teacher)."""
        if not self.kernels:
            raise RuntimeError("no kernels learned yet: ESNAC learns them at its first step after num_init")
        save_kernels(path, self.kernels)

    # ---------------------------------------------------------- save/restore
    def extra_state(self) -> dict[str, Any]:
        return {"queue": [a.to_json() for a in self.queue], "steps": self.steps}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.queue = [Architecture.from_json(a) for a in state.get("queue", [])]
        self.steps = int(state.get("steps", 0))
