"""The Ray-free ESNAC search: K proposals per step, pending trials, save/restore, kernel transfer, and
recovery from numerical failures of a kernel fit."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from linear_operator.utils.errors import NotPSDError

import raynas.search.esnac as esnac_module
from raynas.architecture import Architecture
from raynas.teachers import digits_teacher
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


# ------------------------------------------------------------------ numerical failures
def run(search, space, start, stop, record=None):
    """Suggestions ``start..stop-1``, each completed with :func:`objective` before the next."""
    suggested = []
    for k in range(start, stop):
        if record is not None and k in record:
            record[k] = search.state_dict()
        arch = search.suggest(f"t{k}")
        space.validate(arch)
        suggested.append(arch)
        search.complete(f"t{k}", objective(space, arch))
    return suggested


@pytest.mark.parametrize("seed, failed_at", [(1236, 5), (1244, 13)])
def test_default_options_complete_the_seeds_whose_noise_went_negative(tiny_space, seed, failed_at):
    """With the default options these seeds raised ``ValueError`` from BoTorch's ``LogNormalPrior`` on the noise
    (suggestion ``failed_at``): Adam stepped the untransformed raw noise below zero. The same state restored
    from ``state_dict`` failed again; both now run on (``benchmarks/esnac_robustness.py`` runs 100 seeds)."""
    search = ESNAC(tiny_space, seed=seed)
    saved = {failed_at - 1: None}
    archs = run(search, tiny_space, 0, 20, record=saved)
    assert len(search.observations) == 20 and len(set(archs)) == 20
    assert search.steps >= 4 and len(search.kernels) == search.num_kernels
    restored = ESNAC(tiny_space, seed=0)
    restored.load_state_dict(saved[failed_at - 1])
    assert run(restored, tiny_space, failed_at - 1, failed_at + 1) == archs[failed_at - 1: failed_at + 1]


def test_projection_keeps_untransformed_noise_in_its_bounds():
    """BoTorch's noise constraint has no transform: the raw parameter is the noise, kept >= 1e-4 by projection."""
    from raynas.surrogates.esnac import build_gp, make_kernel, project_to_bounds

    model = build_gp(make_kernel(seed=0), [0, 1, 2], np.array([-1.0, 0.0, 1.0]))
    noise = model.likelihood.noise_covar
    assert not noise.raw_noise_constraint.enforced
    scale = model.covar_module.raw_outputscale.detach().clone()
    with torch.no_grad():
        noise.raw_noise.fill_(-0.02)
        model.covar_module.raw_outputscale.fill_(-5.0)  # enforced (softplus): any raw value is valid
    project_to_bounds(model)
    assert float(model.likelihood.noise.detach()) == pytest.approx(1e-4)
    assert float(model.covar_module.raw_outputscale.detach()) == -5.0 != float(scale)
    safer = build_gp(make_kernel(seed=0), [0, 1, 2], np.array([-1.0, 0.0, 1.0]), min_noise=1e-2)
    assert float(safer.likelihood.noise.detach()) == pytest.approx(1e-2)


def test_a_diverging_fit_raises_model_fitting_error(tiny_space):
    """A NaN/inf loss or parameter stops the fit with BoTorch's ``ModelFittingError`` (which ESNAC recovers from)."""
    from botorch.exceptions.errors import ModelFittingError

    from raynas.surrogates.esnac import fit_kernel, layer_features, make_kernel, pad_sequences

    rng = np.random.default_rng(0)
    archs = list(dict.fromkeys(tiny_space.sample(rng) for _ in range(30)))[:6]
    table, lengths = pad_sequences([layer_features(tiny_space.descriptors(a)) for a in archs])
    with pytest.raises(ModelFittingError, match="not finite after Adam iteration 0"):
        fit_kernel(make_kernel(seed=0), table, lengths, list(range(6)), np.linspace(-1, 1, 6), iters=3,
                   lr=float("inf"))


