"""BONAS: Bayesian-optimised NAS with a GCN embedding and Bayesian linear regression.

Shi, Pi, Xu, Li, Kwok & Zhang, "Bridging the Gap between Sample-based and
One-shot Neural Architecture Search with BONAS", NeurIPS 2020 (arXiv:
"Efficient Sample-based Neural Architecture Search with Learnable Predictor"),
Algorithm 1. The surrogate lives in :mod:`raynas.surrogates.bonas`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch

from raynas.architecture import Architecture
from raynas.search.base import ArchitectureSearch, Observation
from raynas.spaces.base import SearchSpace
from raynas.surrogates.bonas import BONASPredictor
from raynas.surrogates.graph_encoding import arch_to_data

LowFidelity = Literal["use", "drop"]


def evolutionary_pool(
    space: SearchSpace,
    population: Sequence[tuple[Architecture, float]],
    rng: np.random.Generator,
    size: int,
    *,
    tournament_size: int,
    exclude: Callable[[Architecture], bool],
    multi_edit_probability: float = 0.5,
    max_edits: int = 3,
    random_fraction: float = 0.0,
    max_tries: int | None = None,
) -> list[Architecture]:
    """BONAS' evolutionary sampler (Real et al.'s aging evolution, §3.3): a pool of candidates.

    Each candidate mutates the winner of a tournament of ``tournament_size``
    members of ``population`` (``(arch, score)``, larger is better) with
    :meth:`SearchSpace.mutate` (one edge or one op); with probability
    ``multi_edit_probability`` the child is mutated again, up to ``max_edits``
    edits, so a pool larger than the one-edit neighbourhood of the population
    can be filled. A fraction ``random_fraction`` of the pool is drawn
    uniformly from the space instead. Candidates are distinct and
    ``exclude(arch)`` is false for all of them.

    Returns:
        Up to ``size`` architectures (fewer when ``max_tries`` draws, default
        ``4 * size``, do not find that many).
    """
    if not population:
        raise ValueError("the evolutionary sampler needs a non-empty population")
    pool: dict[Architecture, None] = {}
    n_random = int(round(random_fraction * size))
    limit = 4 * size if max_tries is None else max_tries
    members = [arch for arch, _ in population]
    fitness = np.asarray([score for _, score in population], dtype=float)
    k = min(tournament_size, len(members))
    tries = 0
    while len(pool) < size - n_random and tries < limit:
        # a chunk of tournaments at once: k distinct random members per row, best wins
        chunk = min(256, limit - tries)
        entrants = rng.random((chunk, len(members))).argsort(axis=1)[:, :k]
        winners = entrants[np.arange(chunk), fitness[entrants].argmax(axis=1)]
        for w in winners:
            if len(pool) >= size - n_random:
                break
            tries += 1
            child = space.mutate(members[int(w)], rng)
            edits = 1
            # a further edit with some probability, and always when the child is taken
            while edits < max_edits and (
                rng.random() < multi_edit_probability or child in pool or exclude(child)
            ):
                child = space.mutate(child, rng)
                edits += 1
            if child not in pool and not exclude(child):
                pool[child] = None
    tries = 0
    while len(pool) < size and tries < limit:
        tries += 1
        arch = space.sample(rng)
        if arch not in pool and not exclude(arch):
            pool[arch] = None
    return list(pool)


class BONAS(ArchitectureSearch):
    """BONAS (Shi et al. 2020, Algorithm 1) on the Ray-free search lifecycle.

    1. The first ``num_initial`` suggestions (10) are uniformly random; they
       count towards the budget. (Under concurrency the model takes over as
       soon as two different values are in.)
    2. Then each :meth:`propose` draws a pool of ``pool_size`` (1,000) unseen
       candidates with the evolutionary sampler (:func:`evolutionary_pool`:
       population = the ``population_size`` most recent observations, aging
       as in regularized evolution; tournament selection; one-edit
       :meth:`SearchSpace.mutate`), embeds them with the GCN in one batch,
       scores expected improvement on the BLR posterior with BoTorch's
       :class:`~botorch.acquisition.analytic.LogExpectedImprovement` (the log
       of the paper's eq. 2: same argmax, no underflow) and returns the best.
    3. The BLR (α, β by evidence maximisation) is refit on every observation;
       the GCN is retrained on all data every ``retrain_every`` observations.

    Model updates happen lazily inside :meth:`propose` (results that arrive
    together cost one refit). EI's incumbent ``best_f`` is the best normalised
    observation.

    GCN retraining. Retraining from scratch (``warm_start=False``, the
    default) finds the NB201 optimum sooner than warm-starting from the
    previous weights for a fixed number of steps (``warm_start=True``,
    ``warm_steps``): measured on 6 seeds, a warm-started search stayed stuck
    for 250+ queries on one seed where the re-initialised one needed 62, and
    its in-search rank correlation on the candidate pool was 0.1 vs 0.6. A
    from-scratch training costs ``epochs`` passes, seconds at a few hundred
    observations, so with ``amortize_training`` (default) it is *spread*: a
    training starts on all data every ``retrain_every`` observations, advances
    ``1/retrain_every`` of its steps per suggestion and replaces the network
    in use when complete (the network in use is therefore trained on data at
    most ``2 * retrain_every`` observations old; the BLR always has all data).
    Trainings on at most ``amortize_above`` observations (50) are cheap and run
    at once, so the early models, which change most, are never stale.
    ``amortize_training=False``
    trains at once, always, as the paper.

    Exploration. With probability ``explore_probability`` a suggestion is the
    sampler's own first child (a regularized-evolution step) instead of EI's
    choice. Not in the paper: a guard against a surrogate that is confidently
    wrong about a region for a long stretch (observed: runs stuck 200+
    queries below the optimum while EI ranked it in the bottom half of the
    pool); 0.1 removed those runs in our measurements.

    Pending trials (asynchronous workers): the BLR is conditioned on every
    pending architecture with its posterior mean as the fantasised target
    (*kriging believer*): means are unchanged, variances shrink around pending
    points, so concurrent suggestions spread out. The fantasies do not raise
    EI's incumbent: the pending points are exactly those EI found most
    promising, so the largest of their (optimistic) means would inflate
    ``best_f`` and push the next suggestions away from the promising region;
    ``best_f`` stays the best value actually observed, as in the paper.
    The BLR's noise ``1/β`` is about ten times its latent variance at the
    top of the pool, so the believer changes EI little and concurrent
    suggestions stay close (40 % are one edit from a pending trial). Spreading
    them out more was measured and rejected (NAS-Bench-201, 8 workers, mean
    queries to the optimum, base 77 on 20 seeds): local penalisation around
    pending points in the embedding space (González et al. 2016; 118 on 7
    seeds), EI on the conditioned latent variance (90 on 20), pending points
    believed into the sampler's population (90 on 11), GCN retraining each
    time the data doubles early on (84 on 13), random suggestions until 10
    results are in (86 on 12), a pessimistic constant liar (worse on 5), and
    EI integrated over 16 sampled outcomes of the pending trials, each
    fantasy with its own incumbent (Snoek et al. 2012, BoTorch's
    ``fantasize``; 90 on 9 seeds whose base is 79). Queries to the optimum
    vary by about 26 from seed to seed, so each of these comparisons is
    uncertain by several queries; none came out ahead. On 100 seeds the
    believer needs 82.3 queries with 8 workers against 64.4 sequentially
    (1.28x); about 7 of the difference is inherent (README, Results).

    Early-stopped trials: an observation whose ``fidelity`` is below the
    highest fidelity observed so far (a trial a scheduler such as ASHA cut
    short) is, with ``low_fidelity="use"`` (default), trained on with its
    reported value but never used as EI's incumbent: ASHA stops the trials
    whose partial value ranks low at their rung, so the value is a pessimistic
    but informative label. ``"drop"`` keeps such trials out of the model (they
    still count as seen).

    Save/restore: :meth:`extra_state` holds the network in use and any
    training in progress (weights, optimizer and shuffling state, its data) as
    one ``torch.save`` blob, plus when they were trained; the BLR, the
    population and the candidate pool are rebuilt from the observations, so a
    restored search continues exactly as the original.

    Args:
        space: the search space.
        num_initial: random architectures before the model is used.
        pool_size: candidates scored per suggestion.
        retrain_every: k, observations between GCN retrainings.
        population_size, tournament_size: the evolutionary sampler's population
            and tournament.
        population: ``"aging"`` (the most recent observations, the paper) or
            ``"elite"`` (the best observations).
        multi_edit_probability, max_edits, random_fraction: see :func:`evolutionary_pool`.
        warm_start, amortize_training, amortize_above, explore_probability: see above.
        skip_equivalent: also leave out candidates whose pruned cell equals a
            seen one's (same network; off by default).
        epochs, warm_steps, hidden, layers, head_hidden, lr, batch_size, prune,
            bidirectional, normalization, num_threads: the predictor's settings
            (:class:`~raynas.surrogates.bonas.BONASPredictor`).
        low_fidelity: ``"use"`` or ``"drop"`` early-stopped observations (see above).
        pretrained: a trained :class:`BONASPredictor` (or its ``state_dict``) on
            a space with the same operations whose weights start the GCN
            (search-space transfer, paper §4.4.2): the first training then
            continues from them (``warm_steps``).
        **kwargs: :class:`~raynas.search.base.ArchitectureSearch` arguments
            (``mode``, ``seed``, ``points_to_evaluate``, ``allow_repeats``).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        num_initial: int = 10,
        pool_size: int = 1000,
        retrain_every: int = 10,
        population_size: int = 20,
        tournament_size: int = 5,
        multi_edit_probability: float = 0.5,
        max_edits: int = 3,
        random_fraction: float = 0.0,
        warm_start: bool = False,
        epochs: int = 200,
        warm_steps: int = 50,
        hidden: int = 64,
        layers: int = 2,
        head_hidden: int = 64,
        lr: float = 1e-2,
        batch_size: int = 128,
        prune: bool = True,
        bidirectional: bool = True,
        normalization: str = "rank",
        num_threads: int | None = 1,
        low_fidelity: LowFidelity = "use",
        population: str = "aging",
        skip_equivalent: bool = False,
        amortize_training: bool = True,
        amortize_above: int = 50,
        explore_probability: float = 0.1,
        pretrained: BONASPredictor | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if num_initial < 1 or pool_size < 1 or retrain_every < 1:
            raise ValueError(
                f"num_initial, pool_size and retrain_every must be >= 1, "
                f"got {num_initial}, {pool_size}, {retrain_every}"
            )
        if population_size < 1 or not 1 <= tournament_size <= population_size:
            raise ValueError(
                f"need population_size >= 1 and 1 <= tournament_size <= population_size, "
                f"got {population_size}, {tournament_size}"
            )
        if low_fidelity not in ("use", "drop"):
            raise ValueError(f"low_fidelity must be 'use' or 'drop', got {low_fidelity!r}")
        super().__init__(space, max_attempts=1, **kwargs)
        self.num_initial = int(num_initial)
        self.pool_size = int(pool_size)
        self.retrain_every = int(retrain_every)
        self.population_size = int(population_size)
        self.tournament_size = int(tournament_size)
        self.multi_edit_probability = float(multi_edit_probability)
        self.max_edits = int(max_edits)
        self.random_fraction = float(random_fraction)
        self.warm_start = bool(warm_start)
        self.low_fidelity = low_fidelity
        if population not in ("aging", "elite"):
            raise ValueError(f"population must be 'aging' or 'elite', got {population!r}")
        self.population_kind = population
        self.skip_equivalent = bool(skip_equivalent)
        self._keys: dict[Architecture, bytes] = {}
        self.predictor = BONASPredictor(
            space, hidden=hidden, layers=layers, head_hidden=head_hidden, epochs=epochs,
            warm_steps=warm_steps, lr=lr, batch_size=batch_size, prune=prune,
            normalization=normalization, bidirectional=bidirectional,  # type: ignore[arg-type]
            seed=0 if self.seed is None else int(self.seed), num_threads=num_threads,
        )
        if pretrained is not None:
            self.predictor.transfer_from(pretrained)
        self._pretrained = pretrained is not None
        self.trained_at = 0  # observations the network in use was trained on (0: never)
        self.started_at = 0  # observations the latest training started with
        self.amortize_training = bool(amortize_training)
        self.amortize_above = int(amortize_above)
        self.explore_probability = float(explore_probability)
        self._blr_key: tuple[int, int] | None = None
        #: seconds spent in the last propose on (training, BLR, pool, scoring), for diagnostics
        self.last_timing: dict[str, float] = {}

    # ------------------------------------------------------------------ data
    def training_data(self) -> tuple[list[Architecture], list[float], list[bool]]:
        """The model's data: architectures, oriented scores and whether each may be the incumbent."""
        fidelities = [o.fidelity for o in self.observations if o.fidelity is not None]
        top = max(fidelities) if fidelities else None
        archs: list[Architecture] = []
        scores: list[float] = []
        full: list[bool] = []
        latest: dict[Architecture, int] = {}
        for o in self.observations:
            is_full = top is None or o.fidelity is None or o.fidelity >= top
            if not is_full and self.low_fidelity == "drop":
                continue
            if o.arch in latest:  # repeats (allow_repeats): keep the latest value once
                k = latest[o.arch]
                scores[k], full[k] = self.score(o.value), is_full
                continue
            latest[o.arch] = len(archs)
            archs.append(o.arch)
            scores.append(self.score(o.value))
            full.append(is_full)
        return archs, scores, full

    # ---------------------------------------------------------------- method
    def propose(self) -> Architecture:
        with self.predictor.threads():
            return self._propose()

    def _propose(self) -> Architecture:
        archs, scores, full = self.training_data()
        if self.num_suggested < self.num_initial or len(archs) < 2 or max(scores) == min(scores):
            return self.random_unseen()  # type: ignore[return-value]
        timing = {}
        start = time.perf_counter()
        self._update_model(archs, scores)
        timing["model"] = time.perf_counter() - start

        start = time.perf_counter()
        population = self.population(archs, scores)
        pool = evolutionary_pool(
            self.space, population, self.rng, self.pool_size,
            tournament_size=self.tournament_size, exclude=self._excluder(),
            multi_edit_probability=self.multi_edit_probability, max_edits=self.max_edits,
            random_fraction=self.random_fraction,
        )
        timing["pool"] = time.perf_counter() - start
        if not pool:
            return self.random_unseen()  # type: ignore[return-value]

        if self.explore_probability > 0 and self.rng.random() < self.explore_probability:
            self.last_timing = timing
            return pool[0]  # an evolution step: the first child of a tournament winner

        start = time.perf_counter()
        scores_acq = self.acquisition(pool, archs, scores, full)
        timing["acquisition"] = time.perf_counter() - start
        self.last_timing = timing
        return pool[int(torch.argmax(scores_acq))]

    def equivalence_key(self, arch: Architecture) -> bytes:
        """Identical for cells whose pruned graphs are identical (same ops, same live wiring)."""
        key = self._keys.get(arch)
        if key is None:
            data = arch_to_data(self.space, arch, prune=True) if not self.predictor.prune \
                else self.predictor.graph(arch)
            key = self._keys[arch] = (
                data.x.argmax(1).numpy().tobytes() + b"|" + data.edge_index.numpy().tobytes())
        return key

    def _excluder(self) -> Callable[[Architecture], bool]:
        """The pool's filter: seen architectures and, with ``skip_equivalent``, their equivalents."""
        if not self.skip_equivalent or self.allow_repeats:
            return self.is_seen
        seen = [o.arch for o in self.observations]
        seen += list(self.pending.values()) + list(self.failed.values())
        keys = {self.equivalence_key(a) for a in seen}
        return lambda arch: self.is_seen(arch) or self.equivalence_key(arch) in keys

    def population(self, archs: Sequence[Architecture], scores: Sequence[float]) -> list[tuple[Architecture, float]]:
        """The sampler's population: the most recent observations (``"aging"``) or the best (``"elite"``)."""
        members = list(zip(archs, scores))
        if self.population_kind == "elite":
            order = sorted(range(len(members)), key=lambda i: (-members[i][1], i))
            return [members[i] for i in sorted(order[: self.population_size])]
        return members[-self.population_size:]

    def _update_model(self, archs: list[Architecture], scores: list[float]) -> None:
        """Train the GCN when due, advance a training in progress, refit the BLR when anything changed.

        The first training (on the initial architectures) runs at once. Later,
        every ``retrain_every`` observations a new training starts on all the
        data; with ``amortize_training`` it advances ``1/retrain_every`` of its
        steps per suggestion and replaces the network in use when complete,
        so its cost is spread evenly instead of landing on one suggestion.
        """
        n = len(archs)
        predictor = self.predictor
        if predictor.trainings == 0 and predictor.run is None:
            predictor.fit(archs, scores, mode="max", warm_start=self._pretrained)
            self.trained_at = self.started_at = n
            self._blr_key = (n, predictor.trainings)
        elif predictor.run is None and n >= self.started_at + self.retrain_every:
            predictor.start_training(archs, scores, mode="max", warm_start=self.warm_start)
            self.started_at = n
        if predictor.run is not None:
            run = predictor.run
            spread = self.amortize_training and len(run.archs) > self.amortize_above
            chunk = math.ceil(run.total / self.retrain_every) if spread else run.total
            if predictor.train_steps(chunk):
                self.trained_at = len(run.archs)
        key = (n, predictor.trainings)
        if self._blr_key != key or predictor.blr is None:
            predictor.update_blr(archs, scores)
            self._blr_key = key

    def acquisition(
        self,
        candidates: Sequence[Architecture],
        archs: Sequence[Architecture] | None = None,
        scores: Sequence[float] | None = None,
        full: Sequence[bool] | None = None,
    ) -> torch.Tensor:
        """log EI of ``candidates`` under the BLR conditioned on the pending trials (kriging believer)."""
        from botorch.acquisition.analytic import LogExpectedImprovement

        if archs is None or scores is None or full is None:
            archs, scores, full = self.training_data()
        known = set(archs)
        pending = [a for a in self.pending.values() if a not in known]
        model = self.predictor.acquisition_model(pending)
        normalized = self.predictor.normalize(scores)
        incumbents = normalized[torch.as_tensor(full)] if any(full) else normalized
        best_f = float(incumbents.max())
        acq = LogExpectedImprovement(model, best_f=best_f)
        phi = self.predictor.embed(list(candidates))
        with torch.no_grad():
            return acq(phi.unsqueeze(-2))

    def predict(self, archs: Sequence[Architecture]) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted ``(mean, variance)`` of the metric of ``archs``, in its units.

        The GCN + BLR brought up to date with every observation so far; for
        ``mode="min"`` the mean is the metric itself (not its negation).
        """
        data, scores, _ = self.training_data()
        if len(data) < 2 or max(scores) == min(scores):
            raise ValueError(
                f"BONAS.predict needs at least 2 observations with different values, got {len(data)}"
            )
        with self.predictor.threads():
            self._update_model(data, scores)
        mean, variance = self.predictor.predict(list(archs))
        return (-mean if self.mode == "min" else mean), variance

    # ------------------------------------------------------------ save/restore
    def extra_state(self) -> dict[str, Any]:
        return {
            "trained_at": self.trained_at,
            "started_at": self.started_at,
            "predictor": self.predictor.to_bytes() if self.predictor.network is not None else None,
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.trained_at = int(state.get("trained_at", 0))
        self.started_at = int(state.get("started_at", self.trained_at))
        self.predictor.seed = 0 if self.seed is None else int(self.seed)
        blob = state.get("predictor")
        if blob is not None:
            self.predictor.load_bytes(blob)
        self._blr_key = None  # the BLR is refit from the observations at the next proposal

    def on_observation(self, observation: Observation) -> None:
        """Nothing to do eagerly: the next :meth:`propose` refits what the new data requires."""
