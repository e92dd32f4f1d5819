import networkx as nx
import numpy as np
import pytest

from raynas.architecture import Architecture
from raynas.spaces import NB201_OPS, InvalidArchitectureError, NB201Space

OPTIMUM = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space():
    return NB201Space()


def test_size_and_enumeration(space):
    archs = list(space.enumerate())
    assert space.size == 15625 == len(archs) == len(set(archs))
    assert all(space.is_valid(a) for a in archs[:50])


def test_sample_is_valid_and_seeded(space):
    a = [space.sample(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    samples = {space.sample(rng) for _ in range(200)}
    assert len(samples) > 190 and all(space.is_valid(s) for s in samples)


def test_string_round_trip(space):
    arch = space.parse(OPTIMUM)
    assert arch.ops == ("nor_conv_3x3", "nor_conv_1x1", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
    assert space.describe(arch) == OPTIMUM
    assert space.parse(arch.to_json()) == arch
    assert Architecture.from_config(arch.to_config()) == arch


@pytest.mark.parametrize(
    "text, message",
    [
        ("|a~0|+|b~0|", "3 '\\+'-separated nodes"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 of NB201 string needs 2 inputs"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|conv~2|", "'conv' is not one of"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "malformed input"),
    ],
)
def test_parse_errors_name_the_problem(space, text, message):
    with pytest.raises(InvalidArchitectureError, match=message):
        space.parse(text)


def test_validate_errors(space):
    with pytest.raises(InvalidArchitectureError, match="6 edge ops, got 2"):
        space.validate(Architecture("nb201", ("none", "none")))
    with pytest.raises(InvalidArchitectureError, match="belongs to space 'nb101'"):
        space.validate(Architecture("nb101", ("none",) * 6))
    with pytest.raises(InvalidArchitectureError, match="edge 1->2: 'conv5' is not one of"):
        space.validate(Architecture("nb201", ("none", "none", "conv5", "none", "none", "none")))


def test_mutation_changes_exactly_one_edge(space):
    rng = np.random.default_rng(1)
    arch = space.sample(rng)
    for _ in range(50):
        child = space.mutate(arch, rng)
        assert sum(a != b for a, b in zip(arch.ops, child.ops)) == 1
    neighbours = space.neighbours(arch)
    assert len(neighbours) == 6 * 4 == len(set(neighbours)) and arch not in neighbours


def test_graph_and_encodings(space):
    arch = space.parse(OPTIMUM)
    graph = space.to_graph(arch)
    assert isinstance(graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph)
    assert graph.number_of_nodes() == 8
    assert graph.nodes[0]["op"] == "input" and graph.nodes[7]["op"] == "output"
    assert [graph.nodes[k]["op"] for k in range(1, 7)] == list(arch.ops)
    # edge (0,1) feeds the edges leaving node 1: (1,2) and (1,3)
    assert set(graph.successors(1)) == {3, 5}
    onehot = space.encode_onehot(arch)
    assert onehot.shape == (30,) and onehot.sum() == 6
    assert space.encode_positional(arch).tolist() == [NB201_OPS.index(op) for op in arch.ops]


def test_isomorphic_cells_share_canonical_hash(space):
    # With edge 1->2 absent, nodes 1 and 2 are interchangeable.
    a = space.make(("nor_conv_3x3", "avg_pool_3x3", "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"))
    b = space.make(("avg_pool_3x3", "nor_conv_3x3", "none", "skip_connect", "nor_conv_3x3", "nor_conv_1x1"))
    assert a != b
    assert space.canonical_hash(a) == space.canonical_hash(b) and space.is_isomorphic(a, b)
    # Dead edges do not matter: edge 0->1 is cut off when nothing leaves node 1.
    c = space.make(("nor_conv_3x3", "avg_pool_3x3", "none", "skip_connect", "none", "nor_conv_3x3"))
    d = space.make(("avg_pool_3x3", "avg_pool_3x3", "none", "skip_connect", "none", "nor_conv_3x3"))
    assert space.canonical_hash(c) == space.canonical_hash(d)
    # A different op on a live edge is a different network.
    e = space.make(("nor_conv_3x3", "avg_pool_3x3", "none", "skip_connect", "nor_conv_1x1", "nor_conv_1x1"))
    assert space.canonical_hash(a) != space.canonical_hash(e) and not space.is_isomorphic(a, e)
    # Every cell with no path from input to output is the same (zero) network.
    assert space.canonical_hash(space.make(("none",) * 6)) == space.canonical_hash(
        space.make(("nor_conv_3x3", "none", "none", "none", "none", "none"))
    )


def test_canonical_hash_agrees_with_exact_isomorphism(space):
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(120)]
    by_hash = {}
    for arch in archs:
        by_hash.setdefault(space.canonical_hash(arch), []).append(arch)
    for group in by_hash.values():
        assert all(space.is_isomorphic(group[0], other) for other in group[1:])


@pytest.mark.parametrize("method", ["describe", "to_graph", "encode_onehot", "encode_positional", "canonical_hash"])
def test_describe_graph_and_encodings_reject_what_is_not_an_nb201_cell(space, method):
    from raynas.spaces.nb101 import NB101Space

    unknown_op = Architecture("nb201", ("none", "skip_connect", "conv9", "none", "none", "none"))
    with pytest.raises(InvalidArchitectureError, match="'conv9'"):
        getattr(space, method)(unknown_op)
    nb101 = NB101Space().sample(np.random.default_rng(0))
    with pytest.raises(InvalidArchitectureError, match="'nb101'"):
        getattr(space, method)(nb101)
    with pytest.raises(InvalidArchitectureError, match="6 edge ops"):
        getattr(space, method)(Architecture("nb201", ("none",) * 5))
    with pytest.raises(InvalidArchitectureError, match="'nb201'"):  # and NB101 rejects an NB201 cell
        getattr(NB101Space(), method)(space.sample(np.random.default_rng(0)))
