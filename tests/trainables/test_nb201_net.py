"""The NAS-Bench-201 cell network: shapes, degenerate cells, parameter counts and validation."""

from __future__ import annotations

import pytest
import torch

from raynas.architecture import Architecture
from raynas.models import NB201Network, count_parameters
from raynas.spaces import InvalidArchitectureError, NB201Space

MIXED = ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_forward_digits_shape():
    net = NB201Network(NB201Space().make(MIXED), channels=4, cells_per_stage=1, num_classes=10, in_channels=1)
    logits = net(torch.rand(5, 1, 8, 8))
    assert logits.shape == (5, 10) and torch.isfinite(logits).all()


def test_forward_cifar_shape_and_official_skeleton():
    net = NB201Network(list(MIXED), channels=8, cells_per_stage=2, num_classes=7, in_channels=3)
    # 3 stages x 2 cells + 2 reduction blocks, widths C, 2C, 4C
    assert len(net.cells) == 8 and net.classifier.in_features == 32
    logits = net(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


def test_accepts_official_string():
    space = NB201Space()
    arch = space.make(MIXED)
    net = NB201Network(space.describe(arch), channels=4, cells_per_stage=1, in_channels=1)
    assert net.arch == arch


def test_all_none_cell_gives_finite_logits():
    net = NB201Network(["none"] * 6, channels=4, cells_per_stage=1, num_classes=10, in_channels=1)
    for mode in (net.train, net.eval):
        mode()
        logits = net(torch.rand(3, 1, 8, 8))
        assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    logits.sum().backward()  # gradients flow through the zero op without NaNs
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_parameter_count_grows_when_none_becomes_conv():
    ops = ["none"] * 6
    base = count_parameters(NB201Network(ops, channels=4, cells_per_stage=1, in_channels=1))
    assert count_parameters(NB201Network(["skip_connect"] * 6, channels=4, cells_per_stage=1, in_channels=1)) == base
    ops[2] = "nor_conv_1x1"
    one = count_parameters(NB201Network(ops, channels=4, cells_per_stage=1, in_channels=1))
    ops[2] = "nor_conv_3x3"
    three = count_parameters(NB201Network(ops, channels=4, cells_per_stage=1, in_channels=1))
    assert base < one < three
    # one 1x1 conv + BN per cell, cells of width 4, 8, 16
    assert one - base == sum(c * c + 2 * c for c in (4, 8, 16))


def test_invalid_op_is_named():
    with pytest.raises(InvalidArchitectureError, match="conv_5x5"):
        NB201Network(["conv_5x5"] + ["none"] * 5)
    with pytest.raises(InvalidArchitectureError, match="6 edge ops"):
        NB201Network(["none"] * 5)
    with pytest.raises(InvalidArchitectureError, match="space"):
        NB201Network(Architecture("nb101", ("none",) * 6))
    with pytest.raises(ValueError, match="channels"):
        NB201Network(["none"] * 6, channels=0)
