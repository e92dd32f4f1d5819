"""GPNAS on Ray Tune (the method: :mod:`raynas.search.gpnas`)."""

from __future__ import annotations

from raynas.search.gpnas import GPNAS
from raynas.searchers.base import RaynasSearcher


class GPNASSearcher(RaynasSearcher):
    """:class:`raynas.search.gpnas.GPNAS` as a Ray Tune searcher; the method is documented there.

    Options are that class's keyword arguments.

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = GPNASSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)
    """

    search_class = GPNAS
