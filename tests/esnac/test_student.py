"""Students: weight inheritance, the distillation loss, ESNAC's objective and resumable distillation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from raynas.models import count_parameters
from raynas.models.student import (
    DistillationRun, build_student, compression_objective, distillation_loss,
)


def test_shrunk_layers_inherit_teacher_slices(tiny_space):
    t = tiny_space.teacher_arch
    arch = tiny_space.apply(t, "shrink", layer=1, width=5)  # stem conv 8 -> 5 channels
    fc = [k for k, op in enumerate(arch.ops) if op.endswith(":fc:24")][0]
    arch = tiny_space.apply(arch, "shrink", layer=fc, width=7)
    student = build_student(tiny_space, arch)
    teacher = tiny_space.teacher
    conv, bn = student.layers[0], student.layers[1]
    torch.testing.assert_close(conv.weight, teacher[0].weight[:5])
    torch.testing.assert_close(conv.bias, teacher[0].bias[:5])
    torch.testing.assert_close(bn.running_mean, teacher[1].running_mean[:5])
    block_conv = student.layers[3]  # BasicBlock conv1: input channels sliced too
    torch.testing.assert_close(block_conv.weight, teacher[3].conv1.weight[:, :5])
    projection = student.skips[7][0].proj  # the downsample on the block's shortcut
    torch.testing.assert_close(projection[0].weight, teacher[3].downsample[0].weight[:, :5])
    head = student.layers[fc - 1]
    torch.testing.assert_close(head.weight, teacher[6].weight[:7])
    last = student.layers[-1]
    torch.testing.assert_close(last.weight, teacher[9].weight[:, :7])
    fresh = build_student(tiny_space, arch, inherit=False)
    assert not torch.equal(fresh.layers[0].weight, conv.weight)


def test_fc_after_flatten_keeps_channels_aligned(tiny_space):
    t = tiny_space.teacher_arch
    conv2 = [k for k, op in enumerate(t.ops) if op.startswith("6:conv")][0]  # the block's conv2 (16 ch)
    arch = tiny_space.apply(t, "shrink", layer=conv2, width=4)
    student = build_student(tiny_space, arch)
    fc = [m for m in student.layers if isinstance(m, torch.nn.Linear)][0]
    assert fc.in_features == 4 * 2 * 2
    teacher_fc = tiny_space.teacher[6].weight.view(24, 16, 2, 2)
    torch.testing.assert_close(fc.weight.view(24, 4, 2, 2), teacher_fc[:, :4])  # channel c keeps its weights


def test_distillation_loss():
    torch.manual_seed(0)
    s, t = torch.randn(6, 10, requires_grad=True), torch.randn(6, 10)
    y = torch.randint(0, 10, (6,))
    torch.testing.assert_close(distillation_loss(s, t, y, alpha=0.0), F.cross_entropy(s, y))
    assert float(distillation_loss(t, t, y, temperature=3.0, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)
    soft = distillation_loss(s, t, y, temperature=2.0, alpha=1.0)
    expected = 4.0 * (F.softmax(t / 2, 1) * (F.log_softmax(t / 2, 1) - F.log_softmax(s / 2, 1))).sum(1).mean()
    torch.testing.assert_close(soft, expected)
    soft.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, t, y, temperature=0.0)


def test_compression_objective():
    f = compression_objective(90.0, 100.0, 25, 100)
    assert f.ratio == pytest.approx(0.75) and f.f == pytest.approx(0.75 * 1.25 * 0.9)
    assert compression_objective(100.0, 100.0, 0, 100).f == pytest.approx(1.0)
    assert compression_objective(99.0, 100.0, 150, 100).f < 0


def _data(n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x[:64], y[:64], x[64:], y[64:]


def test_distillation_run_reports_and_resumes_identically(tiny_space):
    arch = tiny_space.apply(tiny_space.teacher_arch, "shrink", layer=1, width=4)
    data = _data()
    settings = dict(epochs=3, batch_size=16, seed=1)
    a = DistillationRun(tiny_space, arch, data, **settings)
    first = a.step()
    assert first["params"] == count_parameters(a.model) < first["teacher_params"]
    expected = compression_objective(first["val_acc"], first["teacher_acc"], first["params"], first["teacher_params"])
    assert first["objective"] == pytest.approx(expected.f) and first["epoch"] == 1 and not first["done"]
    state = copy.deepcopy(a.state_dict())  # like a checkpoint on disk: not shared with the live run
    rest = [a.step() for _ in range(2)]
    b = DistillationRun(tiny_space, arch, data, **settings)
    b.load_state_dict(state)
    again = [b.step() for _ in range(2)]
    assert [r["train_loss"] for r in rest] == [r["train_loss"] for r in again]
    assert again[-1]["done"]
    with pytest.raises(RuntimeError, match="already trained"):
        b.step()
    with pytest.raises(ValueError, match="unknown distillation settings"):
        DistillationRun(tiny_space, arch, data, epoch=3)
