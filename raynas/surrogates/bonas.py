"""The BONAS surrogate: a GCN embedding with a Bayesian linear regression on top.

Shi, Pi, Xu, Li, Kwok & Zhang, "Bridging the Gap between Sample-based and
One-shot Neural Architecture Search with BONAS" (NeurIPS 2020; arXiv title
"Efficient Sample-based Neural Architecture Search with Learnable Predictor").

Pieces, in the paper's order:

* :class:`GCNEmbedding` (§3.1): Kipf-Welling GCN layers (PyTorch Geometric's
  :class:`~torch_geometric.nn.DenseGCNConv`) over the cell graph with a
  global node (:mod:`raynas.surrogates.graph_encoding`); the read-out is the
  global node's embedding.
* :class:`GCNRegressor`: the GCN plus a single-hidden-layer regressor head,
  trained end-to-end with the exponentially weighted loss
  :func:`exponential_weighted_loss` (§3.4) on targets normalised to ``[0, 1]``
  from the observed values (:func:`target_warp`, the engine's :class:`~raynas.bo.outcome.RankWarp`).
* :func:`blr_model` (§3.2): Bayesian linear regression replaces the head's
  final linear layer; its features ``φ`` are the head's hidden layer. It is
  the BLR's GP form, a BoTorch ``SingleTaskGP`` with GPyTorch's
  ``LinearKernel``, with α and β by evidence maximisation
  (``fit_gpytorch_mll``), so BoTorch's ``LogExpectedImprovement`` and
  ``condition_on_observations`` (pending trials) run on it unchanged.
* :class:`BONASPredictor`: the reusable predictor (``fit`` / ``predict`` /
  ``update_blr`` / ``state_dict`` / ``transfer_from``), with
  :class:`TrainingRun` for trainings advanced a slice at a time.

Defaults, and where they differ from the paper (one-line reasons; the
measurements are in ``docs/measurements.md``):

* 2 GCN layers of 64 units, not 4: they ranked the top of NAS-Bench-201
  better and train twice as fast.
* learning rate 1e-2, not 1e-3: 1e-3 under-fits in the 200 passes a
  suggestion can afford.
* ``normalization="rank"``: targets are the empirical CDF of the observed
  values (:func:`target_warp`), not their min-max image, which squeezes the
  crowded top into a sliver where the exponential weights barely differ.
  ``"minmax"`` remains available.
* ``prune=True`` and ``bidirectional=True``: the GCN reads the pruned cell
  in both directions (the global node stays a read-out sink); both found the
  NB201 optimum sooner. See :func:`~raynas.surrogates.graph_encoding.arch_to_data`.

Example:
    >>> import numpy as np
    >>> from raynas.spaces import NB201Space
    >>> space = NB201Space()
    >>> rng = np.random.default_rng(0)
    >>> archs = [space.sample(rng) for _ in range(20)]
    >>> values = [sum(op == "nor_conv_3x3" for op in a.ops) for a in archs]
    >>> predictor = BONASPredictor(space, epochs=50).fit(archs, values)
    >>> mean, variance = predictor.predict(archs[:3])   # in the units of ``values``
"""

from __future__ import annotations

import io
import math
from typing import Any, Literal, Mapping, Sequence

import torch
from botorch.models import SingleTaskGP
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import LinearKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import DenseGCNConv

from raynas.architecture import Architecture
from raynas.bo.fitting import diagnostics_to_log, fit_mll
from raynas.bo.outcome import RankWarp
from raynas.bo.pending import kriging_believer
from raynas.bo.threads import torch_threads
from raynas.spaces.base import SearchSpace
from raynas.surrogates.graph_encoding import (
    DenseGraphs,
    arch_to_data,
    op_vocabulary,
    stack_dense,
    to_dense,
)

Mode = Literal["max", "min"]
PREDICTOR_FORMAT = "raynas-bonas-predictor/1"


