"""GP-NAS (Li et al., CVPR 2020) as a Ray Tune searcher."""

from __future__ import annotations


from raynas.search.gpnas import GPNAS
from raynas.searchers.base import RaynasSearcher


class GPNASSearcher(RaynasSearcher):
    r"""GP-NAS: Gaussian-process NAS with a grouped kernel and mutual-information sampling.

    Li, Xi, Deng, Zhang, Wen, He. *GP-NAS: Gaussian Process based Neural
    Architecture Search*, CVPR 2020. The method is :class:`raynas.search.gpnas.GPNAS`
    (Ray-free); this class only wires it to Tune.

    Model (:class:`raynas.surrogates.gpnas.GPNASModel`): performance
    ``x(s) = wᵀs + ε(s)`` over the architecture encoding ``s``, with a
    Gaussian prior on ``w`` and a GP residual whose kernel groups the
    operations by type (eq. 7)

    .. math::

        k(s,u) = \sum_i \sigma_i^2 \exp(-\lVert l_i \odot (s-u) \rVert^2)
                 \;+\; v\, s^\top u

    (the second term is the linear mean with prior ``w ~ N(0, v I)``
    integrated out). ``σ_i``, ``v`` and the noise are fitted by maximum
    marginal likelihood (eq. 21) with BoTorch; the posterior of ``w``
    (Theorems 1-2) and the expected MSE (Theorem 3) are read off the GP.

    Search: ``num_initial`` random architectures; then mutual-information
    sampling (eq. 12, greedily: largest posterior variance given the sampled
    and pending architectures) until the relative expected MSE over the
    candidates drops under ``mse_threshold`` (or ``max_explore`` such
    suggestions); then BoTorch LogEI on the GP, with pending trials as
    kriging believers (``condition_on_observations`` at the posterior mean).
    NAS-Bench-201 is scored whole (15,625 cells); larger spaces through a
    pool of random architectures and mutations of the best.

    Deviations from the paper, and why:

    * the paper *stops* when the expected MSE is low and reports the
      predicted best; a budgeted search instead switches to exploiting the
      fitted GP (EI), which is what finds the optimum;
    * the expected-MSE rule uses the GP's posterior variance (eq. 35 with the
      conditional covariance of eq. 11): eq. 35 as printed contains the prior
      residual variance, which does not shrink with data;
    * objective values are rank-warped to normal scores (``warping="rank"``):
      NAS objectives are heavy-tailed and the standardised model wastes its
      capacity on the failures (``warping="none"`` restores the paper);
    * ``w`` is integrated out by the GP and hyperparameters fitted jointly
      (``method="marginal"``); ``method="aea"`` runs Algorithm 1's
      alternation instead;
    * hyperparameters are refitted when the data grew by ``refit_fraction``,
      the GP re-conditioned in between, to keep ``suggest`` fast.

    Args:
        space: the search space.
        metric, mode: as for every Tune searcher (may come from ``TuneConfig``).
        seed, points_to_evaluate, allow_repeats: see
            :class:`raynas.search.ArchitectureSearch`.
        num_initial: random architectures first (default 10).
        mse_threshold: relative expected MSE that ends exploration.
        max_explore: most mutual-information suggestions.
        acquisition: ``"ei"``, ``"ucb"`` or ``"mean"`` once exploiting.
        kwargs: further :class:`raynas.search.gpnas.GPNAS` settings
            (``warping``, ``refit_fraction``, ``learn_lengthscale``, ``method``, ...).

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = GPNASSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)
    """

    search_class = GPNAS
