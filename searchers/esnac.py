"""The ESNAC searcher (Cao, Wang, Kitani, ICLR 2019) for Ray Tune."""

from __future__ import annotations

from raynas.search.esnac import ESNAC
from raynas.searchers.base import RaynasSearcher


class ESNACSearcher(RaynasSearcher):
    r"""ESNAC: compress a teacher by BO with K learned BiLSTM-embedding kernels (:class:`raynas.search.esnac.ESNAC`).

    Paper: S. Cao, X. Wang, K. M. Kitani, "Learnable Embedding Space for
    Efficient Neural Architecture Compression", ICLR 2019.

    The space is a :class:`~raynas.spaces.compression.CompressionSpace` of
    the teacher; trials are :class:`raynas.trainables.distill.DistillTrainable`
    runs whose ``objective`` is ``f = r(2 − r) · A_s / A_t`` (maximise). Each
    step learns K kernels (``num_kernels``) on random subsets of the results and
    queues one EI-maximising proposal per kernel; pending architectures are
    never proposed again. Options are :class:`~raynas.search.esnac.ESNAC`'s
    keyword arguments (``kernels=`` starts from transferred kernels).

    Example:
        >>> searcher = ESNACSearcher(space, metric="objective", mode="max", seed=0, num_kernels=4)
    """

    search_class = ESNAC

    def save_kernels(self, path: str) -> None:
        """Write the kernels learned at the last step (see :meth:`ESNAC.save_kernels`)."""
        self.search.save_kernels(path)  # type: ignore[attr-defined]
