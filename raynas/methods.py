"""Search methods by short name, without Ray: the one list of method names in raynas.

Each name maps to a Ray-free :class:`raynas.search.base.ArchitectureSearch`
subclass, imported on first use (GPyTorch, PyTorch Geometric and POT cost
nothing until a method that needs them is asked for). ``raynas bench`` drives
these classes directly; the Ray Tune searchers (:mod:`raynas.searchers`) wrap
the same classes and take their names from :data:`METHODS`, so a method
registered here is a ``--searcher`` / ``--searchers`` name too.

Example::

    >>> from raynas.methods import make_method
    >>> from raynas.spaces import NB201Space
    >>> search = make_method("regevo", NB201Space(), mode="max", seed=0, population_size=20)
    >>> arch = search.suggest("t0")            # None once a finite space is exhausted
    >>> _ = search.complete("t0", 91.3, fidelity=1)
    >>> make_method("bogus", NB201Space())
    Traceback (most recent call last):
    ...
    raynas.methods.UnknownMethodError: unknown searcher 'bogus'; choose from random, regevo, nasbot, gpnas, bonas, esnac
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from raynas.search.base import ArchitectureSearch, Mode
    from raynas.spaces.base import SearchSpace

#: Short name -> ``"module:Class"`` of the Ray-free search method (imported lazily).
METHODS: dict[str, str] = {
    "random": "raynas.search.random:RandomSearch",
    "regevo": "raynas.search.evolution:RegularizedEvolution",
    "nasbot": "raynas.search.nasbot:NASBOT",
    "gpnas": "raynas.search.gpnas:GPNAS",
    "bonas": "raynas.search.bonas:BONAS",
    "esnac": "raynas.search.esnac:ESNAC",
}

#: Methods that only search a teacher's compression space (``raynas compress``), not ordinary spaces.
COMPRESSION_ONLY: frozenset[str] = frozenset({"esnac"})

_CLASSES: dict[str, type] = {}  # imported classes by "module:Class" (METHODS keeps the strings)


class UnknownMethodError(ValueError):
    """A search method name that is not in :data:`METHODS`.

    A single name reads ``unknown searcher 'x'; choose from ...``, a list
    (several names checked at once) ``unknown searcher(s) ['x', 'y']; ...``.

    Attributes:
        names: the unknown name(s).
        valid: the registered names.
    """

    def __init__(self, names: Any) -> None:
        self.valid = list(METHODS)
        choices = ", ".join(self.valid)
        if isinstance(names, (list, tuple)):
            self.names = list(names)
            message = f"unknown searcher(s) {self.names}; choose from {choices}"
        else:
            self.names = [names]
            message = f"unknown searcher {names!r}; choose from {choices}"
        super().__init__(message)


def ordinary_methods() -> list[str]:
    """The names usable on ordinary search spaces (all but :data:`COMPRESSION_ONLY`), in registry order."""
    return [name for name in METHODS if name not in COMPRESSION_ONLY]


def check_methods(names: Iterable[str], *, compression_ok: bool = True) -> list[str]:
    """``names`` as a list, once all are known to be registered; imports nothing.

    Raises:
        UnknownMethodError: listing every unregistered name (and the valid ones).
        ValueError: with ``compression_ok=False``, for compression-only methods.
    """
    names = list(names)
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise UnknownMethodError(unknown)
    if not compression_ok:
        compression = [name for name in names if name in COMPRESSION_ONLY]
        if compression:
            raise ValueError(
                f"searcher(s) {compression} search only a teacher's compression space (raynas compress); "
                f"on this space choose from {', '.join(ordinary_methods())}"
            )
    return names


def method_class(name: str) -> type[ArchitectureSearch]:
    """The :class:`~raynas.search.base.ArchitectureSearch` subclass registered as ``name`` (imported on first use)."""
    try:
        target = METHODS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable "name"
        raise UnknownMethodError(name) from None
    cls = _CLASSES.get(target)
    if cls is not None:
        return cls  # type: ignore[return-value]
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    from raynas.search.base import ArchitectureSearch

    if not (isinstance(cls, type) and issubclass(cls, ArchitectureSearch)):
        raise TypeError(f"METHODS[{name!r}] = {target!r} is not an ArchitectureSearch subclass")
    _CLASSES[target] = cls
    return cls


def method_options(name: str) -> list[str]:
    """The keyword arguments ``make_method(name, space, mode=..., **options)`` accepts as options.

    Read from the ``__init__`` signatures of the method's class and of the
    classes it passes ``**kwargs`` on to, down to
    :class:`~raynas.search.base.ArchitectureSearch` (``seed``,
    ``points_to_evaluate``, ...); ``space`` and ``mode`` are arguments of
    their own, not options. A class may fix a base option for its method
    (the model-based methods and ``regevo`` set ``max_attempts``):
    :func:`make_method` then refuses it with a TypeError saying so.
    """
    return _options_of(method_class(name))


def make_method(name: str, space: SearchSpace, *, mode: Mode | None = None, **options: Any) -> ArchitectureSearch:
    """A fresh search of the method registered as ``name`` on ``space``.

    ``mode`` (``"max"`` or ``"min"``) may also be set later through the
    search's ``mode``; without it the class's default applies. ``options`` are
    the class's keyword arguments (see :func:`method_options`).

    Raises:
        UnknownMethodError: ``name`` is not registered.
        TypeError: an option the class does not take (the message names the
            class and lists its options), or one the class sets itself.
    """
    cls = method_class(name)
    valid = _options_of(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"{cls.__name__} (search method {name!r}) got unknown option(s) {unknown}; "
            f"its options are: {', '.join(valid)}"
        )
    if mode is not None:
        options["mode"] = mode
    try:
        return cls(space, **options)
    except TypeError as error:
        if "multiple values for keyword argument" not in str(error):
            raise
        raise TypeError(f"{cls.__name__} (search method {name!r}): {error} (the method sets it itself)") from error


def _options_of(cls: type) -> list[str]:
    from raynas.search.base import ArchitectureSearch

    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]  # drop self
        for parameter in parameters:
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY) \
                    and parameter.name not in ("space", "mode") and parameter.name not in names:
                names.append(parameter.name)
        if klass is ArchitectureSearch or not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


__all__ = [
    "COMPRESSION_ONLY",
    "METHODS",
    "UnknownMethodError",
    "check_methods",
    "make_method",
    "method_class",
    "method_options",
    "ordinary_methods",
]
