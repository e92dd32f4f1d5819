r"""Outcome transforms of the engine: the rank warping, written once as a BoTorch ``OutcomeTransform``.

NAS objectives are heavy-tailed: on NAS-Bench-201 a few percent of cells
train to 10 % accuracy while the rest crowd into 85-91 %. A model fitted to
raw values spends its capacity on the failures. :class:`RankWarp` replaces
each observed value by a function of its rank among the observed values, a
monotone map that keeps the order (all an acquisition needs) and spreads the
crowded top evenly:

* ``kind="normal"``: ``Φ⁻¹((r − ½)/n)``, the normal score of rank ``r`` of
  ``n`` (ties share their mean rank; one value maps to 0). NASBOT and GP-NAS.
* ``kind="uniform"``: the empirical CDF ``(r_< + r_≤ − 1) / (2(n − 1))`` in
  ``[0, 1]`` (``r_<``, ``r_≤``: values below / at most ``y``): BONAS's targets,
  which its exponentially weighted loss needs in ``[0, 1]``.
* ``kind="minmax"``: ``(y − min)/(max − min)``, BONAS's accuracies-in-[0, 1]
  generalised to any metric.

The map is learned from the training targets (``forward`` in train mode) and
inverted piecewise linearly through the observed values (``untransform``):
within their range for ``"normal"``, extended linearly beyond it for
``"uniform"`` (a surrogate may predict above the best value seen).
``untransform_posterior`` maps the mean through the inverse and scales the
variance by its slope squared (delta method; for ``"uniform"`` the slope is the
secant over ``±2σ``, since the map is flat between tied observations).

The optimisation direction is not this transform's business: the engine hands
it values oriented so that larger is better (:meth:`raynas.search.base.ArchitectureSearch.score`).

Example:
    >>> import torch
    >>> warp = RankWarp("normal")
    >>> y, _ = warp(torch.tensor([[10.0], [90.0], [91.0]], dtype=torch.float64))
    >>> warp.eval()
    >>> torch.allclose(warp.untransform(y)[0], torch.tensor([[10.0], [90.0], [91.0]], dtype=torch.float64))
    True
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from botorch.models.transforms.outcome import OutcomeTransform
from botorch.posteriors import Posterior
from botorch.posteriors.transformed import TransformedPosterior
from scipy.special import ndtri
from scipy.stats import rankdata
from torch import Tensor

WarpKind = Literal["normal", "uniform", "minmax"]
KINDS: tuple[str, ...] = ("normal", "uniform", "minmax")


def normal_scores(values: np.ndarray) -> np.ndarray:
    """``Φ⁻¹((rank - ½)/n)`` of each value (ties share their mean rank); one value maps to 0."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return np.zeros_like(values)
    return ndtri((rankdata(values) - 0.5) / values.size)


