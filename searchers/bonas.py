"""BONAS on Ray Tune: GCN embedding + Bayesian linear regression + EI over an evolutionary pool."""

from __future__ import annotations


from raynas.search.bonas import BONAS
from raynas.searchers.base import RaynasSearcher


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

    search_class = BONAS
