"""The NASBOT searcher (Kandasamy et al., NeurIPS 2018) for Ray Tune."""

from __future__ import annotations


from raynas.search.nasbot import NASBOT
from raynas.searchers.base import RaynasSearcher


class NASBOTSearcher(RaynasSearcher):
    r"""NASBOT: GP Bayesian optimisation with the OTMANN kernel (:class:`raynas.search.nasbot.NASBOT`).

    Paper: K. Kandasamy, W. Neiswanger, J. Schneider, B. Póczos, E. Xing,
    "Neural Architecture Search with Bayesian Optimisation and Optimal
    Transport", NeurIPS 2018.

    **Distance.** OTMANN between layer graphs ``G1``, ``G2``
    (:mod:`raynas.kernels.otmann`):
    ``d = min_Z ⟨Z, C_lmm⟩ + ν_str ⟨Z, C_str⟩ + Σ_i(ℓm_i − Σ_j Z_ij) + Σ_j(ℓm_j − Σ_i Z_ij)``
    over matchings ``Z ≥ 0`` of layer masses, solved exactly with POT;
    ``d̄ = d / (tm(G1) + tm(G2))``.

    **Model.** GP with ``k = α e^{−βd} + ᾱ e^{−β̄d̄}``; ``α, β, ᾱ, β̄``, noise
    and mean by maximum marginal likelihood (BoTorch ``fit_gpytorch_mll``),
    every ``refit_every`` observations.

    **Acquisition.** GP-UCB ``μ + β_t^{1/2} σ`` with
    ``β_t^{1/2} = sqrt(0.5 D log(2Dt + 1))`` (default), or EI
    (``acquisition="ei"``, BoTorch's log-EI), maximised by an evolutionary
    algorithm over networks from the best evaluated ones, with the space's
    modifiers (:meth:`SearchSpace.neighbours`; NASBOT's nine modifiers on the
    macro spaces). Pending trials are hallucinated at their posterior mean.

    **Deviations, and why.**

    * Kernel matrices: ``exp(−βd)`` of OTMANN is not PSD (measured); the
      training covariance is projected onto the PSD cone (clipped
      eigenvalues), a correction the paper mentions; cross-covariances stay raw.
    * Outcomes are rank-warped to normal scores before the GP sees them
      (``warping="rank"``, as GP-NAS here): NAS objectives are heavy-tailed and
      the raw-value GP spent its fit on the failures; ``warping="none"`` is the paper.
    * Distance scales: ``d`` and ``d̄`` are divided by their median among the
      training points before ``β``, ``β̄`` apply (a reparametrisation that
      makes one initial value fit every space; the model class is unchanged).
    * One structural weight ``ν_str`` (2.0 on NB201/NB101 cells, 0.5 on
      other spaces: :func:`raynas.search.nasbot.default_nu_str`); cell spaces get masses for parameter-free ops of
      ``C²/4`` rather than ``C`` (see :mod:`raynas.spaces.layer_graph`).
      Both chosen by the GP's held-out rank correlation on NAS-Bench-201.
    * The acquisition optimiser is a compact EA (hill-climbing population
      of ``ea_parents`` plus random immigrants) rather than the paper's
      sampling-based EA; it scores a few hundred networks per suggestion so
      that ``suggest`` stays well under Tune's 2 s budget.

    Example:
        >>> from raynas.spaces import NB201Space
        >>> searcher = NASBOTSearcher(NB201Space(), metric="val_acc", mode="max", seed=0)
    """

    search_class = NASBOT
