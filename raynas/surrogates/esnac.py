"""ESNAC's learned architecture kernel: an RBF kernel on a bidirectional-LSTM embedding (Cao et al., ICLR 2019, §3.2).

Each architecture is a sequence of layer descriptors
(:meth:`~raynas.spaces.compression.CompressionSpace.descriptors`: type,
kernel, stride, padding, in/out channels, skip connections), turned into
feature vectors by :func:`layer_features`. A bidirectional LSTM reads the
sequence; the embedding is the concatenation of the last forward and the
first backward hidden state. The kernel is GPyTorch's ``RBFKernel`` on that
embedding (:class:`ESNACKernel`), scaled by a ``ScaleKernel``.

**Training** (§3.2, ablation Table 1): the LSTM weights, the RBF lengthscale,
the output scale and the noise maximise the *predictive posterior*
``Σ_i log p(y_i | y_{−i})`` of each point given the others: GPyTorch's
``LeaveOneOutPseudoLikelihood`` on a BoTorch ``SingleTaskGP``, optimised with
Adam (the LSTM has thousands of weights: first-order steps rather than
L-BFGS). Nothing of the GP (Cholesky, likelihood, EI) is hand-written.

**Inputs.** GPyTorch kernels take tensors, architectures are sequences of
different lengths: the GP's inputs are row ids ``(n, 1)`` into a padded
feature table that :meth:`ESNACKernel.set_table` installs (the approach of
:class:`raynas.kernels.otmann.OTMANNKernel`). Each distinct id is embedded
once per kernel call.

**Transfer** (§4.3): :func:`save_kernels` / :func:`load_kernels` keep the
kernels' weights (LSTM, lengthscale, output scale) with their configuration;
the features use only descriptors (log-scaled channel counts), so a kernel
learned for one teacher applies to another teacher's space.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
import torch
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from torch import nn

from raynas.spaces.compression import KINDS, LayerDescriptor

#: Length of one layer's feature vector (see :func:`layer_features`).
FEATURE_DIM = len(KINDS) + 7
KERNELS_FORMAT = "raynas-esnac-kernels/1"


def layer_features(descriptors: Sequence[LayerDescriptor]) -> torch.Tensor:
    """``(L, FEATURE_DIM)`` features: one-hot type, kernel/7, stride/4, padding/3, log2(in+1)/10,
    log2(out+1)/10, number of skips in, log2(1 + total skip distance)/6."""
    rows = []
    for d in descriptors:
        onehot = [0.0] * len(KINDS)
        onehot[KINDS.index(d.kind)] = 1.0
        rows.append(onehot + [
            d.kernel / 7.0, d.stride / 4.0, d.padding / 3.0, math.log2(d.in_channels + 1) / 10.0,
            math.log2(d.out_channels + 1) / 10.0, float(len(d.skips)), math.log2(1 + sum(d.skips)) / 6.0,
        ])
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), FEATURE_DIM)


def pad_sequences(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded ``(N, L_max, F)`` table and the lengths ``(N,)``."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    table = nn.utils.rnn.pad_sequence(list(sequences), batch_first=True)
    return table, lengths


class BiLSTMEmbedding(nn.Module):
    """Layer-feature sequences ``(N, L, F)`` → embeddings ``(N, 2·hidden)`` (last forward ⊕ first backward state)."""

    def __init__(self, feature_dim: int = FEATURE_DIM, hidden: int = 16, num_layers: int = 1) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(feature_dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.double()

    def forward(self, table: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(table, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return torch.cat([h[-2], h[-1]], dim=-1)  # last layer: forward final, backward final (= first step)


class ESNACKernel(Kernel):
    r"""``k(x, x') = exp(−‖e(x) − e(x')‖² / 2ℓ²)`` with ``e`` a :class:`BiLSTMEmbedding` (ESNAC §3.2).

    Inputs are ids ``(..., n, 1)`` into the table of :meth:`set_table`.

    Args:
        hidden: LSTM hidden size per direction (embedding dimension ``2·hidden``).
        num_layers: stacked LSTM layers.
    """

    has_lengthscale = False

    def __init__(self, hidden: int = 16, num_layers: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = {"hidden": int(hidden), "num_layers": int(num_layers)}
        self.embedding = BiLSTMEmbedding(FEATURE_DIM, hidden, num_layers)
        self.rbf = RBFKernel()
        self._table: torch.Tensor | None = None
        self._lengths: torch.Tensor | None = None

    def set_table(self, table: torch.Tensor, lengths: torch.Tensor) -> None:
        """Install the padded feature table that ids index (see :func:`pad_sequences`)."""
        self._table, self._lengths = table.to(torch.float64), lengths

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(..., n, 2·hidden)`` of ids ``(..., n, 1)``."""
        if self._table is None:
            raise RuntimeError("ESNACKernel has no feature table: call set_table() first")
        ids = x[..., 0].round().long()
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        emb = self.embedding(self._table[unique], self._lengths[unique])  # type: ignore[index]
        return emb[inverse].reshape(*ids.shape, emb.shape[-1]).to(x.dtype)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any) -> torch.Tensor:
        e1 = self.embed(x1)
        e2 = e1 if x2 is x1 or (x1.shape == x2.shape and torch.equal(x1, x2)) else self.embed(x2)
        return self.rbf.forward(e1, e2, diag=diag, **params)


