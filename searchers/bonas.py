"""BONAS on Ray Tune (the method: :mod:`raynas.search.bonas`)."""

from __future__ import annotations

from raynas.search.bonas import BONAS
from raynas.searchers.base import RaynasSearcher


class BONASSearcher(RaynasSearcher):
    """:class:`raynas.search.bonas.BONAS` as a Ray Tune searcher; the method is documented there.

    Options are that class's keyword arguments.

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = BONASSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)
    """

    search_class = BONAS
