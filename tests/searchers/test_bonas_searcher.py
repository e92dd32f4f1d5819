"""The BONAS searcher: Ray-free lifecycle (pending, fidelities, save/restore) and a real Tune run."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from raynas.architecture import Architecture
from raynas.benchmarks import TabularBenchmark
from raynas.search.bonas import BONAS, evolutionary_pool
from raynas.searchers.bonas import BONASSearcher
from raynas.spaces import NB101Space, NB201Space
from raynas.trainables import TabularTrainable

#: Small and quick settings: the tests check behaviour, not sample efficiency.
FAST = dict(pool_size=150, hidden=16, layers=2, head_hidden=16, epochs=60, warm_steps=15, lr=1e-2)


def value(arch: Architecture) -> float:
    return float(sum(op == "nor_conv_3x3" for op in arch.ops) + 0.1 * sum(op == "nor_conv_1x1" for op in arch.ops))


def drive(searcher: BONASSearcher, start: int, stop: int) -> list[Architecture]:
    archs = []
    for k in range(start, stop):
        arch = Architecture.from_config(searcher.suggest(f"t{k}"))
        searcher.on_trial_complete(f"t{k}", result={"acc": value(arch), "training_iteration": 1})
        archs.append(arch)
    return archs


def test_evolutionary_pool_mutates_tournament_winners_and_excludes_seen():
    space, rng = NB201Space(), np.random.default_rng(0)
    population = [(space.sample(rng), float(k)) for k in range(10)]
    seen = {a for a, _ in population}
    pool = evolutionary_pool(space, population, rng, 300, tournament_size=10, exclude=seen.__contains__,
                             multi_edit_probability=0.0, max_edits=1)
    best = population[-1][0]  # a tournament of the whole population always picks the best
    neighbours = set(space.neighbours(best))
    # one-edit children of the best fill the pool first; random cells top it up
    assert set(pool[: len(neighbours)]) == neighbours - seen
    assert len(pool) == len(set(pool)) == 300 and not seen & set(pool)
    pool = evolutionary_pool(space, population, rng, 300, tournament_size=3, exclude=seen.__contains__)
    assert len(pool) == 300 and not seen & set(pool)
    nb101 = NB101Space()
    population = [(nb101.sample(rng), float(k)) for k in range(5)]
    assert all(nb101.is_valid(a) for a in evolutionary_pool(nb101, population, rng, 50, tournament_size=2,
                                                            exclude=lambda a: False))


def test_first_ten_are_random_then_the_model_proposes():
    searcher = BONASSearcher(NB201Space(), metric="acc", mode="max", seed=0, amortize_training=False,
                             explore_probability=0.0, **FAST)  # every model suggestion scores EI
    drive(searcher, 0, 10)
    assert searcher.search.predictor.network is None  # random phase: no model yet
    drive(searcher, 10, 12)
    assert searcher.search.predictor.trainings == 1 and searcher.search.trained_at == 10
    drive(searcher, 12, 21)
    assert searcher.search.predictor.trainings == 2 and searcher.search.trained_at == 20
    assert set(searcher.search.last_timing) == {"model", "pool", "acquisition"}


def test_amortized_retraining_is_spread_over_the_next_k_suggestions():
    searcher = BONASSearcher(NB201Space(), metric="acc", mode="max", seed=0, amortize_above=15, **FAST)
    search = searcher.search
    drive(searcher, 0, 21)  # the 21st suggestion (20 observations) starts a retraining
    run = search.predictor.training_run
    assert run is not None and search.started_at == 20 and search.trained_at == 10
    per_suggestion = math.ceil(run.total / search.retrain_every)
    assert run.done == per_suggestion
    drive(searcher, 21, 30)  # nine more slices complete it: the new network is in use
    assert search.predictor.training_run is None and search.predictor.trainings == 2 and search.trained_at == 20
    drive(searcher, 30, 31)
    assert search.predictor.training_run is not None and search.started_at == 30


def test_pending_trials_are_fantasised_and_concurrent_suggestions_differ():
    searcher = BONASSearcher(NB201Space(), metric="acc", mode="max", seed=1, **FAST)
    assert searcher.set_max_concurrency(4)
    drive(searcher, 0, 15)
    pending = [Architecture.from_config(searcher.suggest(f"p{k}")) for k in range(4)]
    assert searcher.suggest("p4") is None  # the limit is enforced by the searcher
    assert len(set(pending)) == 4 and not set(pending) & {o.arch for o in searcher.search.observations}
    predictor = searcher.search.predictor
    phi = predictor.embed(pending)
    plain = predictor.acquisition_model().posterior(phi.unsqueeze(-2))
    believer = predictor.acquisition_model(pending).posterior(phi.unsqueeze(-2))
    assert torch.allclose(plain.mean, believer.mean, atol=1e-8)
    assert (believer.variance < plain.variance).all()


def test_early_stopped_observations_are_data_but_never_the_incumbent():
    space = NB201Space()
    search = BONAS(space, mode="max", seed=0, **FAST)
    archs = [search.suggest(f"t{k}") for k in range(4)]
    for k, (arch, fidelity, val) in enumerate(zip(archs, (2, 1, 2, 1), (0.5, 0.9, 0.7, 0.1))):
        search.complete(f"t{k}", val, fidelity=fidelity)
    data = search.model_data()
    assert data.archs == archs and data.full.tolist() == [True, False, True, False]
    dropping = BONAS(space, mode="min", seed=0, low_fidelity="drop", **FAST)
    for k, (arch, fidelity) in enumerate(zip(archs, (2, 1, 2, 1))):
        dropping.add_evaluated(arch, float(k), fidelity=fidelity)
    data = dropping.model_data()
    assert data.archs == [archs[0], archs[2]] and data.values.tolist() == [-0.0, -2.0]  # oriented: larger is better


def test_save_restore_mid_search_continues_identically(tmp_path):
    space = NB201Space()
    a = BONASSearcher(space, metric="acc", mode="max", seed=5, amortize_above=15, **FAST)
    drive(a, 0, 23)  # the second GCN training is in progress
    a.suggest("running")  # a trial live at the snapshot
    assert a.search.predictor.training_run is not None
    path = tmp_path / "searcher-state.pkl"
    a.save(str(path))
    assert os.listdir(tmp_path) == ["searcher-state.pkl"]
    b = BONASSearcher(space, seed=123, amortize_above=15, **FAST)  # as Tuner.restore unpickles a fresh copy
    b.restore(str(path))
    assert b.search.pending.keys() == {"running"} and b.search.trained_at == a.search.trained_at
    for k in range(23, 45):  # the run completes, and the next one starts (at 30) and completes
        ca, cb = a.suggest(f"t{k}"), b.suggest(f"t{k}")
        assert ca == cb
        result = {"acc": value(Architecture.from_config(ca)), "training_iteration": 1}
        a.on_trial_complete(f"t{k}", result=result)
        b.on_trial_complete(f"t{k}", result=result)
    seen = [o.arch for o in b.search.observations] + list(b.search.pending.values())
    assert len(seen) == len(set(seen)) == 46
    assert b.search.predictor.trainings == a.search.predictor.trainings == 3


@pytest.fixture(scope="module")
def bench(synthetic_nb201_csv):
    return TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", test_metric="test_200",
                                     fidelities="val_12:12", objective_epochs=200)


def _tuner(bench, searcher, storage, name, num_samples):
    return tune.Tuner(
        tune.with_parameters(TabularTrainable, benchmark=bench),
        param_space={"benchmark": "synthetic"},
        tune_config=tune.TuneConfig(
            search_alg=searcher, metric=bench.objective, mode="max", num_samples=num_samples,
            max_concurrent_trials=4, reuse_actors=True,
            scheduler=ASHAScheduler(max_t=len(bench.fidelities), grace_period=1, reduction_factor=2),
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )


def test_tune_run_with_four_concurrent_trials_then_restore_and_continue(ray_session, bench, tmp_path):
    searcher = BONASSearcher(bench.space, seed=0, **FAST)  # metric/mode come from TuneConfig
    results = _tuner(bench, searcher, tmp_path, "bonas", num_samples=24).fit()
    frame = results.get_dataframe()
    assert len(frame) == 24 and not results.errors
    tried = [Architecture.from_json(a) for a in frame["config/arch"]]
    assert len(set(tried)) == 24  # concurrent (pending) suggestions never coincided
    assert set(frame["training_iteration"]) == {1, 2}  # ASHA cut some trials short
    assert searcher.search.predictor.trainings >= 2  # the model was used, and retrained

    # the searcher state Tune saved: restore it into a fresh searcher and continue the search
    state = sorted((tmp_path / "bonas").glob("searcher-state-*.pkl"))[-1]
    restored = BONASSearcher(bench.space, seed=99, **FAST)
    restored.restore(str(state))
    assert (restored.metric, restored.mode) == (bench.objective, "max")
    assert restored.search.num_evaluated == 24 and restored.search.predictor.network is not None
    assert {o.arch for o in restored.search.observations} == set(tried)
    for k in range(12):
        config = restored.suggest(f"more{k}")
        arch = Architecture.from_config(config)
        restored.on_trial_complete(f"more{k}", result={bench.objective: bench.value(arch), "training_iteration": 2})
        tried.append(arch)
    assert len(set(tried)) == 36  # nothing repeated after the restore
