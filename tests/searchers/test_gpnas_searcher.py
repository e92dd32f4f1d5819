"""GP-NAS as a search and as a Tune searcher: phases, pending trials, save/restore, a real Tuner run."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from ray import tune

from raynas.architecture import Architecture
from raynas.benchmarks import TabularBenchmark
from raynas.search.gpnas import GPNAS
from raynas.searchers.gpnas import GPNASSearcher
from raynas.spaces import NB201Space
from raynas.spaces.mobilenet import mobilenet_block_space
from raynas.trainables import TabularTrainable

WEIGHT = {"none": 0.0, "skip_connect": 1.0, "nor_conv_1x1": 2.0, "nor_conv_3x3": 3.0, "avg_pool_3x3": 1.5}
#: Small, fast settings: fewer hyperparameter fits than the defaults.
FAST = {"num_initial": 6, "refit_fraction": 1.0, "fit_maxiter": 20}


def value(arch: Architecture) -> float:
    return 50.0 + 2.0 * sum(WEIGHT[op] * (1 + 0.1 * k) for k, op in enumerate(arch.ops))


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def drive(search: GPNAS, steps: int, start: int = 0, objective=value) -> None:
    for k in range(start, start + steps):
        arch = search.suggest(f"t{k}")
        search.complete(f"t{k}", objective(arch))


def test_explores_by_mutual_information_then_exploits():
    search = GPNAS(NB201Space(), mode="max", seed=0, mse_threshold=0.0, max_explore=8, **FAST)
    drive(search, 6)
    assert search.exploring and search.num_explored == 0
    drive(search, 8, start=6)
    assert search.num_explored == 8 and search.last_expected_mse is not None
    drive(search, 10, start=14)
    assert not search.exploring and search.switched_at[0] == 14
    values = sorted(value(o.arch) for o in search.observations)
    assert len({o.arch for o in search.observations}) == 24
    # exploitation found a cell in the top 1 % of the synthetic objective (random: 24 draws rarely do)
    assert values[-1] >= 50.0 + 2.0 * 3 * sum(1 + 0.1 * k for k in range(6)) - 6.0
    mean, variance = search.predict([o.arch for o in search.observations[:3]])
    assert mean.shape == variance.shape == (3,)


def test_concurrent_suggestions_are_distinct_and_condition_on_pending():
    search = GPNAS(NB201Space(), mode="max", seed=1, **FAST)
    drive(search, 12)
    batch = [search.suggest(f"p{k}") for k in range(8)]  # 8 trials pending at once
    assert len(set(batch)) == 8
    assert not set(batch) & {o.arch for o in search.observations}
    # the pending trials entered the model as believers: a refreshed model sees 12 + 8 points
    believer = search.model.condition_on_pending(list(search.pending.values()))
    assert believer.gp.train_inputs[0].shape[0] == 20


def test_save_restore_mid_search_continues_identically(tmp_path):
    space = NB201Space()
    a = GPNASSearcher(space, metric="acc", mode="max", seed=5, **FAST)
    for k in range(14):
        arch = Architecture.from_config(a.suggest(f"t{k}"))
        a.on_trial_complete(f"t{k}", result={"acc": value(arch)})
    a.suggest("running")
    path = tmp_path / "searcher-state.pkl"
    a.save(str(path))
    b = GPNASSearcher(space, seed=123, **FAST)
    b.restore(str(path))
    assert (b.metric, b.mode) == ("acc", "max") and b.search.pending.keys() == {"running"}
    for k in range(14, 24):
        ca, cb = a.suggest(f"t{k}"), b.suggest(f"t{k}")
        assert ca == cb
        result = {"acc": value(Architecture.from_config(ca))}
        a.on_trial_complete(f"t{k}", result=result)
        b.on_trial_complete(f"t{k}", result=result)
    archs = [o.arch for o in b.search.observations]
    assert len(archs) == len(set(archs)) == 24


def test_mobilenet_space_uses_a_candidate_pool():
    space = mobilenet_block_space()

    def objective(arch):
        return sum(float(op) for op in arch.ops[0::3]) + 0.5 * arch.ops[2::3].count("on")

    search = GPNAS(space, mode="min", seed=2, pool_random=200, pool_mutations=100, **FAST)
    drive(search, 16, objective=objective)
    archs = [o.arch for o in search.observations]
    assert len(set(archs)) == 16 and all(space.is_valid(a) for a in archs)
    assert not search._enumerated and search.model.encoding.group_names == ("kernel", "expansion", "se")


class _InterruptAfter(tune.Callback):
    """SIGINT the driver once ``n`` trials completed: Tune stops gracefully and snapshots everything.

    The callback is pickled with the Tuner and comes back on restore; a marker
    file makes it fire only once.
    """

    def __init__(self, n: int, marker: str) -> None:
        self.n, self.done, self.marker = n, 0, marker

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        if self.done >= self.n and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGINT)


def test_tuner_interrupted_and_restored(ray_session, synthetic_nb201_csv, tmp_path):
    bench = TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", test_metric="test_200")
    trainable = tune.with_parameters(TabularTrainable, benchmark=bench)
    total = 12
    tuner = tune.Tuner(
        trainable,
        param_space={"benchmark": "synthetic"},
        tune_config=tune.TuneConfig(
            search_alg=GPNASSearcher(bench.space, seed=0, **FAST), metric="val_200", mode="max",
            num_samples=total, max_concurrent_trials=4, reuse_actors=True,
        ),
        run_config=tune.RunConfig(name="gpnas", storage_path=str(tmp_path), verbose=0,
                                  callbacks=[_InterruptAfter(4, str(tmp_path / "interrupted"))]),
    )
    first = tuner.fit()
    done_first = len(first.get_dataframe())
    assert done_first < total
    restored = tune.Tuner.restore(str(tmp_path / "gpnas"), trainable, resume_errored=True)
    results = restored.fit()
    frame = results.get_dataframe()
    assert len(frame) == total and not results.errors
    archs = [Architecture.from_json(a) for a in frame["config/arch"]]
    assert len(set(archs)) == total  # nothing trained twice across the interruption
    states = sorted((tmp_path / "gpnas").glob("searcher-state-*.pkl"))
    searcher = GPNASSearcher(bench.space)
    searcher.restore(str(states[-1]))
    assert searcher.search.num_evaluated == total and not searcher.search.pending
    assert searcher.search.best().value == pytest.approx(frame["val_200"].max())
