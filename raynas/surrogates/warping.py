"""Output warping shared by the GP searchers: observed values to normal scores and back.

NAS objectives are heavy-tailed (on NAS-Bench-201 a few percent of cells
train to 10 % accuracy while the rest crowd into 85-91 %), and a GP fitted to
standardised raw values spends its capacity on the failures. Replacing each
value by the normal quantile of its rank, ``Φ⁻¹((rank - ½)/n)``, is a
monotone warping that keeps the order (what the acquisition needs) and
spreads the crowded top evenly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata


def normal_scores(values: Sequence[float]) -> np.ndarray:
    """``Φ⁻¹((rank - ½)/n)`` of each value (ties share their mean rank); one value maps to 0."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return np.zeros_like(values)
    return ndtri((rankdata(values) - 0.5) / values.size)


def from_normal_scores(
    scores: np.ndarray, variance: np.ndarray, values: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Map a prediction in normal-score units back to the units of ``values`` (the observed ones).

    The mean goes through the piecewise-linear map from the sorted values'
    normal scores to the values (so it stays within their range); the
    variance is scaled by that map's slope squared (delta method).
    """
    ordered = np.sort(np.asarray(values, dtype=float))
    grid = ndtri((np.arange(1, ordered.size + 1) - 0.5) / ordered.size)
    segment = np.clip(np.searchsorted(grid, scores), 1, grid.size - 1)
    slope = (ordered[segment] - ordered[segment - 1]) / (grid[segment] - grid[segment - 1])
    return np.interp(scores, grid, ordered), variance * slope**2
