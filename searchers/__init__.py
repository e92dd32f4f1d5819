"""Ray Tune ``Searcher`` classes over architectures, registered under short names.

Searchers with heavy dependencies (GPyTorch, PyTorch Geometric, POT) are
registered as ``"module:Class"`` strings and imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from raynas.searchers.base import RaynasSearcher
from raynas.searchers.baselines import RandomSearcher, RegularizedEvolutionSearcher
from raynas.spaces.base import SearchSpace

#: Short names used by ``raynas search --searcher`` and ``raynas bench --searchers``.
SEARCHERS: dict[str, type[RaynasSearcher] | str] = {
    "random": RandomSearcher,
    "regevo": RegularizedEvolutionSearcher,
    "nasbot": "raynas.searchers.nasbot:NASBOTSearcher",
    "gpnas": "raynas.searchers.gpnas:GPNASSearcher",
    "bonas": "raynas.searchers.bonas:BONASSearcher",
    "esnac": "raynas.searchers.esnac:ESNACSearcher",  # compression spaces of a teacher only
}


def searcher_class(name: str) -> type[RaynasSearcher]:
    """The searcher class registered as ``name`` (imported on first use)."""
    try:
        entry = SEARCHERS[name]
    except KeyError:
        raise ValueError(f"unknown searcher {name!r}; choose from {sorted(SEARCHERS)}") from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = SEARCHERS[name] = getattr(importlib.import_module(module), attr)
    return entry


def make_searcher(
    name: str,
    space: SearchSpace,
    metric: str | None = None,
    mode: str | None = None,
    **kwargs: Any,
) -> RaynasSearcher:
    """Build the searcher registered as ``name``."""
    return searcher_class(name)(space, metric=metric, mode=mode, **kwargs)


__all__ = [
    "SEARCHERS",
    "RaynasSearcher",
    "RandomSearcher",
    "RegularizedEvolutionSearcher",
    "make_searcher",
    "searcher_class",
]
