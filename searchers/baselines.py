"""Baseline searchers: random search and regularized evolution."""

from __future__ import annotations

from typing import Any, Sequence

from raynas.search import RandomSearch, RegularizedEvolution
from raynas.searchers.base import RaynasSearcher
from raynas.spaces.base import SearchSpace


class RandomSearcher(RaynasSearcher):
    """Uniform random sampling without replacement (:class:`raynas.search.RandomSearch`).

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = RandomSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)
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
    ) -> None:
        search = RandomSearch(
            space, mode=mode, seed=seed, points_to_evaluate=points_to_evaluate,  # type: ignore[arg-type]
            allow_repeats=allow_repeats,
        )
        super().__init__(search, metric=metric, mode=mode)


class RegularizedEvolutionSearcher(RaynasSearcher):
    """Aging evolution with tournament selection (:class:`raynas.search.RegularizedEvolution`).

    Defaults are the NAS-Bench-201 paper's: population 10, tournament sample 3.
    """

    def __init__(
        self,
        space: SearchSpace,
        metric: str | None = None,
        mode: str | None = None,
        *,
        population_size: int = 10,
        sample_size: int = 3,
        seed: int | None = 0,
        points_to_evaluate: Sequence[Any] | None = None,
        allow_repeats: bool = False,
    ) -> None:
        search = RegularizedEvolution(
            space, population_size=population_size, sample_size=sample_size, mode=mode,  # type: ignore[arg-type]
            seed=seed, points_to_evaluate=points_to_evaluate, allow_repeats=allow_repeats,
        )
        super().__init__(search, metric=metric, mode=mode)
