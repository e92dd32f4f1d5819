"""Scoring candidates with BoTorch's analytic acquisitions from one computed posterior.

An analytic acquisition (``LogExpectedImprovement``, ``UpperConfidenceBound``,
``PosteriorStandardDeviation``, ...) of ``n`` candidates needs only the
posterior *marginals* ``μ(x), σ²(x)``. Called as BoTorch intends, on an
``n x 1 x d`` batch, a GPyTorch model evaluates ``n`` separate 1-point
posteriors: per-candidate kernel look-ups and solves, which made the
acquisition the largest part of a suggestion (BONAS over 1,000 candidates:
~60 ms of its ~170 ms). The joint posterior of the ``n x d`` set gives the
same marginals in one pass (the variance is the diagonal of a lazy
covariance, never the ``n x n`` matrix):

    μ = K*ᵀ (K + σ²I)⁻¹ y,      σ²(x) = k(x, x) − k*(x)ᵀ (K + σ²I)⁻¹ k*(x)

:class:`MarginalPosterior` hands those marginals to the acquisition as a
BoTorch ``Model`` (q = 1 only), so the acquisition's own formula is used
unchanged. The values equal the batch evaluation's up to round-off.

Example::

    from botorch.acquisition.analytic import LogExpectedImprovement
    scores = score_candidates(model, X, lambda m: LogExpectedImprovement(m, best_f=0.8))
    best = X[scores.argmax()]
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

#: Builds the acquisition over a model (e.g. ``lambda m: LogExpectedImprovement(m, best_f=y_best)``).
MakeAcquisition = Callable[[Model], AcquisitionFunction]


class MarginalPosterior(Model):
    """A BoTorch model answering ``posterior`` for one fixed candidate set (q = 1) from computed marginals.

    ``X`` (``n x d``) are the candidates, ``mean`` and ``variance`` (``n``) their posterior
    marginals. Asked about anything but ``X`` as an ``n x 1 x d`` batch, it raises ``ValueError``.
    """

    _num_outputs = 1

    def __init__(self, X: Tensor, mean: Tensor, variance: Tensor) -> None:
        super().__init__()
        if mean.shape != variance.shape or mean.shape != X.shape[:1]:
            raise ValueError(f"MarginalPosterior: {X.shape[0]} candidates, but mean {tuple(mean.shape)} and "
                             f"variance {tuple(variance.shape)}")
        self._X, self._mean, self._variance = X, mean, variance

    @property
    def num_outputs(self) -> int:
        return 1

    def posterior(self, X: Tensor, output_indices: Any = None, observation_noise: Any = False,
                  posterior_transform: Any = None, **kwargs: Any) -> GPyTorchPosterior:
        if X.shape[-2] != 1 or not torch.equal(X.squeeze(-2), self._X):
            raise ValueError("MarginalPosterior answers only for the candidates it was built with, as an "
                             "n x 1 x d batch (q = 1)")
        mvn = MultivariateNormal(self._mean.unsqueeze(-1), DiagLinearOperator(self._variance.unsqueeze(-1)))
        return GPyTorchPosterior(mvn)


def marginals(model: Model, X: Tensor, **posterior_kwargs: Any) -> tuple[Tensor, Tensor]:
    """``(mean, variance)`` of ``model``'s posterior at each row of ``X`` (``n x d``), from one joint pass."""
    with torch.no_grad():
        posterior = model.posterior(X, **posterior_kwargs)
        return posterior.mean.reshape(-1), posterior.variance.reshape(-1).clamp_min(0.0)


def score_candidates(model: Model, X: Tensor, make_acquisition: MakeAcquisition,
                     mean: Tensor | None = None, variance: Tensor | None = None) -> Tensor:
    """The acquisition built by ``make_acquisition`` at each row of ``X`` (``n x d``; q = 1), as ``n`` values.

    The marginals come from ``model``'s joint posterior (:func:`marginals`), or are given
    (``mean`` and ``variance``, when the caller computed them otherwise).
    """
    if X.shape[0] == 0:
        return torch.zeros(0, dtype=X.dtype)
    if mean is None or variance is None:
        mean, variance = marginals(model, X)
    acquisition = make_acquisition(MarginalPosterior(X, mean, variance))
    with torch.no_grad():
        return acquisition(X.unsqueeze(-2)).reshape(-1)


__all__ = ["MakeAcquisition", "MarginalPosterior", "marginals", "score_candidates"]
