"""Baseline searchers: random search and regularized evolution."""

from __future__ import annotations

from raynas.search import RandomSearch, RegularizedEvolution
from raynas.searchers.base import RaynasSearcher


class RandomSearcher(RaynasSearcher):
    """Uniform random sampling without replacement (:class:`raynas.search.RandomSearch`).

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = RandomSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)
    """

    search_class = RandomSearch


class RegularizedEvolutionSearcher(RaynasSearcher):
    """Aging evolution with tournament selection (:class:`raynas.search.RegularizedEvolution`).

    Defaults are the NAS-Bench-201 paper's: ``population_size=10``, ``sample_size=3``.

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = RegularizedEvolutionSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)
    """

    search_class = RegularizedEvolution
