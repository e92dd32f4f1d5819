"""The compression space: teachers flatten to layer chains, every operation keeps shapes composing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from raynas.architecture import Architecture
from raynas.models import count_parameters
from raynas.models.student import build_student
from raynas.spaces.base import InfiniteSpaceError, InvalidArchitectureError
from raynas.spaces.compression import CompressionSpace, UnsupportedLayerError


def small_vgg() -> nn.Module:
    """A torchvision VGG (BN variant) with few channels and a small classifier, to keep the test fast."""
    from torchvision.models.vgg import VGG, make_layers

    model = VGG(make_layers([8, "M", 16, "M"], batch_norm=True), num_classes=10)
    model.classifier = nn.Sequential(nn.Linear(16 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))
    return model


def test_vgg11_flattens():
    space = CompressionSpace(torchvision.models.vgg11(num_classes=10), (3, 32, 32))
    kinds = [lay.kind for lay in space.layers]
    assert kinds.count("conv") == 8 and kinds.count("fc") == 3 and kinds[kinds.index("aap") + 1] == "flatten"


def small_bottleneck_resnet() -> nn.Module:
    """A torchvision ResNet of Bottleneck blocks, one per stage; BN weights randomised (not 1) so that
    a wrongly wired shortcut would show."""
    from torchvision.models.resnet import Bottleneck, ResNet

    model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight)
    return model


@pytest.mark.parametrize("factory", [torchvision.models.resnet18, small_vgg, small_bottleneck_resnet])
def test_torchvision_teachers_are_reproduced_exactly(factory):
    torch.manual_seed(0)
    teacher = factory(num_classes=10).eval() if factory is torchvision.models.resnet18 else factory().eval()
    space = CompressionSpace(teacher, (3, 32, 32))
    assert space.layers[-1].kind == "fc" and any(lay.kind == "flatten" for lay in space.layers)
    student = build_student(space, space.teacher_arch).eval()
    x = torch.randn(2, 3, 32, 32)
    assert count_parameters(student) == count_parameters(teacher)
    torch.testing.assert_close(student(x), teacher(x))


def test_resnet_blocks_become_skips_with_projections():
    space = CompressionSpace(torchvision.models.resnet18(num_classes=10), (3, 32, 32))
    assert len(space.skips) == 8 and sum(s.projection is not None for s in space.skips) == 3
    plan = space.skip_plan(space.teacher_arch)
    assert sum(p for row in plan for _, _, p, _ in row) == 3  # the three downsample shortcuts


def test_unsupported_layer_error_names_type_and_path():
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.GELU()), nn.Flatten(), nn.Linear(144, 10))
    with pytest.raises(UnsupportedLayerError, match=r"torch\.nn\.modules\.activation\.GELU at 1\.0"):
        CompressionSpace(teacher, (1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match="groups=2"):
        CompressionSpace(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)), (2, 3, 3))


def test_random_compressions_are_valid_smaller_and_build(tiny_space):
    rng = np.random.default_rng(0)
    teacher_params = count_parameters(tiny_space.teacher)
    x = torch.randn(3, 1, 8, 8)
    seen = set()
    for _ in range(15):
        arch = tiny_space.sample(rng)
        for _ in range(int(rng.integers(0, 4))):
            arch = tiny_space.mutate(arch, rng)
        tiny_space.validate(arch)
        seen.add(arch)
        student = build_student(tiny_space, arch)
        assert student(x).shape == (3, 10)
        assert count_parameters(student) <= teacher_params * 1.1
        assert Architecture.from_json(arch.to_json()) == arch
        assert tiny_space.parse(tiny_space.describe(arch)) == arch
    assert len(seen) > 10


def test_neighbours_cover_the_three_operations(tiny_space):
    teacher = tiny_space.teacher_arch
    neighbours = tiny_space.neighbours(teacher)
    assert neighbours and all(tiny_space.is_valid(a) for a in neighbours)
    lengths = {len(a.ops) for a in neighbours}
    assert len(teacher.ops) - 1 in lengths  # removal
    assert any("<" in op for a in neighbours for op in a.ops if op not in teacher.ops)  # new skip
    assert any(a.ops[1] == "0:conv:4" for a in neighbours)  # shrinkage to half


def test_operations_and_their_errors(tiny_space):
    t = tiny_space.teacher_arch
    shrunk = tiny_space.apply(t, "shrink", layer=1, width=3)
    assert tiny_space.shapes(shrunk)[1] == (3, 8, 8)
    assert tiny_space.shapes(shrunk)[2] == (3, 8, 8)  # the BN follows the new width
    removed = tiny_space.apply(t, "remove", layer=2)  # the stem's BN
    assert len(removed.ops) == len(t.ops) - 1
    skip = tiny_space.apply(t, "skip", source=0, layer=3)
    assert skip.ops[3].endswith("<0")
    with pytest.raises(InvalidArchitectureError, match="classifier"):
        tiny_space.apply(t, "remove", layer=len(t.ops) - 2)
    flat = [k for k, op in enumerate(t.ops) if op.endswith(":fc:24")][0]
    with pytest.raises(InvalidArchitectureError, match="join two"):
        tiny_space.apply(t, "skip", source=1, layer=flat)
    with pytest.raises(InvalidArchitectureError, match="keep their order"):
        tiny_space.validate(Architecture(tiny_space.name, ("input", t.ops[2], t.ops[1], *t.ops[3:])))
    with pytest.raises(InvalidArchitectureError, match="width 99"):
        tiny_space.validate(Architecture(tiny_space.name, ("input", "0:conv:99", *t.ops[2:])))
    with pytest.raises(InfiniteSpaceError):
        list(tiny_space.enumerate())


def test_skip_source_moves_when_its_layer_is_removed(tiny_space):
    t = tiny_space.teacher_arch
    target = [k for k, op in enumerate(t.ops) if "<" in op][0]
    source = int(t.ops[target].split("<")[1])  # the block input (the stem's ReLU)
    out = tiny_space.apply(t, "remove", layer=source)
    assert out.ops[target - 1].endswith(f"<{source - 1}")
    tiny_space.validate(out)
