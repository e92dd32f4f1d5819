import numpy as np
import pandas as pd
import pytest

from raynas.architecture import Architecture
from raynas.spaces import InvalidArchitectureError
from raynas.spaces.positional import PositionalSpace


@pytest.fixture
def space():
    return PositionalSpace({"kernel": ["3", "5", "7"], "expand": ["3", "6"], "se": ["off", "on"]}, name="blocks")


def test_size_enumeration_and_sampling(space):
    archs = list(space.enumerate())
    assert space.size == 12 == len(set(archs))
    rng = np.random.default_rng(0)
    assert all(space.is_valid(space.sample(rng)) for _ in range(20))


def test_make_validate_and_describe(space):
    arch = space.make({"kernel": "5", "expand": "6", "se": "on"})
    assert arch.ops == ("5", "6", "on")
    assert space.describe(arch) == "kernel=5,expand=6,se=on"
    assert space.parse(space.describe(arch)) == arch
    assert Architecture.from_config(arch.to_config()) == arch
    with pytest.raises(InvalidArchitectureError, match="position 'kernel': '9' is not one of"):
        space.make(["9", "6", "on"])
    with pytest.raises(InvalidArchitectureError, match="3 positions"):
        space.validate(Architecture("blocks", ("3",)))
    with pytest.raises(InvalidArchitectureError, match="unknown positions"):
        space.make({"width": "3"})


def test_mutation_and_neighbours(space):
    rng = np.random.default_rng(2)
    arch = space.make(["3", "3", "off"])
    for _ in range(20):
        child = space.mutate(arch, rng)
        assert sum(a != b for a, b in zip(arch.ops, child.ops)) == 1
    assert len(space.neighbours(arch)) == 2 + 1 + 1


def test_encodings_and_graph(space):
    arch = space.make(["7", "6", "on"])
    assert space.encode_positional(arch).tolist() == [2, 1, 1]
    assert space.encode_onehot(arch).tolist() == [0, 0, 1, 0, 1, 0, 1]
    graph = space.to_graph(arch)
    assert graph.number_of_nodes() == 5 and graph.number_of_edges() == 4
    assert graph.nodes[1]["op"] == "kernel=7"


def test_from_table_reads_choices():
    frame = pd.DataFrame({"l1": [16, 32, 16], "l2": ["relu", "tanh", "tanh"], "acc": [1, 2, 3]})
    space = PositionalSpace.from_table(frame, ["l1", "l2"])
    assert space.positions == {"l1": ("16", "32"), "l2": ("relu", "tanh")}
    with pytest.raises(KeyError, match="'l3'"):
        PositionalSpace.from_table(frame, ["l3"])
