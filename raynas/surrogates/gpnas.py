"""The GP-NAS surrogate (Li et al., CVPR 2020): a GP with the grouped kernel and a Bayesian linear mean.

Model (eqs. 5, 7, 13-20). An architecture's performance is

.. math::

    x(s) = w^\\top s + \\varepsilon(s), \\qquad
    w \\sim \\mathcal N(\\mu_w, \\Sigma_w), \\qquad
    \\varepsilon \\sim \\mathcal{GP}(0, k_{grouped}) + \\text{noise},

with ``s`` the encoding of :mod:`raynas.kernels.grouped` and ``k_grouped`` the
kernel of eq. 7. Integrating ``w`` out (``μ_w = 0``, ``Σ_w = v I``) gives a GP
with covariance ``k_grouped(s,u) + v sᵀu``: the linear mean with a Gaussian
prior on ``w`` *is* a :class:`gpytorch.kernels.LinearKernel` added to the
grouped kernel (Rasmussen & Williams 2006, sec. 2.7). The model is therefore
a BoTorch :class:`~botorch.models.SingleTaskGP` with ``covar_module =
GroupedKernel + LinearKernel``, a constant mean (the bias of the linear mean;
redundant on one-hot encodings, needed on ordinal ones) and a Gaussian
likelihood; objective values are standardised before fitting.

What the paper's pieces become:

* **σ by maximum likelihood (eq. 21)**: :func:`botorch.fit.fit_gpytorch_mll`
  on the exact marginal likelihood. In the default ``method="marginal"`` the
  group amplitudes ``σ_i²``, the prior variance ``v`` of ``w``, the noise and
  the bias are fitted jointly with ``w`` integrated out (type-II maximum
  likelihood), the fixed point that the alternation of Algorithm 1 aims at.
* **AEA (Algorithm 1)**: ``method="aea"`` runs the alternation literally:
  *(σ-step)* fit ``σ_i``, noise and bias by maximum likelihood with ``w`` held
  at its current posterior mean (a GP with the fixed mean ``μ̂_wᵀ s`` and the
  grouped kernel alone, eq. 21 with ``w = μ_w``); *(w-step)* the closed-form
  Bayesian update of Theorems 1-2 with ``σ`` held, ``Σ_w = v I``. Under the
  linear-kernel formulation the w-step needs no separate computation: the GP
  with kernel ``k_grouped + v·linear`` conditioned on the data *is* the
  Gaussian posterior of ``w`` (Theorems 1-2 are its weight-space view), and
  its predictive mean is eq. 10 with ``m(s) = μ̂_wᵀ s``. Unlike the paper we do
  not feed the posterior back as the next prior while re-using all data (that
  would count each observation twice); each round starts from the same prior.
* **Posterior of w (Theorems 1-2)**: :meth:`GPNASModel.weight_posterior`,
  read off the fitted GP: ``μ̂_w = μ_w + Σ_w Φᵀ (K + Φ Σ_w Φᵀ)⁻¹ (x - Φ μ_w)``
  and ``Σ̂_w = (Φᵀ K⁻¹ Φ + Σ_w⁻¹)⁻¹`` (the paper's eq. 23 prints ``Φᵀ Σ_w`` and
  ``Φᵀ Σ_w Φ``; the shapes only work as written here). ``K`` is the grouped
  kernel matrix plus the noise.
* **Expected MSE (Theorem 3, eq. 35)**: :meth:`GPNASModel.expected_mse_matrix`
  gives ``Φ Σ̂_w Φᵀ + K(s, s)`` literally: the error of the *linear* predictor
  ``Φ μ̂_w`` (eq. 22). Its ``K(s,s)`` is the prior residual variance, which does
  not shrink with data, so as a stopping rule we use
  :meth:`GPNASModel.expected_mse`: the same quantity for the predictor that
  GP-NAS actually uses (eq. 10: linear mean plus the kriged residual), i.e.
  ``Φ Σ̂_w Φᵀ`` and the *conditional* ``K(u|s)`` of eq. 11 with their cross
  term (R&W eq. 2.42), which is the GP's posterior variance, averaged over
  the architectures given and divided by the variance of the observations.

Example:
    >>> import numpy as np
    >>> from raynas.spaces import NB201Space
    >>> space, rng = NB201Space(), np.random.default_rng(0)
    >>> archs = [space.sample(rng) for _ in range(20)]
    >>> values = [float(a.ops.count("nor_conv_3x3")) for a in archs]
    >>> model = GPNASModel(space).fit(archs, values)
    >>> mean, variance = model.predict(archs[:3])
"""

