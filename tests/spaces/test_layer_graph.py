"""The layer-graph view OTMANN compares: labels, masses and path lengths for every space."""

import numpy as np
import pytest

from raynas.spaces import NB101Space, NB201Space
from raynas.spaces.layer_graph import build_layer_graph, layer_graph, path_lengths
from raynas.spaces.macro import MacroCNNSpace, MacroMLPSpace
from raynas.spaces.positional import PositionalSpace


def test_path_lengths_of_a_diamond_with_a_skip():
    # 0 -> 1 -> 2 -> 3, 0 -> 2 (skip)
    paths = path_lengths(4, [(0, 1), (1, 2), (2, 3), (0, 2)])
    sp_ip, lp_ip, rw_ip, sp_op, lp_op, rw_op = paths.T
    assert sp_ip.tolist() == [0, 1, 1, 2] and lp_ip.tolist() == [0, 1, 2, 3]
    assert rw_ip.tolist() == [0, 1, 1.5, 2.5]  # node 2: parents 0 (0 hops) and 1 (1 hop)
    assert sp_op.tolist() == [2, 2, 1, 0] and lp_op.tolist() == [3, 2, 1, 0]
    assert rw_op.tolist() == [2.5, 2, 1, 0]


def test_path_lengths_reject_unreachable_nodes():
    with pytest.raises(ValueError, match="not reachable"):
        path_lengths(3, [(0, 2)])


def test_resnet_masses_match_the_slides():
    """The ResNet of the NASBOT slides: ip = op = softmax = 14456, fc 13107, res3 256->256 65536."""
    space = MacroCNNSpace()
    arch = space.make(
        ["conv7:64", "max-pool", "res3:64", "res3:64", "res3:128", "res3:128", "res3:256", "res3:256",
         "avg-pool", "fc:512", "softmax"]
    )
    g = layer_graph(space, arch)
    expected = [14456, 64, 64, 4096, 4096, 8192, 16384, 32768, 65536, 256, 13107, 14456, 14456]
    assert np.floor(g.masses).astype(int).tolist() == expected
    assert g.labels[0] == "ip" and g.labels[-1] == "op"


def test_mlp_masses_and_decision_layers_share_zeta_total():
    space = MacroMLPSpace()
    arch = space.make(["relu:8", "tanh:16", "linear"])
    g = layer_graph(space, arch)
    # relu after ip: 8; tanh: 16*8; decision 'linear-out' and ip/op: 0.1 * 136
    assert g.labels == ("ip", "relu", "tanh", "linear-out", "op")
    assert g.masses.tolist() == pytest.approx([13.6, 8, 128, 13.6, 13.6])


def test_nb201_none_removed_and_masses():
    space = NB201Space()
    best = space.parse(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    )
    g = layer_graph(space, best)
    assert g.labels == ("ip", "conv3", "conv1", "conv3", "skip", "conv1", "conv3", "op")
    assert g.masses[1:-1].tolist() == [256, 256, 256, 64, 256, 256]  # conv C*C, skip C*C/4
    assert g.masses[0] == g.masses[-1] == pytest.approx(0.1 * 1344)
    # the skip edge 0->3 is one hop from the input and from the output
    assert g.paths[4].tolist() == [1, 1, 1, 1, 1, 1]
    with_none = space.make(("nor_conv_3x3", "none", "nor_conv_3x3", "none", "none", "nor_conv_3x3"))
    assert layer_graph(space, with_none).labels == ("ip", "conv3", "conv3", "conv3", "op")


def test_nb201_dead_edges_do_not_count_and_disconnected_cell_is_empty():
    space = NB201Space()
    # edge 1->2 is dead when nothing reaches node 1 ... node 1 fed only by 0->1 = none
    a = space.make(("none", "nor_conv_3x3", "avg_pool_3x3", "none", "nor_conv_1x1", "nor_conv_3x3"))
    b = space.make(("none", "nor_conv_3x3", "skip_connect", "none", "nor_conv_3x3", "nor_conv_3x3"))
    assert layer_graph(space, a).labels == layer_graph(space, b).labels == ("ip", "conv3", "conv3", "op")
    empty = layer_graph(space, space.make(("none",) * 6))
    assert empty.labels == ("ip", "op") and (empty.masses > 0).all()


def test_nb101_cell_labels_and_channels():
    space = NB101Space()
    arch = space.make([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
                      ["input", "conv3x3-bn-relu", "maxpool3x3", "output"])
    g = layer_graph(space, arch)
    assert g.labels == ("ip", "conv3", "max-pool", "op")
    assert g.masses[1] == 128 * 128 and g.masses[2] == 128 * 128 / 4
    assert layer_graph(space, arch, channels=8, param_free_mass=8).masses[1:3].tolist() == [64, 8]


def test_positional_space_is_a_chain_of_unit_masses():
    space = PositionalSpace({"k": ["3", "5"], "e": ["3", "6"]}, name="toy")
    g = layer_graph(space, space.make(["5", "6"]))
    assert g.labels == ("ip", "k=5", "e=6", "op")
    assert g.masses.tolist() == [1, 1, 1, 1]
    assert g.edges == ((0, 1), (1, 2), (2, 3))


def test_build_layer_graph_checks_its_ends():
    with pytest.raises(ValueError, match="from 'ip' to 'op'"):
        build_layer_graph(["conv3", "op"], [1, 0], [(0, 1)])