def make_kernel(hidden: int = 16, num_layers: int = 1, seed: int | None = None) -> ScaleKernel:
    """A fresh ``ScaleKernel(ESNACKernel)``; ``seed`` fixes the LSTM's initialisation without touching
    the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return ScaleKernel(ESNACKernel(hidden=hidden, num_layers=num_layers)).double()


def _base(covar: ScaleKernel) -> ESNACKernel:
    return covar.base_kernel  # type: ignore[return-value]


def build_gp(covar: ScaleKernel, ids: Sequence[int], y: np.ndarray | torch.Tensor, *, min_noise: float | None = None):
    """A BoTorch ``SingleTaskGP`` on ids with ``covar`` (targets are used as given: standardise them first).

    The likelihood is BoTorch's default: noise ``≥ 1e-4`` with a ``LogNormal(−4, 1)`` prior. Its constraint
    has no transform (the noise *is* the raw parameter, kept in bounds by the optimiser: see
    :func:`project_to_bounds`). ``min_noise`` raises that lower bound (and the initial noise to it if below).
    BoTorch checks only for NaNs here (custom kernel): ids outside the unit cube draw no warning.
    """
    from botorch.models import SingleTaskGP
    from gpytorch.constraints import GreaterThan

    X = torch.as_tensor(np.asarray(ids), dtype=torch.float64).reshape(-1, 1)
    Y = torch.as_tensor(np.asarray(y), dtype=torch.float64).reshape(-1, 1)
    model = SingleTaskGP(X, Y, covar_module=covar, outcome_transform=None)
    if min_noise is not None:
        noise_covar = model.likelihood.noise_covar
        noise_covar.register_constraint("raw_noise", GreaterThan(min_noise, transform=None))
        project_to_bounds(noise_covar)
    return model


def project_to_bounds(module: torch.nn.Module) -> None:
    """Clip every parameter whose GPyTorch constraint has no transform back into the constraint's bounds.

    BoTorch's likelihood declares its noise as ``GreaterThan(1e-4, transform=None)``: the raw parameter is the
    noise, and the bound holds only if the optimiser keeps it (``fit_gpytorch_mll`` hands it to L-BFGS-B as a
    box constraint). A plain Adam step ignores it: from the initial noise ``e^−5 ≈ 0.0067`` one step of
    ``lr = 0.03`` leads to a negative noise, hence a ``LogNormalPrior`` that rejects its value (``ValueError``)
    or ``K + σ²I`` that no jitter makes positive definite (``NotPSDError``). Projecting after each step is
    projected gradient descent on the same box; it changes nothing while the parameters are inside it.
    """
    with torch.no_grad():
        for _, param, constraint in module.named_parameters_and_constraints():  # type: ignore[operator]
            if constraint is None or constraint.enforced:
                continue
            lower = constraint.lower_bound.to(param)
            upper = constraint.upper_bound.to(param)
            param.copy_(torch.minimum(torch.maximum(param, lower), upper))


def fit_kernel(
    covar: ScaleKernel,
    table: torch.Tensor,
    lengths: torch.Tensor,
    ids: Sequence[int],
    y: np.ndarray,
    *,
    iters: int = 60,
    lr: float = 0.02,
    train_embedding: bool = True,
    min_noise: float | None = None,
):
    """Learn the kernel on ``(ids, y)`` by maximising the leave-one-out predictive log-likelihood.

    ``y`` should be standardised. With ``train_embedding=False`` the LSTM and the lengthscale stay fixed
    and only the output scale, noise and mean are learned (transferred kernels, and the untrained-embedding
    baseline of the tests). ``min_noise`` raises the noise's lower bound (default BoTorch's ``1e-4``), a
    safer setting for a retry. Adam's steps are projected onto the parameters' untransformed bounds
    (:func:`project_to_bounds`). Returns the fitted GP in eval mode.

    Raises:
        botorch.exceptions.ModelFittingError: the loss or a parameter became NaN or infinite.
        linear_operator.utils.errors.NotPSDError: the covariance could not be factorised.
    """
    from botorch.exceptions.errors import ModelFittingError
    from gpytorch.mlls import LeaveOneOutPseudoLikelihood

    _base(covar).set_table(table, lengths)
    model = build_gp(covar, ids, y, min_noise=min_noise)
    frozen = {id(p) for p in _base(covar).parameters()} if not train_embedding else set()
    params = [p for p in model.parameters() if id(p) not in frozen]
    if iters > 0 and params:
        mll = LeaveOneOutPseudoLikelihood(model.likelihood, model)
        optimizer = torch.optim.Adam(params, lr=lr)
        model.train()
        for it in range(iters):
            optimizer.zero_grad()
            loss = -mll(model(*model.train_inputs), model.train_targets)
            if not torch.isfinite(loss):
                raise ModelFittingError(f"ESNAC kernel fit: the loss is {loss.item()} at Adam iteration {it}")
            loss.backward()
            optimizer.step()
            project_to_bounds(model)
            if not all(bool(torch.isfinite(p).all()) for p in params):
                raise ModelFittingError(f"ESNAC kernel fit: a parameter is not finite after Adam iteration {it}")
    model.eval()
    return model


@torch.no_grad()
def heldout_log_likelihood(model, ids: Sequence[int], y: np.ndarray) -> float:
    """Mean log predictive density of held-out points ``(ids, y)`` (noise included) under ``model``."""
    X = torch.as_tensor(np.asarray(ids), dtype=torch.float64).reshape(-1, 1)
    Y = torch.as_tensor(np.asarray(y), dtype=torch.float64).reshape(-1)
    model.eval()
    predictive = model.likelihood(model(X))
    return float(predictive.log_prob(Y)) / len(Y)


def save_kernels(path: str | os.PathLike, kernels: Sequence[ScaleKernel]) -> None:
    """Write learned kernels (weights and configuration) to one file, for transfer to another search."""
    payload = {
        "format": KERNELS_FORMAT,
        "feature_dim": FEATURE_DIM,
        "kernels": [{"config": dict(_base(k).config), "state": k.state_dict()} for k in kernels],
    }
    torch.save(payload, os.fspath(path))


def load_kernels(path: str | os.PathLike) -> list[ScaleKernel]:
    """Kernels written by :func:`save_kernels` (a clear error for other files)."""
    payload = torch.load(os.fspath(path), weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != KERNELS_FORMAT:
        raise ValueError(f"{path} is not an ESNAC kernels file (format {KERNELS_FORMAT!r})")
    if payload["feature_dim"] != FEATURE_DIM:
        raise ValueError(f"{path} has kernels for {payload['feature_dim']} features, this raynas uses {FEATURE_DIM}")
    kernels = []
    for entry in payload["kernels"]:
        kernel = make_kernel(**entry["config"])
        kernel.load_state_dict(entry["state"])
        kernels.append(kernel)
    return kernels
