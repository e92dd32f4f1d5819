"""The GP-NAS surrogate: Theorems 1-3 against independent numpy, predictions, pending points."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from raynas.spaces import NB201Space
from raynas.spaces.mobilenet import mobilenet_block_space
from raynas.surrogates.gpnas import GPNASModel, NotFittedError

WEIGHT = {"none": 0.0, "skip_connect": 1.0, "nor_conv_1x1": 2.0, "nor_conv_3x3": 3.0, "avg_pool_3x3": 1.5}


def synthetic(arch):
    """The conftest table's objective plus an interaction, so the residual GP has work to do."""
    score = sum(WEIGHT[op] * (1 + 0.1 * k) for k, op in enumerate(arch.ops))
    return 50.0 + 2.0 * score + 3.0 * (arch.ops[0] == arch.ops[5] == "nor_conv_3x3")


def distinct_archs(space, n, seed):
    rng, archs = np.random.default_rng(seed), {}
    while len(archs) < n:
        archs[space.sample(rng)] = None
    return list(archs)


@pytest.fixture(autouse=True)
def one_thread():
    """Small matrices: extra threads only oversubscribe a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def nb201_data():
    space = NB201Space()
    archs = distinct_archs(space, 260, seed=0)
    return space, archs, np.array([synthetic(a) for a in archs])


def numpy_grouped_kernel(X, masks, sigma2):
    X = X.numpy()
    K = np.zeros((len(X), len(X)))
    for mask, s2 in zip(masks.numpy(), sigma2):
        diff = X[:, None, mask] - X[None, :, mask]
        K += s2 * np.exp(-(diff**2).sum(-1))
    return K


@pytest.mark.parametrize("method", ["marginal", "aea"])
def test_weight_posterior_matches_theorems_1_and_2(method):
    space = mobilenet_block_space(3)
    archs = distinct_archs(space, 25, seed=1)
    rng = np.random.default_rng(2)
    values = [float(sum(float(op) for op in a.ops[0::3]) + rng.normal(0, 0.3)) for a in archs]
    model = GPNASModel(space, method=method, aea_rounds=2).fit(archs, values)
    mean, cov = model.weight_posterior()

    # Independent closed form, standardised units: prior w ~ N(0, v I), K = grouped kernel + noise.
    Phi = model.encode(archs).numpy()
    x = model.standardise(values) - float(model.gp.mean_module.constant.item())
    sigma2 = np.array(list(model.group_scales.values()))
    K = numpy_grouped_kernel(model.encode(archs), model.encoding.masks, sigma2) + model.noise * np.eye(len(archs))
    v = model.weight_prior_variance
    Sigma_w, mu_w = v * np.eye(Phi.shape[1]), np.zeros(Phi.shape[1])
    mu_hat = mu_w + Sigma_w @ Phi.T @ np.linalg.solve(K + Phi @ Sigma_w @ Phi.T, x - Phi @ mu_w)  # eq. 23
    Sigma_hat = np.linalg.inv(Phi.T @ np.linalg.solve(K, Phi) + np.linalg.inv(Sigma_w))  # eq. 29
    np.testing.assert_allclose(mean.numpy(), mu_hat, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cov.numpy(), Sigma_hat, rtol=1e-5, atol=1e-7)
    # eq. 27 = 0: the posterior mean is the MAP of eq. 25
    grad = Phi.T @ np.linalg.solve(K, x - Phi @ mu_hat) - np.linalg.solve(Sigma_w, mu_hat - mu_w)
    assert np.abs(grad).max() < 1e-6 * max(1.0, np.abs(Phi.T @ x).max())

    # eq. 10 with m(s) = μ̂_wᵀ s: the GP's prediction is the linear mean plus the kriged residual
    test = distinct_archs(space, 8, seed=9)
    Phi_t = model.encode(test).numpy()
    both = model.encode(test + archs)
    K_all = numpy_grouped_kernel(both, model.encoding.masks, sigma2)
    K_ts = K_all[: len(test), len(test):]
    expected = Phi_t @ mu_hat + K_ts @ np.linalg.solve(K, x - Phi @ mu_hat)
    mean_t, _, _ = model.mean_variance(model.encode(test))
    np.testing.assert_allclose(mean_t.numpy() - float(model.gp.mean_module.constant.item()), expected, atol=1e-6)

    # eq. 35 literally
    mse = model.expected_mse_matrix(test).numpy() / model._y_std**2
    K_tt = K_all[: len(test), : len(test)] + model.noise * np.eye(len(test))
    np.testing.assert_allclose(mse, Phi_t @ Sigma_hat @ Phi_t.T + K_tt, atol=1e-6)


def test_expected_mse_decreases_as_data_grows(nb201_data):
    space, archs, values = nb201_data
    reference = archs[200:]
    model = GPNASModel(space).fit(archs[:10], values[:10])
    weight_traces, mses = [], []
    for n in (10, 20, 40, 80, 160):  # hyperparameters held: nested data can only shrink the posterior
        model.fit(archs[:n], values[:n], refit=False)
        weight_traces.append(float(model.weight_posterior()[1].trace()))
        mses.append(model.expected_mse(reference))
    assert all(a > b for a, b in zip(weight_traces, weight_traces[1:]))
    assert all(a > b for a, b in zip(mses, mses[1:]))
    small = GPNASModel(space).fit(archs[:10], values[:10]).expected_mse(reference)
    large = GPNASModel(space).fit(archs[:120], values[:120]).expected_mse(reference)
    assert large < 0.5 * small


def test_predicts_held_out_cells_with_positive_rank_correlation(nb201_data):
    space, archs, values = nb201_data
    model = GPNASModel(space).fit(archs[:60], values[:60])
    mean, variance = model.predict(archs[60:])
    assert spearmanr(mean, values[60:]).correlation > 0.8
    assert (variance > 0).all()
    assert abs(np.mean(mean) - np.mean(values[60:])) < np.std(values)  # objective units


def test_fast_posterior_path_matches_botorch_posterior(nb201_data):
    space, archs, values = nb201_data
    model = GPNASModel(space, learn_lengthscale=True).fit(archs[:40], values[:40])
    X = model.encode(archs[40:70])
    mean, variance, cross = model.mean_variance(X)
    posterior = model.gp.posterior(X)
    assert torch.allclose(mean, posterior.mean.squeeze(-1), atol=1e-8)
    assert torch.allclose(variance, posterior.variance.squeeze(-1), atol=1e-8)
    # a cached prefix of the cross covariance gives the same answer
    again = model.mean_variance(X, cross[:, :25])
    assert torch.allclose(again[1], variance) and again[2].shape == cross.shape


def test_pending_points_are_kriging_believers(nb201_data):
    space, archs, values = nb201_data
    model = GPNASModel(space).fit(archs[:30], values[:30])
    pending = archs[30:33]
    X = model.encode(pending + archs[33:40])
    mean, variance, _ = model.mean_variance(X)
    believer = model.condition_on_pending(pending)
    mean_b, variance_b, _ = believer.mean_variance(X)
    assert torch.allclose(mean_b[:3], mean[:3], atol=1e-6)  # believed at their posterior mean
    assert (variance_b[:3] < variance[:3]).all() and (variance_b[:3] <= model.noise).all()  # no longer uncertain
    assert (variance_b <= variance + 1e-9).all()
    posterior = believer.gp.posterior(X)
    assert torch.allclose(variance_b, posterior.variance.squeeze(-1), atol=1e-8)
    assert model.num_pending == 0 and believer.num_pending == 3


def test_refit_false_keeps_hyperparameters_and_errors(nb201_data):
    space, archs, values = nb201_data
    with pytest.raises(NotFittedError):
        GPNASModel(space).predict(archs[:2])
    with pytest.raises(ValueError, match="method must be"):
        GPNASModel(space, method="em")
    model = GPNASModel(space).fit(archs[:20], values[:20])
    scales, version = model.group_scales, model.version
    model.fit(archs[:30], values[:30], refit=False)
    assert model.group_scales == scales and model.version == version and model.num_train == 30
    model.fit(archs[:30], values[:30])
    assert model.version == version + 1
