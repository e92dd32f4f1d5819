"""Architectures as lines of text (the summary at the end of ``raynas search``)."""

from raynas.spaces import NB101Space, NB201Space


def test_nb201_cell_as_sums_of_edge_ops():
    space = NB201Space()
    arch = space.make(("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "none", "none", "avg_pool_3x3"))
    assert space.text_drawing(arch) == [
        "node1 = nor_conv_3x3(node0)",
        "node2 = skip_connect(node0) + nor_conv_1x1(node1)",
        "node3 = avg_pool_3x3(node2)",
    ]
    empty = space.make(("none",) * 6)
    assert space.text_drawing(empty)[0] == "node1 = 0 (every input edge is none)"


def test_other_spaces_are_drawn_from_their_graph():
    space = NB101Space()
    arch = space.make([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])
    assert space.text_drawing(arch) == ["n1 = conv3x3-bn-relu(n0)", "n2 = output(n0, n1)"]
