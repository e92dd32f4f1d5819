"""Ray Tune ``Searcher`` classes over architectures, registered under short names.

The names are those of :data:`raynas.methods.METHODS` (the one list of method
names): each is a :class:`RaynasSearcher` over that Ray-free method. Methods
with a searcher class of their own (docstring, extra methods) are listed in
:data:`SEARCHERS` as that class or its ``"module:Class"`` string (imported on
first use, as GPyTorch, PyTorch Geometric and POT are heavy); any other
registered method gets a plain :class:`RaynasSearcher` subclass, made on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from raynas.methods import METHODS, method_class
from raynas.searchers.base import RaynasSearcher
from raynas.searchers.baselines import RandomSearcher, RegularizedEvolutionSearcher
from raynas.searchers.console import TrialLines, trial_dirname
from raynas.spaces.base import SearchSpace

#: Searcher classes of their own, by method name.
_OWN_CLASSES: dict[str, type[RaynasSearcher] | str] = {
    "random": RandomSearcher,
    "regevo": RegularizedEvolutionSearcher,
    "nasbot": "raynas.searchers.nasbot:NASBOTSearcher",
    "gpnas": "raynas.searchers.gpnas:GPNASSearcher",
    "bonas": "raynas.searchers.bonas:BONASSearcher",
    "esnac": "raynas.searchers.esnac:ESNACSearcher",  # compression spaces of a teacher only
}

#: Short names used by ``raynas search --searcher`` and ``raynas bench --searchers``: every
#: name in :data:`raynas.methods.METHODS`, in its order. ``None``: a generic searcher, made on first use.
SEARCHERS: dict[str, type[RaynasSearcher] | str | None] = {name: _OWN_CLASSES.get(name) for name in METHODS}


def searcher_class(name: str) -> type[RaynasSearcher]:
    """The searcher class of the method registered as ``name`` (imported or made on first use).

    Raises :class:`raynas.methods.UnknownMethodError` (a ValueError) for a name
    not in :data:`raynas.methods.METHODS`.
    """
    search_class = method_class(name)  # the one check of the name; raises UnknownMethodError
    entry = SEARCHERS.get(name)
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
    if entry is None or entry.search_class is not search_class:  # no class of its own (or not for this method)
        entry = _generic_searcher(search_class)
    SEARCHERS[name] = entry
    return entry


def _generic_searcher(search_class: type) -> type[RaynasSearcher]:
    """A :class:`RaynasSearcher` subclass running ``search_class``, for a method without a class of its own."""
    return type(
        f"{search_class.__name__}Searcher",
        (RaynasSearcher,),
        {
            "__module__": __name__,
            "__doc__": f"{search_class.__module__}.{search_class.__name__} as a Ray Tune searcher "
            "(options: its keyword arguments).",
            "search_class": search_class,
        },
    )


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
    "TrialLines",
    "make_searcher",
    "searcher_class",
    "trial_dirname",
]
