"""The one thread-limit helper of raynas' model code."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, then restore the previous setting.

    Surrogates in NAS work on small matrices (hundreds of rows): a second
    thread gains nothing, and OpenMP threads spin-waiting on a busy machine
    make them an order of magnitude slower. Every model-based method therefore
    fits and scores with one thread by default. ``None`` leaves torch alone.

    Example:
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
    """
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