from __future__ import annotations

import copy
from typing import Any, Literal, Mapping, Sequence

import gpytorch
import numpy as np
import torch
from botorch.models import SingleTaskGP
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import LinearKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean, LinearMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from raynas.architecture import Architecture
from raynas.bo.fitting import diagnostics_to_log, fit_mll
from raynas.bo.pending import kriging_believer
from raynas.kernels.grouped import GroupedEncoding, GroupedKernel, Grouping, grouped_encoding
from raynas.spaces.base import SearchSpace

FitMethod = Literal["marginal", "aea"]
DTYPE = torch.float64
#: Exact (Cholesky) linear algebra up to this many training points; GPyTorch's default switches
#: to iterative, approximate methods above 800.
MAX_CHOLESKY = 4096


class NotFittedError(RuntimeError):
    """The model was used before :meth:`GPNASModel.fit`."""


class GPNASModel:
    """GP-NAS: grouped kernel (eq. 7) plus a linear mean with a Gaussian prior (eqs. 5, 18).

    Args:
        space: the search space (its encoding and groups come from
            :func:`raynas.kernels.grouped.grouped_encoding`).
        learn_lengthscale: learn one length-scale per group (not in eq. 7).
        linear_mean: include the Bayesian linear mean (``LinearKernel``); without
            it the model is a GP with the grouped kernel and a constant mean.
        nb201_grouping: ``"type"`` (none/skip/conv/pool) or ``"op"`` on NB201.
        noise_lower_bound: lower bound of the noise variance (standardised units).
        fit_maxiter: L-BFGS-B iterations per marginal-likelihood fit.
        method: ``"marginal"`` (type-II ML, ``w`` integrated out) or ``"aea"``
            (Algorithm 1's alternation); see the module docstring.
        aea_rounds: alternations of ``method="aea"``.
        weight_prior_variance: ``v`` of the prior ``Σ_w = v I`` (standardised
            units) for ``method="aea"``, where it is given as in Algorithm 1;
            ``method="marginal"`` fits it.
        warm_start: start each refit from the last fit's values instead of
            the fixed initialisation (faster, but see :meth:`_initialise`).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        learn_lengthscale: bool = False,
        linear_mean: bool = True,
        nb201_grouping: Grouping = "type",
        noise_lower_bound: float = 1e-4,
        fit_maxiter: int = 200,
        method: FitMethod = "marginal",
        aea_rounds: int = 3,
        weight_prior_variance: float = 1.0,
        warm_start: bool = False,
    ) -> None:
        if method not in ("marginal", "aea"):
            raise ValueError(f"method must be 'marginal' or 'aea', got {method!r}")
        if method == "aea" and not linear_mean:
            raise ValueError("method='aea' alternates between σ and w: it needs linear_mean=True")
        if aea_rounds < 1 or fit_maxiter < 1:
            raise ValueError(f"aea_rounds and fit_maxiter must be >= 1, got {aea_rounds}, {fit_maxiter}")
        self.space = space
        self.encoding: GroupedEncoding = grouped_encoding(space, nb201_grouping)
        self.learn_lengthscale = learn_lengthscale
        self.linear_mean = linear_mean
        self.noise_lower_bound = noise_lower_bound
        self.fit_maxiter = fit_maxiter
        self.method = method
        self.aea_rounds = aea_rounds
        self.weight_prior_variance_init = float(weight_prior_variance)
        self.warm_start = warm_start
        self.gp: SingleTaskGP | None = None
        #: Incremented whenever the hyperparameters change (a refit): caches of kernel columns key on it.
        self.version = 0
        self._hyper: dict[str, Tensor] | None = None
        self._y_mean, self._y_std = 0.0, 1.0
        self.num_train = 0
        self.num_pending = 0

    # ----------------------------------------------------------- building
    def encode(self, archs: Sequence[Architecture]) -> Tensor:
        """``n x d`` encodings (float64)."""
        return self.encoding.encode(list(archs), dtype=DTYPE)

    def _new_kernel(self):
        grouped = GroupedKernel(self.encoding.masks, learn_lengthscale=self.learn_lengthscale)
        # Linear first: GPyTorch adds a low-rank term to a dense one through a Cholesky factor of the
        # dense (noise-free, possibly singular) grouped matrix; the other order is a plain sum.
        return LinearKernel() + grouped if self.linear_mean else grouped

    def _new_gp(self, X: Tensor, Y: Tensor, covar_module=None, mean_module=None) -> SingleTaskGP:
        likelihood = GaussianLikelihood(noise_constraint=GreaterThan(self.noise_lower_bound))
        with diagnostics_to_log():  # BoTorch's input-scaling advice does not apply to encodings
            gp = SingleTaskGP(
                X, Y, likelihood=likelihood, covar_module=covar_module or self._new_kernel(),
                mean_module=mean_module or ConstantMean(), outcome_transform=None,
            )
        return gp.to(DTYPE)

    def _initialise(self, gp: SingleTaskGP, X: Tensor) -> None:
        """The fixed starting point of every fit: the prior variance split evenly.

        Half of the (standardised) variance goes to the linear mean, half to
        the grouped residual, evenly over its groups; noise 0.1. Fits start
        here rather than from the last fit's values: a hyperparameter driven
        to ~0 once (``σ_i`` of a group, ``v`` of the linear mean) has a
        vanishing gradient under the positivity transform and would otherwise
        stay dead for the rest of the search.
        """
        grouped, linear = _parts(gp)
        share = 0.5 if self.linear_mean else 1.0
        grouped.outputscale = share / grouped.num_groups
        if self.learn_lengthscale:
            grouped.group_lengthscale = 1.0
        if self.linear_mean:
            if self.method == "aea":
                linear.variance = self.weight_prior_variance_init
            else:
                linear.variance = 0.5 / float((X * X).sum(-1).mean().clamp_min(1e-12))
        gp.likelihood.noise = max(0.1, self.noise_lower_bound * 2)
        gp.mean_module.constant.data.zero_()

    def _fit_mll(self, gp: SingleTaskGP) -> None:
        """Maximum marginal likelihood; a failed fit keeps the previous (or initial) hyperparameters."""
        with gpytorch.settings.max_cholesky_size(MAX_CHOLESKY):
            fit_mll(ExactMarginalLogLikelihood(gp.likelihood, gp), what="GP-NAS GP", maxiter=self.fit_maxiter,
                    fallback=self._hyper, max_attempts=2)

    # ------------------------------------------------------------ fitting
    def fit(
        self,
        archs: Sequence[Architecture],
        values: Sequence[float],
        *,
        refit: bool = True,
    ) -> "GPNASModel":
        """Condition on ``(archs, values)``; with ``refit`` also re-estimate the hyperparameters.

        Without ``refit`` the hyperparameters of the last fit are kept (cheap:
        one Cholesky factorisation at the next prediction). The first call
        always fits. Values are standardised; ``values`` are in the
        objective's units, larger or smaller better does not matter here.
        """
        values = np.asarray(values, dtype=float)
        if len(archs) != len(values) or len(archs) < 2:
            raise ValueError(f"need at least 2 architectures with one value each, got {len(archs)} and {len(values)}")
        if not np.all(np.isfinite(values)):
            raise ValueError("values must be finite")
        X = self.encode(archs)
        self._y_mean = float(values.mean())
        self._y_std = float(values.std()) or 1.0
        Y = torch.as_tensor((values - self._y_mean) / self._y_std, dtype=DTYPE).unsqueeze(-1)
        gp = self._new_gp(X, Y)
        if refit or self._hyper is None:
            if self.warm_start and self._hyper is not None:
                gp.load_state_dict(self._hyper)
            else:
                self._initialise(gp, X)
            if self.method == "aea":
                gp = self._fit_aea(X, Y, gp)
            else:
                self._fit_mll(gp)
            hyper = copy.deepcopy(gp.state_dict())
            self._hyper = {k: v for k, v in hyper.items() if not k.startswith("prediction_strategy")}
            self.version += 1
        else:
            gp.load_state_dict(self._hyper)
        _reset_caches(gp)
        self.gp = gp
        self.num_train = len(archs)
        self.num_pending = 0
        return self

    def _fit_aea(self, X: Tensor, Y: Tensor, gp: SingleTaskGP) -> SingleTaskGP:
        """Algorithm 1: alternate σ (eq. 21, w fixed) and w (Theorems 1-2, σ fixed)."""
        d = X.shape[-1]
        grouped, linear = _parts(gp)
        linear.raw_variance.requires_grad_(False)
        mu_w = torch.zeros(d, dtype=DTYPE)
        for _ in range(self.aea_rounds):
            # σ-step: GP with the fixed linear mean μ_wᵀ s (bias free) and the grouped kernel only.
            mean = LinearMean(d, bias=True).to(DTYPE)
            mean.weights.data = mu_w.unsqueeze(-1).clone()
            mean.weights.requires_grad_(False)
            mean.bias.data.zero_()
            sigma_gp = self._new_gp(X, Y, covar_module=grouped, mean_module=mean)
            sigma_gp.likelihood.load_state_dict(gp.likelihood.state_dict())
            self._fit_mll(sigma_gp)
            # w-step: the combined GP with σ (and noise, bias) held gives μ̂_w, Σ̂_w in closed form.
            gp.likelihood.load_state_dict(sigma_gp.likelihood.state_dict())
            gp.mean_module.constant.data = mean.bias.data.clone().reshape(gp.mean_module.constant.shape)
            _reset_caches(gp)
            mu_w, _ = self._weight_posterior_std(gp, X)
        return gp

    # ----------------------------------------------------------- pending
    def condition_on_pending(self, archs: Sequence[Architecture]) -> "GPNASModel":
        """A copy conditioned on ``archs`` at their posterior mean (kriging believer).

        The engine's kriging believer (:func:`raynas.bo.pending.kriging_believer`:
        BoTorch's ``condition_on_observations``, low-rank cache updates). The variance, which drives mutual-information
        sampling, does not depend on the believed values, so this is exact for
        variance-based selection.
        """
        self._check_fitted()
        if not archs:
            return self
        X = self.encode(archs)
        with diagnostics_to_log():
            fantasy = kriging_believer(self.gp, X, mean=self._mean_std(X))
        other = copy.copy(self)
        other.gp = fantasy
        other.num_pending = self.num_pending + len(archs)
        return other

    # ------------------------------------------------------ hyperparameters
    @property
    def hyperparameters(self) -> dict[str, Tensor] | None:
        """The last fit's hyperparameters (a ``state_dict`` without caches), or ``None`` before the first."""
        return self._hyper

    def load_hyperparameters(self, hyper: Mapping[str, Any] | None) -> None:
        """Set the hyperparameters (from :attr:`hyperparameters`, as lists or tensors); the next
        :meth:`fit` without ``refit`` uses them, and kernel caches keyed on :attr:`version` go stale."""
        self._hyper = None if hyper is None else {k: torch.as_tensor(v, dtype=DTYPE) for k, v in hyper.items()}
        self.version += 1
        self.gp = None

    def cross_covariance(self, X: Tensor, start: int = 0) -> Tensor:
        """``K(X, train[start:])`` under the current hyperparameters (kernel columns to cache)."""
        self._check_fitted()
        with torch.no_grad():
            return self.gp.covar_module(X, self.gp.train_inputs[0][start:]).to_dense()

    # -------------------------------------------------------- prediction
    @property
    def train_X(self) -> Tensor:
        self._check_fitted()
        return self.gp.train_inputs[0]

    def _check_fitted(self) -> None:
        if self.gp is None:
            raise NotFittedError("GPNASModel.fit() must be called before predicting")

    def _mean_std(self, X: Tensor) -> Tensor:
        mean, _, _ = self.mean_variance(X, with_variance=False)
        return mean

    def mean_variance(
        self,
        X: Tensor,
        cross: Tensor | None = None,
        *,
        with_variance: bool = True,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Posterior mean and variance of the latent ``f`` (standardised units) at encodings ``X``.

        Scales linearly in ``len(X)``: only ``K(X, train)`` and the diagonal of
        ``K(X, X)`` are formed, and GPyTorch's prediction strategy applies the
        cached factorisation (``gp.posterior`` would also form the full
        ``len(X) x len(X)`` prior covariance).

        Args:
            X: ``m x d`` encodings.
            cross: ``K(X, train)`` for the first ``cross.shape[-1]`` training
                points (a cache from an earlier call with the same
                hyperparameters); missing columns are computed.
            with_variance: skip the variance when only the mean is needed.

        Returns:
            ``(mean, variance, cross)``: ``m``-vectors and the complete ``m x n`` cross covariance.
        """
        self._check_fitted()
        gp = self.gp
        train_X = gp.train_inputs[0]
        with torch.no_grad():
            if gp.prediction_strategy is None:
                gp.posterior(train_X[:1])
            done = 0 if cross is None else cross.shape[-1]
            if done > train_X.shape[0]:
                raise ValueError(f"cross has {done} columns but the model has {train_X.shape[0]} training points")
            if done < train_X.shape[0]:
                extra = gp.covar_module(X, train_X[done:]).to_dense()
                cross = extra if cross is None else torch.cat([cross, extra], dim=-1)
            strategy = gp.prediction_strategy
            mean = strategy.exact_predictive_mean(gp.mean_module(X), cross)
            if not with_variance:
                return mean, None, cross
            prior = gp.covar_module(X, diag=True)
            # With the Cholesky-based inverse root (exact up to max_cholesky_size), the variance is
            # a GEMM with the cached root instead of a triangular solve per candidate.
            with gpytorch.settings.fast_pred_var(), gpytorch.settings.max_cholesky_size(MAX_CHOLESKY):
                covar = strategy.exact_predictive_covar(DiagLinearOperator(prior), cross)
            variance = covar.diagonal(dim1=-2, dim2=-1).clamp_min(1e-12)
        return mean, variance, cross

    def predict(self, archs: Sequence[Architecture]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted performance (mean, variance of the latent value) in the objective's units."""
        mean, variance, _ = self.mean_variance(self.encode(archs))
        return (
            mean.numpy() * self._y_std + self._y_mean,
            variance.numpy() * self._y_std**2,
        )

    def standardise(self, values: Sequence[float] | float) -> np.ndarray:
        """Objective values in the model's standardised units."""
        return (np.asarray(values, dtype=float) - self._y_mean) / self._y_std

    # ---------------------------------------------- the paper's quantities
    @property
    def noise(self) -> float:
        """Noise variance (standardised units)."""
        self._check_fitted()
        return float(self.gp.likelihood.noise.item())

    @property
    def group_scales(self) -> dict[str, float]:
        """``σ_i²`` per group name (standardised units)."""
        kernel = self._grouped_kernel()
        return dict(zip(self.encoding.group_names, kernel.outputscale.detach().reshape(-1).tolist()))

    @property
    def weight_prior_variance(self) -> float:
        """``v`` in ``Σ_w = v I`` (standardised units); 0 without a linear mean."""
        self._check_fitted()
        if not self.linear_mean:
            return 0.0
        return float(_parts(self.gp)[1].variance.item())

    def _grouped_kernel(self) -> GroupedKernel:
        self._check_fitted()
        return _parts(self.gp)[0]

    def residual_covariance(self, X1: Tensor, X2: Tensor | None = None) -> Tensor:
        """``K_t(s, u)`` of eq. 20: grouped kernel, plus the noise where ``X2`` is omitted."""
        kernel = self._grouped_kernel()
        with torch.no_grad():
            if X2 is None:
                return kernel(X1).to_dense() + self.noise * torch.eye(X1.shape[0], dtype=DTYPE)
            return kernel(X1, X2).to_dense()

    def weight_posterior(self) -> tuple[Tensor, Tensor]:
        """Posterior mean ``μ̂_w`` (``d``) and covariance ``Σ̂_w`` (``d x d``) of ``w``: Theorems 1-2.

        In standardised units, with the prior ``μ_w = 0``, ``Σ_w = v I`` and
        the bias (constant mean) subtracted from the targets.
        """
        self._check_fitted()
        if not self.linear_mean:
            raise ValueError("this GPNASModel has no linear mean (linear_mean=False)")
        return self._weight_posterior_std(self.gp, self.gp.train_inputs[0])

    def _weight_posterior_std(self, gp: SingleTaskGP, X: Tensor) -> tuple[Tensor, Tensor]:
        v = _parts(gp)[1].variance.reshape(())
        with torch.no_grad():
            if gp.prediction_strategy is None:
                gp.posterior(X[:1])
            strategy = gp.prediction_strategy
            # (K + Φ Σ_w Φᵀ)⁻¹ (x - bias) is the GP's mean cache; its train covariance includes the noise.
            alpha = strategy.mean_cache
            mean = v * (X.transpose(-1, -2) @ alpha)
            solved = strategy.lik_train_train_covar.solve(X)  # (K + Φ Σ_w Φᵀ)⁻¹ Φ
            cov = v * torch.eye(X.shape[-1], dtype=DTYPE) - v * v * (X.transpose(-1, -2) @ solved)
        return mean, 0.5 * (cov + cov.transpose(-1, -2))

    def expected_mse_matrix(self, archs: Sequence[Architecture]) -> Tensor:
        """Theorem 3 (eq. 35) literally: ``Φ Σ̂_w Φᵀ + K(s, s)`` in the objective's units squared."""
        X = self.encode(archs)
        _, cov = self.weight_posterior()
        return (X @ cov @ X.transpose(-1, -2) + self.residual_covariance(X)) * self._y_std**2

    def expected_mse(self, X: Tensor | Sequence[Architecture]) -> float:
        """Relative expected MSE of the GP-NAS predictor on ``X`` (encodings or architectures).

        The mean posterior variance of the latent performance (eq. 35 with the
        conditional covariance of eq. 11, see the module docstring) divided by
        the variance of the observations: 1 means "no better than the
        observations' spread", 0 a perfect predictor.
        """
        if not isinstance(X, Tensor):
            X = self.encode(X)
        _, variance, _ = self.mean_variance(X)
        return float(variance.mean())


def _parts(gp: SingleTaskGP) -> tuple[GroupedKernel, LinearKernel | None]:
    """The grouped kernel and the linear kernel (``None`` without a linear mean) of a GP-NAS GP."""
    covar = gp.covar_module
    if isinstance(covar, GroupedKernel):
        return covar, None
    grouped = next(k for k in covar.kernels if isinstance(k, GroupedKernel))
    linear = next(k for k in covar.kernels if isinstance(k, LinearKernel))
    return grouped, linear


def _reset_caches(gp: SingleTaskGP) -> None:
    """Eval mode with fresh prediction caches (``train()`` drops them; ``eval()`` alone keeps stale ones)."""
    gp.train()
    gp.eval()


__all__ = ["GPNASModel", "NotFittedError"]
