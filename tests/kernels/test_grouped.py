"""The grouped GP-NAS kernel (eq. 7), its encodings and the MobileNet block space."""

import numpy as np
import pytest
import torch

from raynas.kernels.grouped import (
    GroupedKernel,
    gpnas_encoding,
    group_names,
    grouped_encoding,
    groups,
)
from raynas.spaces import NB201Space
from raynas.spaces.mobilenet import OPERATION_GROUPS, mobilenet_block_space
from raynas.spaces.positional import PositionalSpace

SPACES = {"nb201": NB201Space, "mobilenet": mobilenet_block_space}


def random_archs(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_mobilenet_space_size_sampling_and_mutation():
    space = mobilenet_block_space()
    assert space.name == "mobilenet" and space.size == 12**14
    assert len(space.position_names) == 42
    assert {g: len(p) for g, p in space.position_groups.items()} == {"kernel": 14, "expansion": 14, "se": 14}
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.is_valid(arch)
        child = space.mutate(arch, rng)
        assert space.is_valid(child) and sum(a != b for a, b in zip(arch.ops, child.ops)) == 1
    assert len(space.neighbours(arch)) == 14 * (2 + 1 + 1)
    assert space.block(arch, 3) == dict(zip(OPERATION_GROUPS, arch.ops[9:12]))
    assert mobilenet_block_space(2).size == 144


def test_mobilenet_encoding_groups_by_operation_type():
    space = mobilenet_block_space(3)
    assert group_names(space) == ["kernel", "expansion", "se"]
    masks = groups(space)
    assert [int(m.sum()) for m in masks] == [3, 3, 3]
    assert torch.stack(masks).sum(0).eq(1).all()  # every entry in exactly one group
    arch = space.make(["3", "6", "off", "5", "3", "on", "7", "6", "on"])
    s = gpnas_encoding(space, arch)
    # kernel sizes by value in [0, 1]; expansion 3/6 -> 0/1; SE off/on -> 0/1
    assert s.tolist() == [0.0, 1.0, 0.0, 0.5, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert s[masks[0]].tolist() == [0.0, 0.5, 1.0]


def test_nb201_encoding_is_one_hot_per_edge_grouped_by_op_type():
    space = NB201Space()
    encoding = grouped_encoding(space)
    assert encoding.group_names == ("none", "skip", "conv", "pool") and encoding.dim == 30
    arch = space.make(("nor_conv_3x3", "none", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3"))
    s = gpnas_encoding(space, arch)
    assert s.reshape(6, 5).sum(1).eq(1).all()
    conv = groups(space)[2]
    assert int(s[conv].sum()) == 3  # three conv edges
    assert grouped_encoding(space, "op").group_names == space.op_choices


def test_generic_positional_space_groups_positions_with_the_same_choices():
    space = PositionalSpace({"k1": ["3", "5"], "k2": ["3", "5"], "act": ["relu", "gelu", "silu"]}, name="toy")
    encoding = grouped_encoding(space)
    assert len(encoding.group_names) == 2 and encoding.dim == 5  # act is one-hot (3 unordered choices)


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize("learn_lengthscale", [False, True])
def test_kernel_matrices_are_psd(name, learn_lengthscale):
    space = SPACES[name]()
    encoding = grouped_encoding(space)
    X = encoding.encode(random_archs(space, 60, seed=1))
    kernel = GroupedKernel(encoding.masks, learn_lengthscale=learn_lengthscale).double()
    torch.manual_seed(0)
    kernel.outputscale = torch.rand(len(encoding.group_names), dtype=torch.float64) * 2
    if learn_lengthscale:
        kernel.group_lengthscale = 0.3 + torch.rand(len(encoding.group_names), dtype=torch.float64)
    with torch.no_grad():
        K = kernel(X).to_dense()
        assert torch.allclose(K, K.T)
        assert torch.linalg.eigvalsh(K).min() >= -1e-6
        assert torch.allclose(kernel(X, diag=True), K.diagonal())
        assert torch.allclose(K.diagonal(), kernel.outputscale.sum().expand(60))


def test_kernel_matches_equation_7():
    space = NB201Space()
    encoding = grouped_encoding(space)
    archs = random_archs(space, 5, seed=3)
    X = encoding.encode(archs)
    kernel = GroupedKernel(encoding.masks).double()
    sigma2 = torch.tensor([0.5, 1.0, 2.0, 0.25], dtype=torch.float64)
    kernel.outputscale = sigma2
    with torch.no_grad():
        K = kernel(X).to_dense()
    s, u = X[0], X[1]
    expected = sum(
        sigma2[i] * torch.exp(-((mask.double() * (s - u)) ** 2).sum()) for i, mask in enumerate(encoding.masks)
    )
    assert K[0, 1].item() == pytest.approx(expected.item())


def test_kernel_rejects_bad_masks_and_inputs():
    with pytest.raises(ValueError, match="select no entry"):
        GroupedKernel([[True, False], [False, False]])
    kernel = GroupedKernel([[True, False, True], [False, True, False]])
    with pytest.raises(ValueError, match="masks over 3 encoding entries"):
        kernel(torch.zeros(2, 4)).to_dense()
    with pytest.raises(AttributeError, match="fixed length-scales"):
        kernel.group_lengthscale = 2.0
