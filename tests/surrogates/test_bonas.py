"""The BONAS surrogate: graph encoding, GCN, exponentially weighted loss, BLR, EI and the predictor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm, spearmanr

from raynas.spaces import NB101Space, NB201_OPS, NB201Space
from raynas.spaces.positional import PositionalSpace
from raynas.surrogates.bonas import (
    blr_model,
    blr_precisions,
    condition_on_pending,
    BONASPredictor,
    GCNEmbedding,
    exponential_weighted_loss,
)
from raynas.surrogates.graph_encoding import (
    GLOBAL_OP,
    arch_to_data,
    batch_graphs,
    dense_from_batch,
    op_vocabulary,
    stack_dense,
    to_dense,
)

WEIGHT = {"none": 0.0, "skip_connect": 1.0, "nor_conv_1x1": 2.0, "nor_conv_3x3": 3.0, "avg_pool_3x3": 1.5}


def synthetic_value(arch) -> float:
    """The objective of the synthetic NB201 table in tests/conftest.py (without its jitter)."""
    return 50.0 + 2.0 * sum(WEIGHT[op] * (1 + 0.1 * k) for k, op in enumerate(arch.ops))


def edges(data) -> set[tuple[int, int]]:
    return {(int(u), int(v)) for u, v in data.edge_index.t()}


# ------------------------------------------------------------------ encoding
def test_nb201_cell_graph_has_a_global_node_connected_to_every_node():
    space = NB201Space()
    arch = space.make(("nor_conv_3x3", "nor_conv_1x1", "none", "skip_connect", "avg_pool_3x3", "nor_conv_3x3"))
    data = arch_to_data(space, arch)
    vocabulary = op_vocabulary(space)
    assert vocabulary == ("input", *NB201_OPS, "output", "global")
    # 8 cell nodes (input, one per edge, output) + the global node
    assert data.num_nodes == 9 and data.x.shape == (9, len(vocabulary))
    assert torch.equal(data.x.sum(1), torch.ones(9))  # one-hot rows
    labels = [vocabulary[int(i)] for i in data.x.argmax(1)]
    assert labels == ["input", *arch.ops, "output", GLOBAL_OP]
    # the cell's 10 directed data-flow edges, unchanged (not symmetrised) ...
    cell = {(u, v) for u, v in space.to_graph(arch).edges}
    assert len(cell) == 10 and cell <= edges(data)
    assert not any((v, u) in edges(data) for u, v in cell)
    # ... plus every node -> global
    assert edges(data) - cell == {(k, 8) for k in range(8)}
    assert data.edge_index.shape == (2, 18)


def test_variable_size_and_positional_graphs():
    nb101 = NB101Space()
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = nb101.sample(rng)
        data = arch_to_data(nb101, arch)
        n = len(arch.ops)
        assert data.num_nodes == n + 1
        assert {(k, n) for k in range(n)} <= edges(data)
        assert len(edges(data)) == sum(map(sum, arch.matrix)) + n
    positional = PositionalSpace({"k": ["3", "5"], "se": ["on", "off"]}, name="tiny")
    data = arch_to_data(positional, positional.sample(rng))
    assert data.num_nodes == 5  # input, two positions, output, global
    assert edges(data) == {(0, 1), (1, 2), (2, 3), (0, 4), (1, 4), (2, 4), (3, 4)}


def test_pruned_encoding_of_a_disconnected_cell():
    space = NB201Space()
    data = arch_to_data(space, space.make(("none",) * 6), prune=True)
    assert data.num_nodes == 3 and edges(data) == {(0, 2), (1, 2)}  # input, output, global only


def test_dense_layout_matches_the_batch():
    space = NB101Space()
    rng = np.random.default_rng(1)
    graphs = [arch_to_data(space, space.sample(rng)) for _ in range(5)]
    dense = stack_dense([to_dense(g, space.max_nodes() + 1) for g in graphs])
    from_batch = dense_from_batch(batch_graphs(graphs))
    width = from_batch.x.shape[1]
    assert torch.equal(dense.readout, from_batch.readout)
    assert torch.equal(dense.x[:, :width], from_batch.x)
    assert torch.equal(dense.adj[:, :width, :width], from_batch.adj)
    # row i of adj lists the predecessors of node i: the global node aggregates every node
    for k, g in enumerate(graphs):
        n = g.num_nodes
        assert dense.adj[k, n - 1, : n - 1].sum() == n - 1


# ----------------------------------------------------------------------- GCN
def test_gcn_embedding_is_invariant_to_node_order():
    space = NB101Space()
    arch = space.sample(np.random.default_rng(2))
    data = arch_to_data(space, arch)
    torch.manual_seed(0)
    gcn = GCNEmbedding(data.x.shape[1], hidden=16, layers=3)
    n = data.num_nodes
    perm = torch.randperm(n - 1).tolist() + [n - 1]  # shuffle cell nodes, keep the global node last
    inverse = torch.empty(n, dtype=torch.long)
    inverse[torch.tensor(perm)] = torch.arange(n)
    permuted = data.clone()
    permuted.x = data.x[torch.tensor(perm)]
    permuted.edge_index = inverse[data.edge_index]
    with torch.no_grad():
        a = gcn(to_dense(data, n))
        b = gcn(to_dense(permuted, n))
    assert torch.allclose(a, b, atol=1e-6)


def test_isomorphic_nb201_cells_get_equal_embeddings_only_when_pruned():
    """The pair of tests/spaces/test_nb201.py: nodes 1 and 2 of the cell are interchangeable.

    A GCN is permutation invariant, so isomorphic *input graphs* give equal
    embeddings even untrained. The pruned graphs are isomorphic; the full
    8-node graphs are not (the ``none`` edge 1->2 stays a node whose
    predecessor is the conv in one cell and the pool in the other), so there
    the untrained GCN tells the two cells apart.
    """
    space = NB201Space()
    a = space.make(("nor_conv_3x3", "avg_pool_3x3", "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"))
    b = space.make(("avg_pool_3x3", "nor_conv_3x3", "none", "skip_connect", "nor_conv_3x3", "nor_conv_1x1"))
    assert space.is_isomorphic(a, b)
    for prune, equal in ((True, True), (False, False)):
        predictor = BONASPredictor(space, hidden=32, layers=4, prune=prune, seed=0)
        predictor.network = predictor.new_network()
        with torch.no_grad():
            emb = predictor.network.gcn(predictor.batch([a, b]))
        assert torch.allclose(emb[0], emb[1], atol=1e-6) is equal


# ---------------------------------------------------------------------- loss
def test_exponential_weighted_loss_by_hand():
    prediction = torch.tensor([0.2, 0.7, 0.9])
    target = torch.tensor([0.0, 0.5, 1.0])
    by_hand = (0.0 * 0.04 + (math.exp(0.5) - 1) * 0.04 + (math.e - 1) * 0.01) / (3 * (math.e - 1))
    assert exponential_weighted_loss(prediction, target).item() == pytest.approx(by_hand, rel=1e-6)
    # the worst architecture (target 0) does not count at all
    assert exponential_weighted_loss(torch.tensor([5.0]), torch.tensor([0.0])).item() == 0.0


# ----------------------------------------------------------------------- BLR
def _blr_data(n=30, m=5, seed=0):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n, m))
    t = phi @ rng.normal(size=m) + 0.3 + 0.1 * rng.normal(size=n)
    return phi, t


def _set_blr(model, alpha, beta, bias):
    model.covar_module.variance = 1.0 / alpha
    model.likelihood.noise = 1.0 / beta
    model.mean_module.constant.data.fill_(bias)
    model.eval()
    return model


def test_blr_posterior_matches_the_closed_form():
    phi, t = _blr_data()
    alpha, beta = 2.0, 50.0
    blr = _set_blr(blr_model(torch.tensor(phi), torch.tensor(t), fit=False), alpha, beta, t.mean())
    assert blr_precisions(blr) == pytest.approx((alpha, beta))
    # Bishop 3.53-3.54 and 3.59 (paper eqs. 4-5) on the centred targets, in numpy
    tc = t - t.mean()
    S_N = np.linalg.inv(alpha * np.eye(phi.shape[1]) + beta * phi.T @ phi)
    m_N = beta * S_N @ phi.T @ tc
    query = torch.tensor(np.random.default_rng(1).normal(size=(7, phi.shape[1])))
    with torch.no_grad():
        predictive = blr.posterior(query, observation_noise=True)
        latent = blr.posterior(query, observation_noise=False)
    np.testing.assert_allclose(predictive.mean.reshape(-1).numpy(), query.numpy() @ m_N + t.mean(), rtol=1e-7)
    closed = np.einsum("ij,jk,ik->i", query.numpy(), S_N, query.numpy())
    np.testing.assert_allclose(predictive.variance.reshape(-1).numpy(), closed + 1 / beta, rtol=1e-6)
    np.testing.assert_allclose(latent.variance.reshape(-1).numpy(), closed, rtol=1e-6)


def test_blr_evidence_is_the_gaussian_marginal_and_is_maximised():
    from gpytorch.mlls import ExactMarginalLogLikelihood

    phi, t = _blr_data(n=40, m=6, seed=3)
    blr = blr_model(torch.tensor(phi), torch.tensor(t))
    (alpha, beta), bias = blr_precisions(blr), float(blr.mean_module.constant)

    def log_evidence(a, b, c=bias):  # t ~ N(c, ΦΦᵀ/α + I/β), computed directly
        tc = t - c
        cov = phi @ phi.T / a + np.eye(len(t)) / b
        sign, logdet = np.linalg.slogdet(cov)
        return -0.5 * (tc @ np.linalg.solve(cov, tc) + logdet + len(t) * math.log(2 * math.pi))

    blr.train()
    mll = ExactMarginalLogLikelihood(blr.likelihood, blr)
    with torch.no_grad():
        value = float(mll(blr(*blr.train_inputs), blr.train_targets)) * len(t)
    assert value == pytest.approx(log_evidence(alpha, beta), rel=1e-6)
    best = log_evidence(alpha, beta)
    assert bias == pytest.approx(t.mean())  # BLR on centred targets: the bias is not fitted
    for fa, fb in ((1.3, 1), (0.7, 1), (1, 1.3), (1, 0.7)):
        assert log_evidence(alpha * fa, beta * fb) < best
    # the true noise precision is 100; the evidence estimate is close
    assert 40 < beta < 250


def test_kriging_believer_keeps_means_and_shrinks_variance():
    phi, t = _blr_data()
    blr = blr_model(torch.tensor(phi), torch.tensor(t))
    pending = torch.tensor(np.random.default_rng(5).normal(size=(3, phi.shape[1])))
    conditioned = condition_on_pending(blr, pending)
    assert blr_precisions(conditioned) == pytest.approx(blr_precisions(blr))
    query = torch.cat([pending, torch.tensor(np.random.default_rng(6).normal(size=(4, phi.shape[1])))])
    with torch.no_grad():
        p0, p1 = blr.posterior(query), conditioned.posterior(query)
    assert torch.allclose(p0.mean, p1.mean, atol=1e-8)
    v0, v1 = p0.variance.reshape(-1), p1.variance.reshape(-1)
    assert (v1 <= v0 + 1e-12).all() and (v1[:3] < v0[:3]).all()


@pytest.mark.filterwarnings("ignore::botorch.exceptions.warnings.NumericsWarning")
def test_botorch_expected_improvement_matches_the_blr_posterior():
    from botorch.acquisition.analytic import ExpectedImprovement, LogExpectedImprovement

    phi, t = _blr_data()
    blr = blr_model(torch.tensor(phi), torch.tensor(t))
    query = torch.tensor(phi[:8] + 0.5 * np.random.default_rng(7).normal(size=(8, phi.shape[1])))
    with torch.no_grad():
        posterior = blr.posterior(query)
    mean, sigma = posterior.mean.reshape(-1).numpy(), posterior.variance.reshape(-1).sqrt().numpy()
    best_f = float(np.median(t))
    gamma = (mean - best_f) / sigma
    closed_form = sigma * (gamma * norm.cdf(gamma) + norm.pdf(gamma))  # paper eq. 2
    with torch.no_grad():
        ei = ExpectedImprovement(blr, best_f=best_f)(query.unsqueeze(-2))
        log_ei = LogExpectedImprovement(blr, best_f=best_f)(query.unsqueeze(-2))
    np.testing.assert_allclose(ei.numpy(), closed_form, rtol=1e-4)  # 1e-4: far tails (EI ~ 1e-49)
    np.testing.assert_allclose(log_ei.exp().numpy(), closed_form, rtol=1e-4)
    assert closed_form.min() < 1e-3 < 0.1 < closed_form.max()  # from negligible to large EI


# ----------------------------------------------------------------- predictor
def _split(n_train, n_test, seed=0):
    space = NB201Space()
    everything = list(space.enumerate())
    order = np.random.default_rng(seed).permutation(len(everything))
    train = [everything[i] for i in order[:n_train]]
    test = [everything[i] for i in order[n_train:n_train + n_test]]
    return space, train, test


def test_predictor_learns_held_out_cells():
    space, train, test = _split(80, 300)
    truth = [synthetic_value(a) for a in test]
    # the synthetic objective scores every edge, dead ones included: encode the unpruned cell
    settings = dict(hidden=32, head_hidden=32, epochs=300, prune=False, seed=0)
    predictor = BONASPredictor(space, **settings)
    predictor.network = predictor.new_network()
    with torch.no_grad():
        untrained = predictor.network(predictor.batch(test)).numpy()
    predictor.fit(train, [synthetic_value(a) for a in train])
    mean, variance = predictor.predict(test)
    before, after = spearmanr(untrained, truth)[0], spearmanr(mean.numpy(), truth)[0]
    assert after > 0.95 and after > before + 0.05
    assert (variance > 0).all() and mean.dtype == torch.float64
    # mode="min": the same fit on negated values predicts the negated values
    flipped = BONASPredictor(space, **settings)
    flipped.fit(train, [-synthetic_value(a) for a in train], mode="min")
    assert torch.allclose(flipped.predict(test)[0], -mean, atol=1e-3)


def test_predictor_state_round_trip_and_search_space_transfer():
    space, train, test = _split(40, 20, seed=1)
    values = [synthetic_value(a) for a in train]
    predictor = BONASPredictor(space, hidden=16, layers=2, head_hidden=16, epochs=30, seed=0).fit(train, values)
    copy = BONASPredictor(space, hidden=16, layers=2, head_hidden=16, seed=9)
    copy.load_bytes(predictor.to_bytes())
    copy.update_blr(train, values)
    for x, y in zip(predictor.predict(test), copy.predict(test)):
        assert torch.allclose(x, y)
    # transfer to a space with the same ops in another order: each op keeps its weights
    reordered = NB201Space(ops=tuple(reversed(NB201_OPS)))
    moved = [reordered.make(a.ops) for a in test]
    target = BONASPredictor(reordered, hidden=16, layers=2, head_hidden=16).transfer_from(predictor)
    with torch.no_grad():
        assert torch.allclose(target.network(target.batch(moved)), predictor.network(predictor.batch(test)), atol=1e-6)
    with pytest.raises(ValueError, match="same operations"):
        BONASPredictor(NB101Space(), hidden=16, layers=2, head_hidden=16).transfer_from(predictor)
    with pytest.raises(ValueError, match="network sizes differ"):
        BONASPredictor(reordered, hidden=8, layers=2, head_hidden=16).transfer_from(predictor)
