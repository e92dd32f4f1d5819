"""NASBOT on Ray Tune (the method: :mod:`raynas.search.nasbot`)."""

from __future__ import annotations

from raynas.search.nasbot import NASBOT
from raynas.searchers.base import RaynasSearcher


class NASBOTSearcher(RaynasSearcher):
    """:class:`raynas.search.nasbot.NASBOT` as a Ray Tune searcher; the method is documented there.

    Options are that class's keyword arguments.

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = NASBOTSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)
    """

    search_class = NASBOT