class RankWarp(OutcomeTransform):
    """A monotone warping of a single outcome by the values observed (see the module docstring).

    Args:
        kind: ``"normal"``, ``"uniform"`` or ``"minmax"``.

    Shapes: ``Y`` is ``n x 1`` (one outcome); ``Yvar`` is not supported (noise-free targets).
    """

    def __init__(self, kind: WarpKind = "normal") -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"RankWarp kind must be one of {list(KINDS)}, got {kind!r}")
        self.kind = kind
        self.register_buffer("reference", torch.zeros(0, dtype=torch.float64))

    # ---------------------------------------------------------------- reference
    def fit_reference(self, values: Tensor | np.ndarray) -> "RankWarp":
        """Learn the map from ``values`` (the observed, oriented outcomes) without transforming."""
        ref = torch.sort(torch.as_tensor(np.asarray(values, dtype=np.float64).reshape(-1))).values
        if ref.numel() == 0:
            raise ValueError("RankWarp needs at least one observed value")
        self.reference = ref
        return self

    @property
    def fitted(self) -> bool:
        return self.reference.numel() > 0

    def _bounds(self) -> tuple[float, float]:
        lo, hi = float(self.reference[0]), float(self.reference[-1])
        return lo, (hi if hi > lo else lo + 1.0)

    def _grid(self) -> np.ndarray:
        n = self.reference.numel()
        if self.kind == "normal":
            return ndtri((np.arange(1, n + 1) - 0.5) / n)
        return np.linspace(0.0, 1.0, n)

    # ------------------------------------------------------------- forward map
    def _map(self, y: Tensor) -> Tensor:
        """Transformed values of ``y`` (any shape) under the learned reference."""
        if self.kind == "minmax" or self.reference.numel() < 2:
            if self.kind == "normal":
                return torch.zeros_like(y)
            lo, hi = self._bounds()
            return (y - lo) / (hi - lo)
        if self.kind == "uniform":
            left = torch.searchsorted(self.reference, y.contiguous(), right=False)
            right = torch.searchsorted(self.reference, y.contiguous(), right=True)
            return (left + right - 1).to(torch.float64) / (2.0 * (self.reference.numel() - 1))
        ref = self.reference.numpy()
        return torch.as_tensor(np.interp(y.detach().numpy(), ref, self._grid()), dtype=y.dtype)

    def forward(self, Y: Tensor, Yvar: Tensor | None = None, X: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """In train mode: learn the reference from ``Y`` and return its warped values; in eval mode: apply it."""
        if Yvar is not None:
            raise NotImplementedError("RankWarp does not transform observation noise (Yvar)")
        if Y.shape[-1] != 1:
            raise ValueError(f"RankWarp warps one outcome, got Y with {Y.shape[-1]} columns")
        if self.training:
            self.fit_reference(Y.reshape(-1))
            if self.kind == "normal":
                return torch.as_tensor(normal_scores(Y.reshape(-1).numpy()), dtype=Y.dtype).reshape(Y.shape), None
        if not self.fitted:
            raise RuntimeError("RankWarp used before it saw any outcomes (call it in train mode first)")
        return self._map(Y), None

    # ------------------------------------------------------------- inverse map
    def _inverse(self, y: np.ndarray) -> np.ndarray:
        ref = self.reference.numpy()
        if self.kind == "minmax" or ref.size < 2:
            lo, hi = self._bounds()
            return y * (hi - lo) + lo if self.kind != "normal" else np.full_like(y, ref[0])
        grid = self._grid()
        if self.kind == "normal":
            return np.interp(y, grid, ref)
        segment = np.clip(np.searchsorted(grid, y), 1, len(grid) - 1)
        slope = (ref[segment] - ref[segment - 1]) / (grid[segment] - grid[segment - 1])
        return ref[segment - 1] + (y - grid[segment - 1]) * slope

    def slope(self, y: Tensor, spread: Tensor | None = None) -> Tensor:
        """``d untransform / d y`` at ``y`` (for ``"uniform"``: the secant over ``y ± max(2·spread, ½ step)``)."""
        ref = self.reference.numpy()
        yy = y.detach().numpy()
        if self.kind == "minmax" or ref.size < 2:
            lo, hi = self._bounds()
            return torch.from_numpy(np.full_like(yy, (hi - lo) if self.kind != "normal" else 0.0))
        grid = self._grid()
        if self.kind == "normal":
            segment = np.clip(np.searchsorted(grid, yy), 1, grid.size - 1)
            return torch.from_numpy((ref[segment] - ref[segment - 1]) / (grid[segment] - grid[segment - 1]))
        half = np.full_like(yy, 0.5 / (len(grid) - 1))
        if spread is not None:
            half = np.maximum(half, 2.0 * spread.detach().numpy())
        return torch.from_numpy((self._inverse(yy + half) - self._inverse(yy - half)) / (2.0 * half))

    def untransform(self, Y: Tensor, Yvar: Tensor | None = None, X: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Transformed values back to outcomes (``Yvar`` scaled by the slope squared, delta method)."""
        if not self.fitted:
            raise RuntimeError("RankWarp.untransform called before the transform saw any outcomes")
        values = torch.from_numpy(self._inverse(Y.detach().numpy())).to(Y)
        if Yvar is None:
            return values, None
        return values, Yvar * self.slope(Y, Yvar.clamp_min(0.0).sqrt()).to(Y) ** 2

    def untransform_mean_variance(self, mean: Tensor, variance: Tensor) -> tuple[Tensor, Tensor]:
        """A Gaussian prediction ``(mean, variance)`` in transformed units mapped back (delta method)."""
        values, var = self.untransform(mean, variance)
        return values, var  # type: ignore[return-value]

    def untransform_posterior(self, posterior: Posterior, X: Tensor | None = None) -> Posterior:
        """The posterior in outcome units: samples through the inverse map, mean and variance as above."""
        return TransformedPosterior(
            posterior=posterior,
            sample_transform=lambda s: self.untransform(s)[0],
            mean_transform=lambda m, v: self.untransform(m)[0],
            variance_transform=lambda m, v: v * self.slope(m, v.clamp_min(0.0).sqrt()).to(m) ** 2,
        )

    def subset_output(self, idcs: list[int]) -> "RankWarp":
        if list(idcs) != [0]:
            raise NotImplementedError("RankWarp has one outcome")
        return self