# --------------------------------------------------------------------------- GCN
class GCNEmbedding(nn.Module):
    """Stacked Kipf-Welling GCN layers; the embedding of a graph is its global node's.

    ``H(l+1) = ReLU(D̃^-1/2 Ã D̃^-1/2 H(l) W(l))`` (paper eq. 3) with ``Ã = A + I``
    on the graph of :func:`~raynas.surrogates.graph_encoding.arch_to_data`
    (``D̃``: in-degree with the self loop). Layers are PyTorch Geometric's
    :class:`~torch_geometric.nn.DenseGCNConv` on the dense layout
    (:class:`~raynas.surrogates.graph_encoding.DenseGraphs`): cell graphs have at
    most a dozen nodes, so a batched ``[B, N, N]`` matmul is several times
    faster on a CPU than sparse message passing (``GCNConv``), with the same
    propagation rule.

    Args:
        in_features: one-hot vocabulary size.
        hidden: units of every layer (the paper's predictor study: 64).
        layers: number of GCN layers (the paper: 4; 2 by default here, see the
            module docstring).

    Shapes:
        ``forward(graphs) -> [B, hidden]``.
    """

    def __init__(self, in_features: int, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        if in_features < 1 or hidden < 1 or layers < 1:
            raise ValueError(
                f"need in_features, hidden and layers >= 1, got {in_features}, {hidden}, {layers}"
            )
        sizes = [in_features] + [hidden] * layers
        self.convs = nn.ModuleList(DenseGCNConv(a, b) for a, b in zip(sizes, sizes[1:]))
        self.in_features, self.hidden, self.layers = in_features, hidden, layers

    def node_embeddings(self, graphs: DenseGraphs) -> Tensor:
        """``[B, N, hidden]`` embeddings of every node (zero for padding)."""
        h = graphs.x
        for conv in self.convs:
            h = torch.relu(conv(h, graphs.adj, graphs.mask))
        return h

    def forward(self, graphs: DenseGraphs) -> Tensor:
        h = self.node_embeddings(graphs)
        return h[torch.arange(h.shape[0]), graphs.readout]


class GCNRegressor(nn.Module):
    """:class:`GCNEmbedding` plus the paper's single-hidden-layer regressor.

    ``features(batch)`` is the head's hidden layer ``φ`` (what the BLR uses);
    ``forward(batch) = w·φ + b`` is the point prediction used for training.
    """

    def __init__(self, in_features: int, hidden: int = 64, layers: int = 2, head_hidden: int = 64) -> None:
        super().__init__()
        self.gcn = GCNEmbedding(in_features, hidden, layers)
        self.hidden = nn.Linear(hidden, head_hidden)
        self.out = nn.Linear(head_hidden, 1)

    def features(self, graphs: DenseGraphs) -> Tensor:
        return torch.relu(self.hidden(self.gcn(graphs)))

    def forward(self, graphs: DenseGraphs) -> Tensor:
        return self.out(self.features(graphs)).squeeze(-1)


def exponential_weighted_loss(prediction: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """BONAS eq. 6: ``1/(N(e-1)) Σ (exp(y) - 1) (ŷ - y)²`` for targets ``y`` in ``[0, 1]``.

    Architectures with high (normalised) targets weigh up to 1, the worst
    observed weighs 0. ``sample_weight`` (optional, per example) multiplies
    each term. This is the loss :class:`TrainingRun` trains with.

    Example:
        >>> exponential_weighted_loss(torch.tensor([0.5]), torch.tensor([1.0])).item()
        0.25
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    weight = torch.expm1(target)
    if sample_weight is not None:
        weight = weight * sample_weight
    return (weight * (prediction - target) ** 2).sum() / (target.numel() * (math.e - 1.0))


# --------------------------------------------------------------------------- BLR
class BLRModel(SingleTaskGP):
    """The BLR of :func:`blr_model`: a ``SingleTaskGP`` whose posterior is, by default,
    the predictive distribution of an *observation*, ``φᵀS_Nφ + 1/β`` (paper eq. 5).

    BONAS scores EI with that variance; BoTorch's analytic acquisitions ask
    for the posterior without the noise flag, so the default is flipped here.
    ``posterior(X, observation_noise=False)`` gives the latent ``φᵀS_Nφ``.
    """

    def posterior(self, X: Tensor, output_indices: Any = None, observation_noise: Any = True,
                  posterior_transform: Any = None, **kwargs: Any) -> Any:
        return super().posterior(X, output_indices=output_indices, observation_noise=observation_noise,
                                 posterior_transform=posterior_transform, **kwargs)


def blr_model(
    phi: Tensor,
    t: Tensor,
    *,
    fit: bool = True,
    start: Mapping[str, Tensor] | None = None,
    maxiter: int = 100,
) -> BLRModel:
    """Bayesian linear regression on features ``φ``, as a BoTorch model (paper §3.2, eqs. 4-5).

    BLR with prior ``w ~ N(0, α⁻¹ I)`` and noise ``N(0, β⁻¹)`` is, with ``w``
    integrated out, the Gaussian process with the linear kernel
    ``k(φ, φ') = α⁻¹ φᵀφ'`` (Rasmussen & Williams 2006, §2.1): the same
    predictive mean and variance (eq. 5) and the same evidence. So it is a
    :class:`~botorch.models.SingleTaskGP` with GPyTorch's
    :class:`~gpytorch.kernels.LinearKernel` (``variance = α⁻¹``), a
    :class:`~gpytorch.likelihoods.GaussianLikelihood` (``noise = β⁻¹``) and a
    constant mean fixed at the targets' mean (BLR on centred targets), and "α
    and β by maximising the marginal likelihood" is :func:`botorch.fit.fit_gpytorch_mll` on the exact
    marginal likelihood (no priors: evidence maximisation, not MAP). BoTorch's
    EI, fantasies and conditioning then apply unchanged (:class:`BLRModel` makes
    the predictive variance of eq. 5 the default posterior). With ``N`` up to a
    few hundred the ``N x N`` solve costs about as much as the weight-space
    ``M x M`` one.

    Args:
        phi: ``[N, M]`` features; t: ``[N]`` targets.
        fit: maximise the evidence (otherwise keep ``start`` or the initial values).
        start: a previous model's ``state_dict`` to start from (warm start).
        maxiter: L-BFGS iterations.
    """
    phi = torch.as_tensor(phi, dtype=torch.float64)
    y = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    if phi.ndim != 2 or phi.shape[0] != y.shape[0] or phi.shape[0] == 0:
        raise ValueError(f"need phi [N, M] and t [N] with N >= 1, got {tuple(phi.shape)} and {tuple(t.shape)}")
    with diagnostics_to_log():  # BoTorch's input-scaling advice does not apply to embeddings
        model = BLRModel(
            phi, y, covar_module=LinearKernel(), mean_module=ConstantMean(),
            likelihood=GaussianLikelihood(noise_constraint=GreaterThan(1e-8)), outcome_transform=None,
        ).to(torch.float64)
    if start is not None:
        model.load_state_dict({k: v for k, v in start.items() if not k.startswith("prediction_strategy")},
                              strict=False)
    else:  # α = 1, β = 1/var(t): the usual starting point of evidence maximisation
        model.covar_module.variance = 1.0
        model.likelihood.noise = max(float(y.var()) if len(y) > 1 else 1.0, 1e-4)
    # The bias is the targets' mean, fixed, as when BLR is fit to centred targets: a fitted
    # constant shrinks the weight prior and leaves EI too little variance.
    model.mean_module.constant.data.fill_(float(y.mean()))  # centred targets (docs/measurements.md)
    model.mean_module.constant.requires_grad_(False)
    if fit:  # a failed fit keeps the starting values: still a valid posterior
        fit_mll(ExactMarginalLogLikelihood(model.likelihood, model), what="BONAS BLR", maxiter=maxiter)
    model.eval()
    return model


def blr_precisions(model: SingleTaskGP) -> tuple[float, float]:
    """``(α, β)``: the weight-prior and noise precisions of a :func:`blr_model`."""
    return 1.0 / float(model.covar_module.variance.detach()), 1.0 / float(model.likelihood.noise.detach())


def condition_on_pending(model: SingleTaskGP, phi: Tensor) -> SingleTaskGP:
    """The BLR conditioned on pending points' features at their posterior mean (the engine's
    kriging believer, :func:`raynas.bo.pending.kriging_believer`). For a linear-Gaussian model
    this leaves every mean unchanged and shrinks the variance around the pending points."""
    with diagnostics_to_log():
        return kriging_believer(model, torch.as_tensor(phi, dtype=torch.float64))


# ----------------------------------------------------------------- normalisation
Normalization = Literal["minmax", "rank"]
#: ``normalization`` -> the :class:`~raynas.bo.outcome.RankWarp` kind that maps targets to ``[0, 1]``.
WARP_KIND = {"rank": "uniform", "minmax": "minmax"}


def target_warp(oriented: Sequence[float] | Tensor, normalization: Normalization) -> RankWarp:
    """The engine's :class:`~raynas.bo.outcome.RankWarp` fitted on ``oriented`` values (BONAS's ``[0, 1]`` targets).

    ``"minmax"``: ``(s - min) / (max - min)``, the paper's accuracies-in-[0, 1]
    generalised to any metric; ``"rank"``: the empirical CDF, which spreads the
    crowded top of the distribution evenly over ``[0, 1]``.
    """
    warp = RankWarp(WARP_KIND[normalization]).fit_reference(torch.as_tensor(oriented, dtype=torch.float64))  # type: ignore[arg-type]
    warp.eval()
    return warp


# --------------------------------------------------------------------- predictor
class BONASPredictor:
    """GCN embedding + BLR: the BONAS performance predictor with uncertainty.

    :meth:`fit` normalises the (mode-oriented) values to ``[0, 1]``
    (:func:`target_warp`), trains the GCN and its regressor end-to-end with
    the exponentially weighted loss, then fits the BLR on the head's hidden
    layer; :meth:`update_blr` refits only the BLR (cheap: what BONAS does after
    every new observation); :meth:`predict` returns the BLR's predictive mean
    and variance in the units of the values given to :meth:`fit`.

    Training: Adam on mini-batches of 128 (as the paper), ``epochs`` passes
    over the data from a fresh initialisation, or ``warm_steps`` steps from the
    current weights (``warm_start=True``). :meth:`start_training` /
    :meth:`train_steps` run the same training a slice at a time (a
    :class:`TrainingRun`), leaving the network in use untouched until it is
    complete.

    Transfer (paper §4.4.2, pre-training on 6-node NB101 cells and searching
    7-node cells): :meth:`transfer_from` copies another predictor's GCN and head
    weights. It requires the **same operations**: the two spaces' op vocabularies
    (:func:`~raynas.surrogates.graph_encoding.op_vocabulary`) must hold the same
    labels (the order may differ: the first layer's input columns are permuted
    by label), and the networks the same sizes. Graph size and wiring may
    differ, since a GCN's weights do not depend on the number of nodes.

    Args:
        space: the search space (gives graphs and the op vocabulary).
        hidden, layers: GCN width and depth (the paper: 64 and 4; see the module docstring).
        head_hidden: units of the regressor's hidden layer (and BLR features).
        epochs: training passes from scratch.
        warm_steps: mini-batch steps of a warm-started retraining.
        lr, batch_size, weight_decay: Adam settings.
        prune, bidirectional: graph encoding (:func:`~raynas.surrogates.graph_encoding.arch_to_data`).
        normalization: how targets are mapped to ``[0, 1]`` (:func:`target_warp`).
        seed: seeds weight initialisation and mini-batch order.
        num_threads: torch intra-op threads while this predictor computes
            (restored afterwards); ``None`` leaves torch's setting alone.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        hidden: int = 64,
        layers: int = 2,
        head_hidden: int = 64,
        epochs: int = 200,
        warm_steps: int = 50,
        lr: float = 1e-2,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        prune: bool = True,
        bidirectional: bool = True,
        normalization: Normalization = "rank",
        seed: int = 0,
        num_threads: int | None = 1,
    ) -> None:
        if normalization not in ("minmax", "rank"):
            raise ValueError(f"normalization must be 'minmax' or 'rank', got {normalization!r}")
        self.space = space
        self.normalization: Normalization = normalization
        self.vocabulary = op_vocabulary(space)
        self.config = dict(hidden=hidden, layers=layers, head_hidden=head_hidden)
        self.epochs, self.warm_steps = int(epochs), int(warm_steps)
        self.lr, self.batch_size, self.weight_decay = float(lr), int(batch_size), float(weight_decay)
        self.prune, self.seed, self.num_threads = prune, int(seed), num_threads
        self.bidirectional = bool(bidirectional)
        self.network: GCNRegressor | None = None
        self.blr: SingleTaskGP | None = None  # the BLR (see blr_model) on the current network's features
        self._blr_state: dict[str, Tensor] | None = None  # its hyperparameters, to warm-start the next refit
        self._blr_trainings = -1  # the network (by training count) those hyperparameters belong to
        self.mode: Mode = "max"
        self.warp: RankWarp | None = None  # set by fit / update_blr from the values seen
        self.trainings = 0  # how many times the network was trained
        self._run: TrainingRun | None = None  # a training in progress
        self._graphs: dict[Architecture, Data] = {}
        self._dense: dict[Architecture, DenseGraphs] = {}
        try:
            self._pad = space.max_nodes() + 1
        except NotImplementedError:
            self._pad = 0  # grown to the largest graph seen
        self._blr_archs: list[Architecture] = []

    # ---------------------------------------------------------------- helpers
    @property
    def training_run(self) -> "TrainingRun | None":
        """The training in progress (:meth:`start_training`), or ``None``."""
        return self._run

    def threads(self):
        """``torch_threads(num_threads)``: the engine's thread limit for this predictor's work."""
        return torch_threads(self.num_threads)

    def graph(self, arch: Architecture) -> Data:
        """The cached PyG graph of ``arch``."""
        data = self._graphs.get(arch)
        if data is None:
            data = self._graphs[arch] = arch_to_data(self.space, arch, prune=self.prune, bidirectional=self.bidirectional)
        return data

    def batch(self, archs: Sequence[Architecture]) -> DenseGraphs:
        """The dense batch of ``archs`` (per-architecture dense graphs are cached)."""
        dense = []
        for arch in archs:
            item = self._dense.get(arch)
            if item is None:
                data = self.graph(arch)
                if data.num_nodes > self._pad:  # only for spaces without max_nodes()
                    self._pad = int(data.num_nodes)
                    self._dense.clear()
                item = self._dense[arch] = to_dense(data, self._pad)
            dense.append(item)
        if any(d.x.shape[1] != self._pad for d in dense):  # padding grew mid-batch
            return self.batch(archs)
        return stack_dense(dense)

    def new_network(self, seed: int | None = None) -> GCNRegressor:
        """A freshly initialised GCN + regressor of this predictor's sizes (``seed``: default :attr:`seed`)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed if seed is None else seed)
            return GCNRegressor(len(self.vocabulary), **self.config)

    def _orient(self, values: Sequence[float]) -> Tensor:
        v = torch.as_tensor([float(x) for x in values], dtype=torch.float64)
        return v if self.mode == "max" else -v

    def normalize(self, values: Sequence[float]) -> Tensor:
        """Values mode-oriented and mapped to ``[0, 1]`` by the values of the last fit (:func:`target_warp`)."""
        if self.warp is None:
            raise RuntimeError("BONASPredictor.normalize called before fit")
        return self.warp(self._orient(values).reshape(-1, 1))[0].reshape(-1)

    def _check_fitted(self) -> None:
        if self.network is None or self.blr is None or self.warp is None:
            raise RuntimeError("BONASPredictor is not fitted: call fit(archs, values) first")

    # -------------------------------------------------------------- training
    def fit(
        self,
        archs: Sequence[Architecture],
        values: Sequence[float],
        *,
        mode: Mode = "max",
        warm_start: bool = False,
        sample_weight: Sequence[float] | None = None,
    ) -> "BONASPredictor":
        """Train the GCN + regressor on ``(archs, values)``, then fit the BLR on them.

        Args:
            archs, values: the training data (values in the user's units).
            mode: ``"max"`` when larger values are better, ``"min"`` otherwise.
            warm_start: continue from the current weights for ``warm_steps``
                steps (otherwise re-initialise and train for ``epochs`` passes).
            sample_weight: optional per-example factors multiplying the loss weights.
        """
        self.start_training(archs, values, mode=mode, warm_start=warm_start, sample_weight=sample_weight)
        assert self._run is not None
        self.train_steps(self._run.total)
        self.update_blr(archs, values)
        return self

    def start_training(
        self,
        archs: Sequence[Architecture],
        values: Sequence[float],
        *,
        mode: Mode = "max",
        warm_start: bool = False,
        sample_weight: Sequence[float] | None = None,
    ) -> "TrainingRun":
        """Begin a training on ``(archs, values)`` without running it (see :meth:`train_steps`).

        The network in use is untouched until the run finishes, so a training
        can be spread over several calls (BONAS spreads it over the next
        ``k`` suggestions). Replaces a run in progress.
        """
        if len(archs) != len(values) or not archs:
            raise ValueError(f"need as many values as archs (>= 1), got {len(archs)} and {len(values)}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.mode = mode
        oriented = self._orient(values)
        target = target_warp(oriented, self.normalization)(oriented.reshape(-1, 1))[0].reshape(-1).to(torch.float32)
        weight = None if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
        if self.network is None or not warm_start:
            network = self.new_network(self.seed * 7919 + self.trainings)
            steps = self.epochs * math.ceil(len(archs) / min(self.batch_size, len(archs)))
        else:
            network = self.new_network()
            network.load_state_dict(self.network.state_dict())
            steps = self.warm_steps
        self._run = TrainingRun(self, list(archs), target, weight, network, steps,
                                seed=self.seed * 1_000_003 + self.trainings)
        return self._run

    def train_steps(self, steps: int) -> bool:
        """Advance the training run by up to ``steps`` steps; ``True`` when it finished and
        its network replaced the one in use (the BLR must then be refit: :meth:`update_blr`)."""
        if self._run is None:
            raise RuntimeError("no training run in progress: call start_training first")
        with self.threads():
            finished = self._run.step(steps)
        if finished:
            self.network = self._run.network
            self.network.eval()
            self.trainings += 1
            self._run = None
            self.blr = None
        return finished

    def embed(self, archs: Sequence[Architecture]) -> Tensor:
        """BLR features ``φ`` (the regressor's hidden layer), ``[len(archs), head_hidden]`` float64."""
        if self.network is None:
            raise RuntimeError("BONASPredictor.embed called before fit")
        if not archs:
            return torch.zeros((0, self.config["head_hidden"]), dtype=torch.float64)
        with self.threads(), torch.no_grad():
            return self.network.features(self.batch(archs)).to(torch.float64)

    def _fit_blr(self, archs: list[Architecture], target: Tensor) -> None:
        # warm-start α, β from the last refit while the features are the same network's
        start = self._blr_state if self._blr_trainings == self.trainings else None
        self.blr = blr_model(self.embed(archs), target, start=start)
        self._blr_state = {k: v.detach().clone() for k, v in self.blr.state_dict().items()
                           if not k.startswith("prediction_strategy")}
        self._blr_trainings = self.trainings
        self._blr_archs = archs

    def update_blr(
        self,
        archs: Sequence[Architecture],
        values: Sequence[float],
        *,
        renormalize: bool = True,
    ) -> "BONASPredictor":
        """Refit only the BLR (α, β included) on ``(archs, values)`` with the current GCN.

        ``renormalize`` recomputes the normalisation from ``values`` (the GCN
        was trained on the previous scale; the BLR absorbs the change).
        """
        if self.network is None:
            raise RuntimeError("BONASPredictor.update_blr called before fit")
        if len(archs) != len(values) or not archs:
            raise ValueError(f"need as many values as archs (>= 1), got {len(archs)} and {len(values)}")
        if renormalize:
            self.warp = target_warp(self._orient(values), self.normalization)
        self._fit_blr(list(archs), self.normalize(values))
        return self

    # ------------------------------------------------------------ prediction
    def posterior_normalized(self, archs: Sequence[Architecture]) -> tuple[Tensor, Tensor]:
        """BLR predictive ``(mean, variance)`` on the normalised, mode-oriented scale (larger is better).

        The variance is that of an observation, ``φᵀS_Nφ + 1/β`` (paper eq. 5).
        """
        self._check_fitted()
        assert self.blr is not None
        with torch.no_grad(), diagnostics_to_log():
            posterior = self.blr.posterior(self.embed(archs), observation_noise=True)
        return posterior.mean.reshape(-1), posterior.variance.reshape(-1).clamp_min(0.0)

    def predict(self, archs: Sequence[Architecture]) -> tuple[Tensor, Tensor]:
        """Predictive ``(mean, variance)`` of the values of ``archs``, in the units given to :meth:`fit`.

        The normalisation is undone on the mean; the variance is scaled by its
        slope (exact for ``"minmax"``; for ``"rank"`` the delta method with the
        slope taken over the predictive interval, see :meth:`~raynas.bo.outcome.RankWarp.slope`).
        """
        mean, variance = self.posterior_normalized(archs)
        assert self.warp is not None
        mean, variance = self.warp.untransform_mean_variance(mean, variance)
        if self.mode == "min":
            mean = -mean
        return mean, variance

    def acquisition_model(self, pending: Sequence[Architecture] = ()) -> SingleTaskGP:
        """The BLR as a BoTorch model on features ``φ`` (normalised, larger is better).

        ``pending`` architectures are added as kriging-believer fantasies
        (:func:`condition_on_pending`).
        """
        self._check_fitted()
        assert self.blr is not None
        return condition_on_pending(self.blr, self.embed(pending)) if pending else self.blr

    # -------------------------------------------------------- state/transfer
    def state_dict(self) -> dict[str, Any]:
        """Settings, network weights, normalisation and BLR hyperparameters (torch-saveable)."""
        return {
            "format": PREDICTOR_FORMAT,
            "vocabulary": list(self.vocabulary),
            "config": dict(self.config),
            "mode": self.mode,
            "normalization": self.normalization,
            "reference": None if self.warp is None else self.warp.reference.tolist(),
            "trainings": self.trainings,
            "network": None if self.network is None else {
                k: v.detach().clone() for k, v in self.network.state_dict().items()},
            "blr": self._blr_state if self._blr_trainings == self.trainings else None,
            "run": None if self._run is None else self._run.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (same vocabulary and sizes). The BLR is refit by
        :meth:`update_blr`, starting from the saved α and β."""
        if state.get("format") != PREDICTOR_FORMAT:
            raise ValueError(f"not a BONAS predictor state (format {state.get('format')!r})")
        if tuple(state["vocabulary"]) != self.vocabulary or dict(state["config"]) != self.config:
            raise ValueError(
                f"predictor state for vocabulary {state['vocabulary']} and sizes {state['config']} "
                f"does not match {list(self.vocabulary)} and {self.config}"
            )
        self.mode = state["mode"]
        reference = state.get("reference")
        self.warp = None if reference is None else target_warp(reference, state.get("normalization", "minmax"))
        self.trainings = int(state["trainings"])
        if state["network"] is None:
            self.network = None
        else:
            self.network = self.new_network()
            self.network.load_state_dict(state["network"])
            self.network.eval()
        self.blr = None
        blr = state.get("blr")
        self._blr_state = dict(blr) if isinstance(blr, Mapping) else None
        self._blr_trainings = self.trainings if self._blr_state is not None else -1
        run = state.get("run")
        self._run = None if run is None else TrainingRun.from_state(self, run)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return buffer.getvalue()

    def load_bytes(self, blob: bytes) -> None:
        self.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))

    def transfer_from(self, other: "BONASPredictor | Mapping[str, Any]") -> "BONASPredictor":
        """Warm-start this predictor's network from another's (search-space transfer, §4.4.2).

        Copies the GCN and regressor weights of ``other`` (a predictor or its
        :meth:`state_dict`), permuting the first layer's input columns so that
        each op label keeps its weights. Needs the same set of op labels and the
        same network sizes; raises :class:`ValueError` naming the difference
        otherwise. The next :meth:`fit` should use ``warm_start=True``.
        """
        state = other.state_dict() if isinstance(other, BONASPredictor) else other
        if state.get("network") is None:
            raise ValueError("the predictor to transfer from has no trained network")
        source = list(state["vocabulary"])
        if set(source) != set(self.vocabulary) or len(source) != len(self.vocabulary):
            missing = sorted(set(self.vocabulary) - set(source))
            extra = sorted(set(source) - set(self.vocabulary))
            raise ValueError(
                "search-space transfer needs the same operations: "
                f"missing in the source {missing}, not in this space {extra}"
            )
        if dict(state["config"]) != self.config:
            raise ValueError(f"network sizes differ: source {state['config']}, this predictor {self.config}")
        weights = {k: v.clone() for k, v in state["network"].items()}
        first = "gcn.convs.0.lin.weight"
        columns = torch.tensor([source.index(op) for op in self.vocabulary])
        weights[first] = weights[first][:, columns]
        network = self.new_network()
        network.load_state_dict(weights)
        network.eval()
        self.network = network
        return self


class TrainingRun:
    """A training of the GCN + regressor in progress, advanced a slice at a time.

    Adam on mini-batches of ``batch_size`` drawn in shuffled passes; the loss
    is :func:`exponential_weighted_loss` (times optional per-example weights).
    Everything needed to continue it identically is in :meth:`state_dict`.
    """

    def __init__(
        self,
        predictor: BONASPredictor,
        archs: list[Architecture],
        target: Tensor,
        weight: Tensor | None,
        network: GCNRegressor,
        steps: int,
        *,
        seed: int,
    ) -> None:
        self.predictor, self.archs, self.target, self.weight = predictor, archs, target, weight
        self.network = network
        self.optimizer = torch.optim.Adam(network.parameters(), lr=predictor.lr,
                                          weight_decay=predictor.weight_decay)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.total, self.done = int(steps), 0
        self.size = min(predictor.batch_size, len(archs))
        self.order: Tensor | None = None  # the current pass's permutation
        self.position = 0  # next mini-batch start within it
        self._graphs: DenseGraphs | None = None

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def step(self, steps: int) -> bool:
        """Run up to ``steps`` more steps; ``True`` when the run is complete."""
        n = len(self.archs)
        if self._graphs is None:
            self._graphs = self.predictor.batch(self.archs)
        self.network.train()
        for _ in range(max(0, min(int(steps), self.total - self.done))):
            if self.order is None or self.position >= n:
                self.order = torch.randperm(n, generator=self.generator) if self.size < n else torch.arange(n)
                self.position = 0
            rows = self.order[self.position:self.position + self.size]
            self.position += self.size
            prediction = self.network(self._graphs.select(rows))
            loss = exponential_weighted_loss(prediction, self.target[rows],
                                             None if self.weight is None else self.weight[rows])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.done += 1
        self.network.eval()
        return self.finished

    def state_dict(self) -> dict[str, Any]:
        return {
            "archs": [a.to_json() for a in self.archs],
            "target": self.target.clone(),
            "weight": None if self.weight is None else self.weight.clone(),
            "network": {k: v.detach().clone() for k, v in self.network.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "total": self.total,
            "done": self.done,
            "order": None if self.order is None else self.order.clone(),
            "position": self.position,
        }

    @classmethod
    def from_state(cls, predictor: BONASPredictor, state: Mapping[str, Any]) -> "TrainingRun":
        network = predictor.new_network()
        network.load_state_dict(state["network"])
        run = cls(predictor, [Architecture.from_json(a) for a in state["archs"]], state["target"],
                  state["weight"], network, state["total"], seed=0)
        run.optimizer.load_state_dict(state["optimizer"])
        run.generator.set_state(state["generator"])
        run.done, run.position = int(state["done"]), int(state["position"])
        run.order = state["order"]
        return run
