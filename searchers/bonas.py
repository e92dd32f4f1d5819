"""BONAS on Ray Tune: GCN embedding + Bayesian linear regression + EI over an evolutionary pool."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from raynas.search.bonas import BONAS
from raynas.searchers.base import RaynasSearcher
from raynas.spaces.base import SearchSpace


class BONASSearcher(RaynasSearcher):
    """BONAS (:class:`raynas.search.bonas.BONAS`) as a Ray Tune searcher.

    Method (Shi, Pi, Xu, Li, Kwok & Zhang, "Bridging the Gap between
    Sample-based and One-shot Neural Architecture Search with BONAS",
    NeurIPS 2020; arXiv "Efficient Sample-based Neural Architecture Search
    with Learnable Predictor", Algorithm 1): a GCN over the cell graph with a
    global node embeds architectures; it is trained with the exponentially
    weighted loss, and its last layer is replaced by Bayesian linear regression
    (α, β by evidence maximisation) to give a mean and a variance; each
    suggestion scores expected improvement over a pool of candidates from an
    evolutionary sampler (aging population of the observed architectures,
    tournament selection, one-edit mutations) and returns the best. 10 random
    architectures start the search; the BLR is refit at every observation and
    the GCN every 10.

    Deviations, and why:

    * Pool: the paper's 1,000 candidates are one-edit mutations of tournament
      winners; on small spaces (NB201: 24 neighbours per cell) one edit cannot
      fill 1,000 distinct unseen candidates, so a child is mutated again with
      probability ``multi_edit_probability`` (up to ``max_edits`` edits).
    * GCN retraining is warm-started from the previous weights (fewer epochs)
      to keep ``suggest`` fast; measured as good as retraining from scratch.
    * EI is BoTorch's ``LogExpectedImprovement`` (same argmax as EI, no
      underflow when every candidate's EI is tiny).
    * Asynchronous workers (not in the paper, which is sequential): pending
      trials are kriging-believer fantasies in the BLR.
    * Early-stopped trials (ASHA) are trained on with their partial value but
      are never EI's incumbent (``low_fidelity="use"``; ``"drop"`` ignores them).

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = BONASSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)

    Args:
        space: the search space.
        metric, mode: Tune's metric and mode (or from ``TuneConfig``).
        seed, points_to_evaluate, allow_repeats: as for every raynas searcher.
        num_initial, pool_size, retrain_every, population_size, tournament_size,
            multi_edit_probability, max_edits, random_fraction, warm_start, epochs,
            warm_steps, hidden, layers, head_hidden, lr, batch_size, prune,
            num_threads, low_fidelity, pretrained: see :class:`~raynas.search.bonas.BONAS`.
    """

    def __init__(
        self,
        space: SearchSpace,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int | None = 0,
        points_to_evaluate: Sequence[Any] | None = None,
        allow_repeats: bool = False,
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
        low_fidelity: str = "use",
        population: str = "aging",
        skip_equivalent: bool = False,
        amortize_training: bool = True,
        amortize_above: int = 50,
        explore_probability: float = 0.1,
        pretrained: Any = None,
    ) -> None:
        search = BONAS(
            space, mode=mode, seed=seed, points_to_evaluate=points_to_evaluate,  # type: ignore[arg-type]
            allow_repeats=allow_repeats, num_initial=num_initial, pool_size=pool_size,
            retrain_every=retrain_every, population_size=population_size,
            tournament_size=tournament_size, multi_edit_probability=multi_edit_probability,
            max_edits=max_edits, random_fraction=random_fraction, warm_start=warm_start,
            epochs=epochs, warm_steps=warm_steps, hidden=hidden, layers=layers,
            head_hidden=head_hidden, lr=lr, batch_size=batch_size, prune=prune,
            normalization=normalization, bidirectional=bidirectional,
            num_threads=num_threads, low_fidelity=low_fidelity,  # type: ignore[arg-type]
            population=population, skip_equivalent=skip_equivalent,
            amortize_training=amortize_training, amortize_above=amortize_above,
            explore_probability=explore_probability,
            pretrained=pretrained,
        )
        super().__init__(search, metric=metric, mode=mode)