class FailingFits:
    """Stands in for ``fit_kernel``: raises ``NotPSDError`` on the chosen calls (0-based), else fits."""

    def __init__(self, fail):
        self.fail, self.calls, self.safe = fail, 0, []
        self.fit = esnac_module.fit_kernel

    def __call__(self, *args, **kwargs):
        call, self.calls = self.calls, self.calls + 1
        self.safe.append(kwargs.get("min_noise") is not None)
        if self.fail(call):
            raise NotPSDError("Matrix not positive definite after repeatedly adding jitter up to 1.0e-03.")
        return self.fit(*args, **kwargs)


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name in ("raynas.search.esnac", "raynas.bo") and r.levelno == logging.WARNING]


def first_step(tiny_space, monkeypatch, fail, seed=5):
    fits = FailingFits(fail)
    search = ESNAC(tiny_space, seed=seed, **SMALL)
    run(search, tiny_space, 0, 3)
    monkeypatch.setattr(esnac_module, "fit_kernel", fits)
    search.suggest("first")
    return search, fits


def test_a_failed_kernel_fit_is_retried_with_a_safer_setting(tiny_space, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    search, fits = first_step(tiny_space, monkeypatch, lambda call: call == 1)
    assert fits.safe == [False, False, True, False]  # kernel 2 once more, with the noise floor
    assert len(search.kernels) == 3 and len(search.queue) == 2
    (message,) = warnings_of(caplog)
    assert "NotPSDError: Matrix not positive definite" in message and "retrying with noise >= 0.01" in message
    assert "kernel 2 of 3" in message


def test_a_kernel_failing_twice_is_skipped_and_the_others_propose(tiny_space, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    search, fits = first_step(tiny_space, monkeypatch, lambda call: call in (1, 2))
    assert fits.calls == 4 and len(search.kernels) == 2 and len(search.queue) == 1  # two proposals
    retry, skip = warnings_of(caplog)
    assert "retrying" in retry and "[step 1, kernel 2 of 3]" in skip and "giving up" in skip and "NotPSDError" in skip


def test_a_step_where_every_kernel_fails_suggests_a_random_unseen_architecture(tiny_space, monkeypatch, caplog):
    """The search goes on (random unseen suggestion), continues after save/restore, and learns again later."""
    caplog.set_level(logging.WARNING)
    healthy = ESNAC(tiny_space, seed=5, **SMALL)
    run(healthy, tiny_space, 0, 3)
    search, fits = first_step(tiny_space, monkeypatch, lambda call: call < 6)
    assert fits.calls == 6 and search.steps == 1 and search.kernels == [] and search.queue == []
    assert search.pending["first"] not in search.evaluated
    assert search.pending["first"] != healthy.suggest("first")  # not the model's choice: a random one
    assert "every kernel of step 1 failed numerically" in warnings_of(caplog)[-1]
    assert sum("giving up" in m for m in warnings_of(caplog)) == 3
    search.complete("first", objective(tiny_space, search.pending["first"]))
    restored = ESNAC(tiny_space, seed=0, **SMALL)
    restored.load_state_dict(search.state_dict())
    assert run(restored, tiny_space, 4, 6) == run(search, tiny_space, 4, 6)  # fits succeed again
    assert len(search.kernels) == 3 and search.steps == 2


def test_predict_falls_back_to_the_prior_when_every_kernel_fails(tiny_space, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    search = ESNAC(tiny_space, seed=6, **SMALL)
    run(search, tiny_space, 0, 3)
    monkeypatch.setattr(esnac_module, "fit_kernel", FailingFits(lambda call: True))
    values = np.array([o.value for o in search.observations])
    mean, variance = search.predict([o.arch for o in search.observations])
    np.testing.assert_allclose(mean, values.mean())
    np.testing.assert_allclose(variance, values.var())
    assert "ESNAC.predict: every kernel failed numerically" in warnings_of(caplog)[-1]
