"""Ray Tune ``Searcher`` classes over architectures, registered under short names."""

from __future__ import annotations

from typing import Any

from raynas.searchers.base import RaynasSearcher
from raynas.searchers.baselines import RandomSearcher, RegularizedEvolutionSearcher
from raynas.spaces.base import SearchSpace

#: Short names used by ``raynas search --searcher`` and ``raynas bench --searchers``.
SEARCHERS: dict[str, type[RaynasSearcher]] = {
    "random": RandomSearcher,
    "regevo": RegularizedEvolutionSearcher,
}


def make_searcher(
    name: str,
    space: SearchSpace,
    metric: str | None = None,
    mode: str | None = None,
    **kwargs: Any,
) -> RaynasSearcher:
    """Build the searcher registered as ``name``."""
    try:
        cls = SEARCHERS[name]
    except KeyError:
        raise ValueError(f"unknown searcher {name!r}; choose from {sorted(SEARCHERS)}") from None
    return cls(space, metric=metric, mode=mode, **kwargs)


__all__ = [
    "SEARCHERS",
    "RaynasSearcher",
    "RandomSearcher",
    "RegularizedEvolutionSearcher",
    "make_searcher",
]
