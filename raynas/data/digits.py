"""scikit-learn's bundled 8x8 handwritten digits as a stratified train/validation split.

The data ship with scikit-learn (1,797 images, 10 classes), so real NAS
training runs work offline and take seconds per architecture on a CPU.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

#: Largest pixel value of the digits images (4-bit grey levels).
DIGITS_PIXEL_MAX = 16.0


class DigitsSplit(NamedTuple):
    """Images ``(N, 1, 8, 8)`` float32 in [0, 1] and int64 labels for training and validation."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@functools.lru_cache(maxsize=8)
def _split_arrays(val_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """The split as (read-only) numpy arrays, cached so repeated trials in one worker don't reload."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / DIGITS_PIXEL_MAX)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    arrays = train_test_split(
        images, labels, test_size=val_fraction, random_state=seed, stratify=labels
    )
    x_train, x_val, y_train, y_val = arrays
    for array in arrays:
        array.setflags(write=False)
    return x_train, y_train, x_val, y_val


def load_digits_split(val_fraction: float = 0.2, seed: int = 0) -> DigitsSplit:
    """A stratified train/validation split of the digits data as torch tensors.

    Args:
        val_fraction: share of the 1,797 images held out for validation, in (0, 1).
        seed: seed of the split (the same seed always gives the same split).

    Returns:
        ``DigitsSplit(x_train, y_train, x_val, y_val)``; fresh tensors, so callers may modify them.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    arrays = _split_arrays(float(val_fraction), int(seed))
    return DigitsSplit(*(torch.from_numpy(a.copy()) for a in arrays))
