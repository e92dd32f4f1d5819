"""OTMANN: pseudo-distance properties, growth with edits, the cache, and the GP kernel."""

import numpy as np
import pytest
import torch

from raynas.bo.threads import torch_threads
from raynas.kernels.otmann import OTMANN, OTMANNDistances, OTMANNKernel, label_cost, project_psd
from raynas.spaces import NB201Space
from raynas.spaces.layer_graph import layer_graph
from raynas.spaces.macro import MacroCNNSpace, MacroMLPSpace

NB201 = NB201Space()
CNN = MacroCNNSpace()


def random_walk(space, arch, steps, rng):
    for _ in range(steps):
        arch = space.mutate(arch, rng)
    return arch


@pytest.mark.parametrize("space", [NB201, CNN, MacroMLPSpace()], ids=["nb201", "cnn", "mlp"])
def test_zero_on_identical_symmetric_and_triangle(space):
    rng = np.random.default_rng(0)
    otmann = OTMANN()
    graphs = [layer_graph(space, space.sample(rng)) for _ in range(12)]
    for g in graphs:
        assert otmann(g, g) == (0.0, 0.0)
    d = np.array([[otmann(a, b)[0] for b in graphs] for a in graphs])
    dn = np.array([[otmann(a, b)[1] for b in graphs] for a in graphs])
    assert np.allclose(d, d.T)
    assert ((dn >= 0) & (dn <= 1 + 1e-9)).all()
    # pseudo-distance (the paper's Theorem 1): triangle inequality
    assert (d[:, None, :] <= d[:, :, None] + d[None, :, :] + 1e-6).all()  # d_ik <= d_ij + d_jk


def test_isomorphic_cells_are_at_distance_zero():
    # node 1 is fed only by 'none': edge 1->2 and 1->3 are dead whatever they hold
    a = NB201.make(("none", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"))
    b = NB201.make(("none", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "skip_connect", "nor_conv_3x3"))
    assert OTMANN()(layer_graph(NB201, a), layer_graph(NB201, b)) == (0.0, 0.0)


@pytest.mark.parametrize("space", [NB201, CNN], ids=["nb201", "cnn"])
def test_distance_grows_with_edits(space):
    rng = np.random.default_rng(1)
    otmann = OTMANN()
    one, three = [], []
    for _ in range(30):
        arch = space.sample(rng)
        g = layer_graph(space, arch)
        one.append(otmann(g, layer_graph(space, random_walk(space, arch, 1, rng))))
        three.append(otmann(g, layer_graph(space, random_walk(space, arch, 3, rng))))
    # on average, for the normalised distance (d itself is dominated by a few huge layers on CNNs)
    assert np.mean([x[1] for x in one]) < np.mean([x[1] for x in three])
    if space is NB201:
        assert np.mean([x[0] for x in one]) < np.mean([x[0] for x in three])


def test_label_costs():
    assert label_cost("conv3", "conv5") == pytest.approx(0.2) and label_cost("conv3", "conv7") == pytest.approx(0.3)
    assert label_cost("conv3", "res3") == pytest.approx(0.1)
    assert label_cost("max-pool", "avg-pool") == 0.25 and label_cost("relu", "crelu") == 0.1
    assert label_cost("relu", "tanh") == 0.25 and label_cost("k=3", "k=5") == 0.5
    assert label_cost("conv3", "max-pool") >= 2 and label_cost("ip", "op") >= 2 and label_cost("k=3", "e=3") >= 2


def test_non_assignment_of_unmatchable_layers():
    """A conv and a pool never match: each one's whole mass is left unassigned (cost 1 per unit)."""
    a = CNN.make(["conv3:8", "fc:8", "softmax"])
    b = CNN.make(["conv3:8", "max-pool", "fc:8", "softmax"])
    ga, gb = layer_graph(CNN, a), layer_graph(CNN, b)
    d, dn = OTMANN(nu_str=0.0)(ga, gb)
    assert d >= gb.masses[2] - 1e-9  # at least the max-pool's mass is unmatched
    assert dn == pytest.approx(d / (ga.total_mass + gb.total_mass))


def test_cache_solves_each_pair_once_and_matches_direct_computation():
    rng = np.random.default_rng(2)
    archs = [NB201.sample(rng) for _ in range(30)]
    distances = OTMANNDistances(NB201)
    ids = distances.add_all(archs)
    d, dn = distances.matrices(ids[:20], ids[10:])
    solved = distances.pairs_solved
    d2, _ = distances.matrices(ids[10:], ids[:20])
    assert distances.pairs_solved == solved and np.array_equal(d, d2.T)
    direct = OTMANN()
    for i, j in [(0, 0), (3, 7), (19, 19)]:
        expected = direct(layer_graph(NB201, archs[i]), layer_graph(NB201, archs[10 + j]))
        assert (d[i, j], dn[i, j]) == pytest.approx(expected)


def kernel_matrix(space, n, seed, beta, project):
    rng = np.random.default_rng(seed)
    distances = OTMANNDistances(space)
    ids = distances.add_all(space.sample(rng) for _ in range(n))
    kernel = OTMANNKernel(distances, project=project)
    kernel.set_scales(ids)
    kernel._set("beta", beta)
    kernel._set("beta_bar", beta)
    x = torch.as_tensor(ids, dtype=torch.float64)[:, None]
    with torch.no_grad():
        return kernel(x, x).to_dense().numpy()


def test_raw_kernel_is_not_psd_so_the_training_matrix_is_projected():
    raw = kernel_matrix(NB201, 100, 3, beta=1.0, project=False)
    assert np.linalg.eigvalsh(raw)[0] < -1e-3  # measured: OTMANN's exp(-beta d) is indefinite
    for space in (NB201, CNN):
        for beta in (0.3, 1.0, 3.0):
            projected = kernel_matrix(space, 40, 4, beta=beta, project=True)
            assert np.allclose(projected, projected.T)
            assert np.linalg.eigvalsh(projected)[0] > -1e-9


def test_projection_gradient_is_finite_for_repeated_eigenvalues():
    a = torch.randn(5, 5, dtype=torch.float64)
    sym = (a + a.T) / 2
    assert torch.autograd.gradcheck(project_psd, (sym.requires_grad_(),))
    repeated = torch.ones(4, 4, dtype=torch.float64, requires_grad=True)  # eigenvalues 4, 0, 0, 0
    project_psd(repeated - 0.5 * torch.eye(4, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(repeated.grad).all()


def test_kernel_hyperparameters_fit_by_marginal_likelihood():
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    rng = np.random.default_rng(5)
    archs = list(dict.fromkeys(NB201.sample(rng) for _ in range(40)))
    y = torch.tensor([[sum(op == "nor_conv_3x3" for op in a.ops) + 0.5 * (a.ops[3] == "skip_connect")]
                      for a in archs], dtype=torch.float64)
    distances = OTMANNDistances(NB201)
    ids = distances.add_all(archs)
    kernel = OTMANNKernel(distances)
    kernel.set_scales(ids)
    x = torch.as_tensor(ids, dtype=torch.float64)[:, None]
    model = SingleTaskGP(x, y, covar_module=kernel, outcome_transform=Standardize(m=1))
    with torch_threads(1):  # small matrices: threads only add contention
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    for value in (kernel.alpha, kernel.beta, kernel.alpha_bar, kernel.beta_bar):
        assert value.item() > 0
    model.eval()
    with torch.no_grad():
        mean = model.posterior(x).mean.squeeze()
    assert np.corrcoef(mean.numpy(), y.squeeze().numpy())[0, 1] > 0.9
