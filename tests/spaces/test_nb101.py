import networkx as nx
import numpy as np
import pytest

from raynas.architecture import Architecture
from raynas.registry import make_space
from raynas.spaces.base import OP_ATTR, InvalidArchitectureError
from raynas.spaces.nb101 import NB101_OPS, NB101_UNIQUE_CELLS, NB101Space

C3, C1, MP = NB101_OPS

# input -> conv3x3 -> maxpool -> output, plus input -> maxpool and conv3x3 -> output
DIAMOND = (
    [[0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
    ["input", C3, MP, "output"],
)
CHAIN = ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", C3, "output"])


@pytest.fixture(scope="module")
def space():
    return NB101Space()


@pytest.fixture(scope="module")
def samples(space):
    rng = np.random.default_rng(0)
    return [space.sample(rng) for _ in range(200)]


def n_edges(arch):
    return int(np.sum(arch.matrix))


def test_space_facts(space):
    assert space.op_choices == ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
    assert space.max_nodes() == 7 and space.max_edges == 9
    assert space.size is None and NB101_UNIQUE_CELLS == 423_624
    assert isinstance(make_space("nb101"), NB101Space)


def test_samples_are_valid_pruned_and_seeded(space, samples):
    again = [space.sample(np.random.default_rng(0)) for _ in range(2)]
    assert again[0] == again[1] == samples[0]
    for arch in samples:
        space.validate(arch)  # validate also rejects unpruned cells
        assert arch.space == "nb101"
        assert len(arch.ops) <= 7 and n_edges(arch) <= 9
        assert space.prune(arch.matrix, arch.ops) == (arch.matrix, arch.ops)
        assert arch.ops[0] == "input" and arch.ops[-1] == "output"
    assert len(set(samples)) > 50
    assert any(len(a.ops) == 7 for a in samples) or any(len(a.ops) == 6 for a in samples)


def bad(matrix, ops):
    return Architecture("nb101", tuple(ops), matrix)


@pytest.mark.parametrize(
    "arch, message",
    [
        (Architecture("nb201", ("input", "output"), ((0, 1), (0, 0))), "belongs to space 'nb201'"),
        (Architecture("nb101", ("input", "output")), "need an adjacency 'matrix'"),
        (bad([[0, 1, 0], [0, 0], [0, 0, 0]], ["input", C3, "output"]), "not square: row 1 has 2 entries"),
        (bad(*CHAIN[:1], ["input", "output"]), "ops has 2 labels but the matrix has 3 nodes"),
        (bad([[0, 2, 0], [0, 0, 1], [0, 0, 0]], CHAIN[1]), r"entry \[0\]\[1\] is 2, entries must be 0 or 1"),
        (bad([[0, 1, 0], [0, 0, 1], [1, 0, 0]], CHAIN[1]), r"not upper triangular: entry \[2\]\[0\]"),
        (bad([[0, 1, 0], [0, 1, 1], [0, 0, 0]], CHAIN[1]), r"not upper triangular: entry \[1\]\[1\]"),
        (bad([[0]], ["input"]), "at least 2 nodes"),
        (bad(CHAIN[0], ["conv3x3-bn-relu", C3, "output"]), "first op \\(node 0\\) must be 'input'"),
        (bad(CHAIN[0], ["input", C3, MP]), "last op \\(node 2\\) must be 'output'"),
        (bad(CHAIN[0], ["input", "conv5x5", "output"]), "op of node 1: 'conv5x5' is not one of"),
        (bad(CHAIN[0], ["input", "output", "output"]), "op of node 1: 'output' is not one of"),
        (bad([[0, 1, 0], [0, 0, 0], [0, 0, 0]], CHAIN[1]), "disconnected: no path from node 0 to node 2"),
        (
            bad([[1 if j == i + 1 else 0 for j in range(8)] for i in range(8)], ["input"] + [C3] * 6 + ["output"]),
            "too many nodes: 8 after pruning, at most 7",
        ),
        (
            bad([[1 if j > i else 0 for j in range(5)] for i in range(5)], ["input", C3, C1, MP, "output"]),
            "too many edges: 10 after pruning, at most 9",
        ),
        (
            bad([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]], ["input", C3, MP, "output"]),
            r"not pruned: node\(s\) \[2\] are not on a path",
        ),
    ],
)
def test_validate_names_the_problem(space, arch, message):
    with pytest.raises(InvalidArchitectureError, match=message):
        space.validate(arch)
    assert not space.is_valid(arch)


def test_make_rejects_fractional_entries(space):
    with pytest.raises(InvalidArchitectureError, match=r"entry \[0\]\[1\] is 0.5"):
        space.make([[0, 0.5, 0], [0, 0, 1], [0, 0, 0]], CHAIN[1])


def test_pruning_removes_dead_nodes(space):
    # node 2 (maxpool) has an input but no path to the output; node 3 has no input
    matrix = [
        [0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0],
    ]
    ops = ["input", C3, MP, C1, "output"]
    assert space.prune(matrix, ops) == (((0, 1, 0), (0, 0, 1), (0, 0, 0)), ("input", C3, "output"))
    arch = space.make(matrix, ops)
    assert arch == space.make(*CHAIN)
    with pytest.raises(InvalidArchitectureError, match="not pruned"):
        space.validate(bad(matrix, ops))
    # over the edge limit before pruning, within it after
    dense = [[0] * 7 for _ in range(7)]
    dense[0][6] = 1
    for i in range(1, 6):
        for j in range(i + 1, 6):
            dense[i][j] = 1  # 10 edges among dead nodes 1..5
    assert space.make(dense, ["input", C3, C3, C3, C3, C3, "output"]) == space.make(
        [[0, 1], [0, 0]], ["input", "output"]
    )
    with pytest.raises(InvalidArchitectureError, match="disconnected"):
        space.prune([[0, 1, 0], [0, 0, 0], [0, 0, 0]], CHAIN[1])


def differences(a, b):
    """Positions where two padded forms (matrix, ops) differ."""
    cells = [(i, j) for i in range(len(a[0])) for j in range(len(a[0])) if a[0][i][j] != b[0][i][j]]
    ops = [k for k in range(len(a[1])) if a[1][k] != b[1][k]]
    return cells, ops


def test_mutate_makes_exactly_one_edit(space, samples):
    rng = np.random.default_rng(1)
    grew = 0
    for arch in samples[:100]:
        trace = space.padded_mutation(arch, rng)
        assert len(trace.parent_ops) == len(trace.ops) == 7
        # the padding is dead: pruning the padded parent gives the parent back
        assert space.make(trace.parent_matrix, trace.parent_ops) == arch
        cells, ops = differences((trace.parent_matrix, trace.parent_ops), (trace.matrix, trace.ops))
        assert len(cells) + len(ops) == 1
        if cells:
            assert cells[0][0] < cells[0][1]
        else:
            assert 0 < ops[0] < 6
        child = trace.child
        space.validate(child)
        assert child != arch and space.make(trace.matrix, trace.ops) == child
        assert len(child.ops) <= 7 and n_edges(child) <= 9
        grew += len(child.ops) > len(arch.ops)
    assert grew > 0  # the padding lets a single flip add a node


def test_mutate_is_seeded_and_handles_the_smallest_cell(space, samples):
    a = space.mutate(samples[3], np.random.default_rng(5))
    assert a == space.mutate(samples[3], np.random.default_rng(5))
    smallest = space.make([[0, 1], [0, 0]], ["input", "output"])
    assert space.neighbours(smallest) == []  # no one-edit neighbour on the pruned form
    rng = np.random.default_rng(2)
    children = {space.mutate(smallest, rng) for _ in range(20)}
    # one flip can revive a dead node (or a sink->source pair of them)
    assert all(3 <= len(c.ops) <= 4 and space.is_valid(c) for c in children)


def test_neighbours(space, samples):
    chain = space.make(*CHAIN)
    # adding 0->2 is the only valid flip; two other ops for node 1
    expected = {
        space.make([[0, 1, 1], [0, 0, 1], [0, 0, 0]], CHAIN[1]),
        space.make(CHAIN[0], ["input", C1, "output"]),
        space.make(CHAIN[0], ["input", MP, "output"]),
    }
    assert set(space.neighbours(chain)) == expected and len(space.neighbours(chain)) == 3
    for arch in samples[:40]:
        options = space.neighbours(arch)
        assert arch not in options and len(options) == len(set(options))
        assert all(space.is_valid(o) for o in options)


def test_json_and_config_round_trip(space, samples):
    for arch in samples[:20]:
        assert Architecture.from_json(arch.to_json()) == arch
        assert Architecture.from_config(arch.to_config()) == arch
        assert space.parse(arch.to_json()) == arch


def test_describe_parse_round_trip(space, samples):
    arch = space.make(*DIAMOND)
    text = space.describe(arch)
    assert text == "[[0,1,1,0],[0,0,1,1],[0,0,0,1],[0,0,0,0]]|input,conv3x3-bn-relu,maxpool3x3,output"
    assert space.parse(text) == arch
    for a in samples[:20]:
        assert space.parse(space.describe(a)) == a
    # the compact form prunes, like ModelSpec
    assert space.parse("[[0,1,1],[0,0,0],[0,0,0]]|input,maxpool3x3,output") == space.make(
        [[0, 1], [0, 0]], ["input", "output"]
    )
    with pytest.raises(InvalidArchitectureError, match="needs the form"):
        space.parse("[[0,1],[0,0]]")
    with pytest.raises(InvalidArchitectureError, match="not a JSON list"):
        space.parse("[[0,1],[0,0|input,output")
    with pytest.raises(InvalidArchitectureError, match="not pruned"):
        space.parse(bad([[0, 1, 1], [0, 0, 0], [0, 0, 0]], ["input", MP, "output"]).to_json())


def test_isomorphic_cells_share_canonical_hash(space):
    # input -> conv3 -> conv1 -> output, input -> maxpool -> output
    a = space.make(
        [[0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
        ["input", C3, C1, MP, "output"],
    )
    # the same cell with the maxpool branch numbered first
    b = space.make(
        [[0, 1, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
        ["input", MP, C3, C1, "output"],
    )
    assert a != b
    assert space.canonical_hash(a) == space.canonical_hash(b) and space.is_isomorphic(a, b)
    c = space.make(a.matrix, ["input", C3, C3, MP, "output"])
    assert space.canonical_hash(a) != space.canonical_hash(c) and not space.is_isomorphic(a, c)


def test_encodings_align_across_sizes(space):
    small, large = space.make(*CHAIN), space.make(*DIAMOND)
    assert space.encode_onehot(small).shape == space.encode_onehot(large).shape == (21 + 5 * 3,)
    positional = space.encode_positional(small)
    assert positional.dtype == np.int64 and positional.shape == (26,)
    bits = positional[:21]
    assert bits.sum() == 2 and bits[0] == 1 and bits[10] == 1  # edges 0->1 and 1->6 (output at 6)
    assert positional[21:].tolist() == [0, 3, 3, 3, 3]  # absent nodes get index len(ops) == 3
    onehot = space.encode_onehot(small)
    assert np.array_equal(onehot[:21], bits.astype(np.float32))
    assert onehot[21:24].tolist() == [1, 0, 0] and onehot[24:].sum() == 0
    # the output edges of both cells land in the same column of the padded matrix
    matrix, ops = space.padded_layout(large)
    assert ops[6] == "output" and matrix[:, 6].tolist() == [0, 1, 1, 0, 0, 0, 0]


def test_to_graph(space):
    arch = space.make(*DIAMOND)
    graph = space.to_graph(arch)
    assert isinstance(graph, nx.DiGraph)
    assert sorted(graph.nodes) == [0, 1, 2, 3] and graph.number_of_edges() == 5
    assert [graph.nodes[k][OP_ATTR] for k in range(4)] == ["input", C3, MP, "output"]
    assert set(graph.edges) == {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)}
    assert nx.is_directed_acyclic_graph(graph)
