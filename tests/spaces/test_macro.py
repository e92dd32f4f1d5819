"""NASBOT's macro spaces: encoding, validity rules, sampling and the nine modifiers."""

import numpy as np
import pytest

from raynas.architecture import Architecture
from raynas.spaces.base import InvalidArchitectureError
from raynas.spaces.macro import MODIFIERS, MacroCNNSpace, MacroMLPSpace

CNN = MacroCNNSpace()
MLP = MacroMLPSpace()


def chain(space, layers):
    return Architecture(space.name, ("input", *layers, "output"))


@pytest.mark.parametrize("space", [CNN, MLP], ids=["cnn", "mlp"])
def test_samples_are_valid_chains(space):
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(50)]
    for arch in archs:
        space.validate(arch)
        assert arch.matrix is None and arch.ops[0] == "input" and arch.ops[-1] == "output"
    assert len(set(archs)) > 40
    encodings = {space.encode_positional(a).shape for a in archs}
    assert encodings == {(3 * space.max_nodes() + space.max_nodes() * (space.max_nodes() - 1) // 2,)}


@pytest.mark.parametrize(
    "layers, message",
    [
        (["conv3:64", "fc:64"], "feeds the output: only softmax"),
        (["max-pool", "conv3:64", "fc:32", "softmax"], "layers after the input must be a convolution"),
        (["conv3:64", "fc:32", "max-pool", "fc:16", "softmax"], "no convolution or pooling after fc"),
        (["conv3:64", "softmax"], "softmax must follow fc"),
        (["conv3:4", "fc:32", "softmax"], r"units '4' of 'conv3:4' out of range \[8, 1024\]"),
        (["conv3", "fc:32", "softmax"], "'conv3' needs units"),
        (["conv3:64", "max-pool:2", "fc:32", "softmax"], "'max-pool' takes no units"),
        (["conv4:64", "fc:32", "softmax"], "unknown layer 'conv4:64'"),
        (["conv3:6x4", "fc:32", "softmax"], "not an integer"),
        (["conv3:64"] + ["max-pool", "conv3:64"] * 6 + ["fc:8", "softmax"], "6 pooling layers, at most 5"),
        (["conv3:64"] * 30 + ["fc:8", "softmax"], "32 layers, need between 2 and 30"),
    ],
)
def test_cnn_validity_errors_name_the_problem(layers, message):
    with pytest.raises(InvalidArchitectureError, match=message):
        CNN.validate(chain(CNN, layers))


def test_structural_errors_name_the_problem():
    with pytest.raises(InvalidArchitectureError, match="must start with 'input'"):
        CNN.validate(Architecture("macro_cnn", ("conv3:8", "fc:8", "softmax", "output")))
    with pytest.raises(InvalidArchitectureError, match="belongs to space 'macro_mlp'"):
        CNN.validate(chain(MLP, ["relu:8", "linear"]))
    bad = ((0, 1, 0, 0, 0), (0, 0, 1, 0, 0), (0, 0, 0, 1, 0), (0, 0, 0, 0, 1), (0, 0, 0, 0, 0))
    ok = Architecture("macro_cnn", ("input", "conv3:8", "fc:8", "softmax", "output"), bad)
    CNN.validate(ok)
    lower = tuple(tuple(r) for r in np.array(bad).T)
    with pytest.raises(InvalidArchitectureError, match="not strictly upper triangular"):
        CNN.validate(Architecture("macro_cnn", ok.ops, lower))
    dangling = ((0, 1, 1, 0, 0, 0), (0, 0, 0, 1, 0, 0), (0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 1, 0),
                (0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 0, 0))
    ops = ("input", "conv3:8", "conv5:8", "fc:8", "softmax", "output")
    with pytest.raises(InvalidArchitectureError, match=r"layer 2 \(conv5\) feeds nothing"):
        CNN.validate(Architecture("macro_cnn", ops, dangling))


def test_mlp_rules():
    MLP.validate(chain(MLP, ["relu:64", "tanh:32", "linear:16", "linear"]))
    with pytest.raises(InvalidArchitectureError, match="feeds the output: only the linear output"):
        MLP.validate(chain(MLP, ["relu:64", "tanh:32"]))
    with pytest.raises(InvalidArchitectureError, match="unknown layer 'conv3:8'"):
        MLP.validate(chain(MLP, ["conv3:8", "linear"]))
    with pytest.raises(InvalidArchitectureError, match="layers after the input must be a hidden layer"):
        MLP.validate(chain(MLP, ["linear", "linear"]))


BASE_CNN = ["conv3:64", "conv5:64", "max-pool", "res3:128", "fc:256", "fc:128", "softmax"]
BASE_MLP = ["relu:64", "tanh:128", "elu:64", "linear"]
CNN_PARAMS = {
    "inc_single": {"layer": 1, "factor": 1.5},
    "dec_single": {"layer": 4, "factor": 2.0},
    "inc_en_masse": {"layers": [1, 2, 4], "factor": 1.25},
    "dec_en_masse": {"layers": [4, 5, 6], "factor": 1.25},
    "remove_layer": {"layer": 2},
    "wedge_layer": {"edge": (3, 4), "label": "conv7", "units": 96},
    "swap_label": {"layer": 1, "label": "res3"},
    "dup_path": {"path": (1, 2, 3, 4)},
    "skip_path": {"edge": (1, 4)},
}
MLP_PARAMS = {
    "inc_single": {"layer": 2, "factor": 1.125},
    "dec_single": {"layer": 2, "factor": 1.5},
    "inc_en_masse": {"layers": [1, 2, 3], "factor": 2.0},
    "dec_en_masse": {"layers": [1, 2], "factor": 2.0},
    "remove_layer": {"layer": 2},
    "wedge_layer": {"edge": (1, 2), "label": "crelu", "units": 32},
    "swap_label": {"layer": 3, "label": "softplus"},
    "dup_path": {"path": (0, 1, 2)},
    "skip_path": {"edge": (1, 3)},
}


@pytest.mark.parametrize("space, base, params", [(CNN, BASE_CNN, CNN_PARAMS), (MLP, BASE_MLP, MLP_PARAMS)],
                         ids=["cnn", "mlp"])
@pytest.mark.parametrize("modifier", MODIFIERS)
def test_each_modifier_gives_a_valid_different_network(space, base, params, modifier):
    parent = space.make(base)
    child = space.apply(parent, modifier, **params[modifier])
    space.validate(child)
    assert child != parent
    graph = space.to_graph(child)
    if modifier in ("dup_path", "skip_path"):
        assert child.matrix is not None  # no longer a chain
        assert max(dict(graph.out_degree).values()) >= 2
    if modifier == "remove_layer":
        assert len(child.ops) == len(parent.ops) - 1
    if modifier in ("wedge_layer",):
        assert len(child.ops) == len(parent.ops) + 1
    if modifier == "dup_path":
        assert len(child.ops) == len(parent.ops) + len(params[modifier]["path"]) - 2


def test_modifier_with_invalid_result_raises():
    parent = CNN.make(["conv3:64", "max-pool", "conv3:64", "fc:32", "softmax"])
    with pytest.raises(InvalidArchitectureError, match="layers after the input must be a convolution"):
        CNN.apply(parent, "remove_layer", layer=1)
    with pytest.raises(InvalidArchitectureError, match="cannot swap"):
        CNN.apply(parent, "swap_label", layer=1, label="max-pool")


@pytest.mark.parametrize("space", [CNN, MLP], ids=["cnn", "mlp"])
def test_mutation_chains_and_neighbours_stay_valid(space):
    rng = np.random.default_rng(1)
    arch = space.sample(rng)
    seen_dag = False
    for _ in range(60):
        child = space.mutate(arch, rng)
        space.validate(child)
        assert child != arch
        seen_dag |= child.matrix is not None
        arch = child
    assert seen_dag
    neighbours = space.neighbours(arch)
    assert len(neighbours) == len(set(neighbours)) > 10 and arch not in neighbours
    for n in neighbours:
        space.validate(n)


def test_to_graph_and_dag_round_trip():
    dag = CNN.apply(CNN.make(BASE_CNN), "skip_path", edge=(1, 4))
    graph = CNN.to_graph(dag)
    assert graph.nodes[0]["op"] == "input" and graph.nodes[len(dag.ops) - 1]["op"] == "output"
    assert graph.nodes[1]["op"] == "conv3" and graph.nodes[1]["units"] == 64
    assert set(CNN.op_choices) >= {graph.nodes[k]["op"] for k in range(1, len(dag.ops) - 1)}
    assert Architecture.from_json(dag.to_json()) == dag
    assert CNN.make(dag.ops, dag.matrix) == dag
