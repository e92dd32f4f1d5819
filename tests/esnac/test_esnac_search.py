"""The Ray-free ESNAC search: K proposals per step, pending trials, save/restore and kernel transfer."""

from __future__ import annotations

import numpy as np
import pytest

from raynas.architecture import Architecture
from raynas.compress import digits_teacher
from raynas.search.esnac import ESNAC
from raynas.searchers.esnac import ESNACSearcher
from raynas.spaces import NB201Space
from raynas.spaces.compression import CompressionSpace

SMALL = dict(num_kernels=3, fit_iters=10, num_candidates=24, hidden=8)


def objective(space, arch):
    """Synthetic: wide convolutions are good, batch norms cost."""
    d = space.descriptors(arch)
    return float(sum(np.log2(x.out_channels) for x in d if x.kind == "conv") - 2 * sum(x.kind == "bn" for x in d))


def test_k_distinct_proposals_per_step_and_pending_never_repeated(tiny_space):
    search = ESNAC(tiny_space, seed=0, **SMALL)
    assert search.mode == "max" and search.num_init == 3
    for k in range(3):
        arch = search.suggest(f"t{k}")
        search.complete(f"t{k}", objective(tiny_space, arch))
    first = search.suggest("a")
    assert search.steps == 1 and len(search.queue) == 2 and len(search.kernels) == 3
    batch = [first, *search.queue]
    assert len(set(batch)) == 3 and not set(batch) & set(search.evaluated)
    more = [search.suggest(f"p{k}") for k in range(6)]  # with 7 trials pending
    assert len(set(more) | {first}) == 7 and not set(more) & set(search.evaluated)
    for trial, arch in list(search.pending.items()):
        search.complete(trial, objective(tiny_space, arch))
    assert len(search.evaluated) == 10


def test_search_improves_on_its_random_start(tiny_space):
    search = ESNAC(tiny_space, seed=1, **SMALL)
    for k in range(12):
        arch = search.suggest(f"t{k}")
        search.complete(f"t{k}", objective(tiny_space, arch))
    values = [o.value for o in search.observations]
    assert max(values[3:]) > max(values[:3])


def test_searcher_save_restore_continues_identically(tiny_space, tmp_path):
    a = ESNACSearcher(tiny_space, metric="objective", mode="max", seed=2, **SMALL)
    for k in range(4):
        config = a.suggest(f"t{k}")
        a.on_trial_complete(f"t{k}", result={"objective": objective(tiny_space, Architecture.from_config(config))})
    a.suggest("running")  # a step ran: its queue is part of the state
    assert a.search.queue
    path = tmp_path / "state.pkl"
    a.save(str(path))
    b = ESNACSearcher(tiny_space, seed=99, **SMALL)
    b.restore(str(path))
    for k in range(4, 9):
        ca, cb = a.suggest(f"t{k}"), b.suggest(f"t{k}")
        assert ca == cb
        result = {"objective": objective(tiny_space, Architecture.from_config(ca))}
        a.on_trial_complete(f"t{k}", result=result)
        b.on_trial_complete(f"t{k}", result=result)


def test_kernels_transfer_to_another_teacher(tiny_space, tmp_path):
    source = ESNAC(tiny_space, seed=3, **SMALL)
    with pytest.raises(RuntimeError, match="no kernels learned yet"):
        source.save_kernels(tmp_path / "none.pt")
    for k in range(4):
        arch = source.suggest(f"t{k}")
        source.complete(f"t{k}", objective(tiny_space, arch))
    source.suggest("x")
    path = tmp_path / "kernels.pt"
    source.save_kernels(path)

    target_space = CompressionSpace(digits_teacher(width=8), (1, 8, 8))  # another teacher, another family
    target = ESNAC(target_space, seed=0, kernels=path, **SMALL)
    assert len(target.transferred) == 3
    for k in range(5):
        arch = target.suggest(f"t{k}")
        target_space.validate(arch)
        target.complete(f"t{k}", objective(target_space, arch))
    assert target.steps >= 1 and len(target.kernels) == 3


def test_needs_a_compression_space():
    with pytest.raises(TypeError, match="CompressionSpace"):
        ESNAC(NB201Space())


@pytest.mark.parametrize("mode", ["max", "min"])
def test_predict_in_metric_units(tiny_space, mode):
    search = ESNAC(tiny_space, seed=4, mode=mode, **SMALL)
    with pytest.raises(ValueError, match="at least 3 observations"):
        search.predict([tiny_space.teacher_arch])
    sign = 1.0 if mode == "max" else -1.0
    for k in range(8):
        arch = search.suggest(f"t{k}")
        search.complete(f"t{k}", sign * objective(tiny_space, arch))
    archs = [o.arch for o in search.observations]
    mean, variance = search.predict(archs)
    values = np.array([o.value for o in search.observations])
    assert mean.shape == variance.shape == (8,) and (variance >= 0).all()
    assert np.corrcoef(mean, values)[0, 1] > 0.5  # in the metric's units and sign
