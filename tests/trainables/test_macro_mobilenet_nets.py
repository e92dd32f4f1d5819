"""Networks of the macro (NASBOT) and MobileNet (GP-NAS) spaces: shapes, parameter counts, stats, errors, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raynas.architecture import Architecture
from raynas.models import MODEL_SIZE_KEYS, PAPER_SIZES, MacroNetwork, MobileNetV3Network, build_model, model_stats
from raynas.models.mobilenet_net import kept_downsamplings
from raynas.spaces import InvalidArchitectureError
from raynas.spaces.macro import MacroCNNSpace, MacroMLPSpace
from raynas.spaces.mobilenet import MobileNetSpace

CNN, MLP, MOBILE = MacroCNNSpace(), MacroMLPSpace(), MobileNetSpace()
TINY = 0.1  # width_mult of the MobileNet networks in these tests


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded, and on one torch thread: these tiny networks run slower with more on a busy machine."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _random_archs(space, seed: int, count: int) -> list[Architecture]:
    """Sampled chains and mutated (often non-chain) DAGs."""
    rng = np.random.default_rng(seed)
    archs = []
    for k in range(count):
        arch = space.sample(rng)
        for _ in range(k):  # later ones carry more modifiers (dup/skip paths make DAGs)
            arch = space.mutate(arch, rng)
        archs.append(arch)
    return archs


# ----------------------------------------------------------------- macro_cnn
@pytest.mark.parametrize("arch", _random_archs(CNN, seed=1, count=5), ids=lambda a: str(len(a.ops)))
def test_macro_cnn_forward_shapes(arch):
    net = build_model("macro_cnn", arch, num_classes=7, in_channels=1, width_mult=0.125)
    for x in (torch.rand(3, 1, 8, 8), torch.rand(2, 1, 32, 32)):
        logits = net(x)
        assert logits.shape == (x.shape[0], 7) and torch.isfinite(logits).all()
    stats = model_stats(net, (1, 8, 8))
    assert stats.params == _params(net) > 0 and stats.flops > 0


def test_macro_cnn_dag_skip_around_pool_and_two_decision_layers():
    # 1 conv -> 2 pool -> 3 conv (also fed by 1: two resolutions), 3 -> two fc -> two softmax -> output
    edges = {(0, 1), (1, 2), (2, 3), (1, 3), (3, 4), (3, 5), (4, 6), (5, 7), (4, 7), (6, 8), (7, 8)}
    matrix = [[int((i, j) in edges) for j in range(9)] for i in range(9)]
    layers = ["conv3:8", "max-pool", "conv5:8", "fc:16", "fc:12", "softmax", "softmax"]
    net = build_model(CNN, CNN.make(layers, matrix), num_classes=5, in_channels=3)
    logits = net(torch.rand(2, 3, 9, 9))  # odd size: the pool rounds up, the skip is pooled to 5x5
    assert logits.shape == (2, 5)
    conv = net.layers[3][0]
    assert conv.in_channels == 16  # concatenation of both parents (8 + 8)
    assert net.layers[7].in_features == 16 + 12  # second softmax: both fc layers
    channels_last = net.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert channels_last(x).shape == (2, 5)


def test_macro_cnn_five_pools_on_a_tiny_image():
    layers = ["conv3:8", *["max-pool", "conv3:8", "avg-pool", "conv3:8"] * 2, "max-pool", "fc:8", "softmax"]
    net = build_model("macro_cnn", layers, in_channels=1)  # 8 -> 4 -> 2 -> 1 -> 1 -> 1: a 1x1 map stays 1x1
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_macro_cnn_param_counts_follow_the_architecture():
    def params(layers, matrix=None):
        return _params(build_model("macro_cnn", CNN.make(layers, matrix), in_channels=3))

    base = params(["conv3:16", "max-pool", "conv3:16", "fc:32", "softmax"])
    assert params(["conv5:16", "max-pool", "conv3:16", "fc:32", "softmax"]) > base  # bigger kernel
    assert params(["conv3:32", "max-pool", "conv3:16", "fc:32", "softmax"]) > base  # more units
    assert params(["conv3:16", "avg-pool", "conv3:16", "fc:32", "softmax"]) == base  # pools have none
    assert params(["conv3:16", "max-pool", "res3:16", "fc:32", "softmax"]) > base  # a residual block: 2 convs
    assert params(["conv3:16", "max-pool", "conv3:16", "fc:32", "fc:8", "softmax"]) > base  # more layers
    skip = {(k, k + 1) for k in range(6)} | {(1, 3)}  # conv 1 also feeds conv 3 (concatenated)
    matrix = [[int((i, j) in skip) for j in range(7)] for i in range(7)]
    assert params(["conv3:16", "max-pool", "conv3:16", "fc:32", "softmax"], matrix) == base + 16 * 16 * 9
    arch = CNN.make(["conv3:16", "max-pool", "conv3:16", "fc:32", "softmax"])
    assert _params(build_model("macro_cnn", arch, width_mult=0.5)) < base  # width_mult shrinks


# ----------------------------------------------------------------- macro_mlp
@pytest.mark.parametrize("arch", _random_archs(MLP, seed=2, count=5), ids=lambda a: str(len(a.ops)))
def test_macro_mlp_forward_shapes(arch):
    images = build_model("macro_mlp", arch, num_classes=10, in_channels=1, width_mult=0.25, input_size=8)
    assert images(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    vectors = build_model(MLP, arch, num_classes=1, in_channels=13)  # regression on 13 features
    out = vectors(torch.rand(4, 13))
    assert out.shape == (4, 1) and torch.isfinite(out).all()
    stats = model_stats(images, (1, 8, 8))
    assert stats.params == _params(images) and stats.flops > 0


def test_macro_mlp_param_counts_and_activations():
    def params(layers):
        return _params(build_model("macro_mlp", MLP.make(layers), in_channels=20))

    assert params(["relu:64", "linear"]) == 20 * 64 + 64 + 64 * 10 + 10
    assert params(["relu:128", "linear"]) > params(["relu:64", "linear"])
    assert params(["relu:64", "tanh:64", "linear"]) > params(["relu:64", "linear"])
    assert params(["crelu:64", "linear"]) == 20 * 64 + 64 + 128 * 10 + 10  # CReLU doubles the features
    net = build_model("macro_mlp", MLP.make(["logistic:8", "linear:8", "linear"]), in_channels=4)
    hidden = net.layers[1](torch.randn(5, 4))
    assert ((hidden > 0) & (hidden < 1)).all()  # the logistic activation


def test_macro_mlp_input_mismatch_is_a_clear_error():
    net = build_model("macro_mlp", MLP.make(["relu:8", "linear"]), in_channels=1, input_size=8)
    with pytest.raises(ValueError, match="expects 64 input features"):
        net(torch.rand(2, 1, 32, 32))


# ----------------------------------------------------------------- mobilenet
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mobilenet_forward_shapes(seed):
    arch = MOBILE.sample(np.random.default_rng(seed))
    for in_channels, size in ((1, 8), (3, 32)):
        net = build_model("mobilenet", arch, num_classes=10, in_channels=in_channels, width_mult=TINY, input_size=size)
        logits = net(torch.rand(2, in_channels, size, size))
        assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    stats = model_stats(net, (3, 32, 32))
    assert stats.params == _params(net) and stats.flops > 0


def test_mobilenet_downsampling_by_input_size():
    assert [kept_downsamplings(s) for s in (224, 64, 32, 28, 8, 4, 1)] == [5, 4, 3, 2, 1, 0, 0]
    arch = MOBILE.sample(np.random.default_rng(0))
    for size, final in ((8, 4), (32, 4), (224, 7)):
        net = build_model("mobilenet", arch, width_mult=TINY, input_size=size)
        assert net.features(torch.rand(1, 3, size, size)).shape[-1] == final


def test_mobilenet_param_counts_follow_the_choices():
    def params(kernel="3", expansion="3", se="off", first=None):
        choices = [kernel, expansion, se] * 14
        if first:
            choices[:3] = first
        return _params(build_model("mobilenet", choices, width_mult=0.25, input_size=32))

    base = params()
    assert params(kernel="5") > base and params(kernel="7") > params(kernel="5")
    assert params(expansion="6") > base
    assert params(se="on") > base
    assert params(first=["7", "3", "off"]) > base  # one block's choice counts
    arch = MOBILE.make(["3", "3", "off"] * 14)
    assert _params(build_model("mobilenet", arch, width_mult=0.5, input_size=32)) > base
    net = build_model(MOBILE, MOBILE.describe(arch), width_mult=0.25, input_size=32)  # the describe string
    assert net.arch == arch and _params(net) == base


def test_mobilenet_full_size_matches_mobilenet_v3_large_layout():
    net = build_model("mobilenet", MOBILE.sample(np.random.default_rng(0)), num_classes=1000)
    assert isinstance(net, MobileNetV3Network) and net.downsamplings == 5
    assert net.features[-1].out_channels == 960 and net.classifier[0].out_features == 1280
    assert 3.0e6 < _params(net) < 8.0e6  # torchvision's MobileNetV3-large has 5.5M


# ----------------------------------------------------------------- build_model
def test_size_keywords_and_errors():
    assert set(MODEL_SIZE_KEYS) >= {"macro_cnn", "macro_mlp", "mobilenet"}
    assert all(set(PAPER_SIZES[name]) <= set(MODEL_SIZE_KEYS[name]) for name in MODEL_SIZE_KEYS)
    cnn = CNN.make(["conv3:8", "fc:8", "softmax"])
    assert isinstance(build_model("macro_cnn", cnn), MacroNetwork)
    with pytest.raises(ValueError, match=r"unknown size keyword\(s\) \['channels'\]"):
        build_model("macro_cnn", cnn, channels=16)
    with pytest.raises(ValueError, match="cells_per_stage"):
        build_model("mobilenet", ["3", "3", "off"] * 14, cells_per_stage=1)
    with pytest.raises(ValueError, match="width_mult must be a positive"):
        build_model("mobilenet", ["3", "3", "off"] * 14, width_mult=0)
    with pytest.raises(ValueError, match="input_size must be a positive integer"):
        build_model("macro_mlp", MLP.make(["relu:8", "linear"]), input_size=2.5)
    with pytest.raises(InvalidArchitectureError):
        build_model("macro_cnn", MLP.make(["relu:8", "linear"]))  # another space's architecture
    with pytest.raises(InvalidArchitectureError):
        build_model("macro_cnn", ["max-pool", "fc:8", "softmax"])  # the input must feed a convolution
    with pytest.raises(InvalidArchitectureError):
        build_model("mobilenet", ["4", "3", "off"] * 14)
    with pytest.raises(ValueError, match="14 searchable blocks"):
        build_model(MobileNetSpace(num_blocks=2), ["3", "3", "off"] * 2)


# ----------------------------------------------------------------- training
@pytest.mark.parametrize(
    "name, arch, size",
    [
        ("macro_cnn", CNN.make(["conv3:8", "max-pool", "res3:8", "fc:16", "softmax"]), {}),
        ("macro_mlp", MLP.make(["relu:32", "tanh:16", "linear"]), {"input_size": 8}),
        ("mobilenet", MOBILE.make(["5", "6", "on"] * 14), {"width_mult": TINY, "input_size": 8}),
    ],
)
def test_one_train_step_lowers_the_loss(name, arch, size):
    net = build_model(name, arch, num_classes=10, in_channels=1, **size)
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
