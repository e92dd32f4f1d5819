"""NASBOT: the Ray-free search (schedule, EA, pending, EI, restore) and a real Tune run on local Ray."""

from __future__ import annotations

import numpy as np
import pytest
from ray import tune

from raynas.architecture import Architecture
from raynas.benchmarks import TabularBenchmark
from raynas.search.nasbot import NASBOT, default_nu_str, ucb_beta_sqrt
from raynas.searchers.nasbot import NASBOTSearcher
from raynas.spaces import NB201Space
from raynas.spaces.macro import MacroMLPSpace
from raynas.trainables import TabularTrainable

SMALL = dict(num_initial=5, ea_parents=4, ea_elite=2, ea_children=8, ea_random=4, ea_generations=2, refit_every=5)


def value(arch):
    """Synthetic NB201 objective: conv3x3 edges and a skip on 0->3 are good."""
    return float(sum(op == "nor_conv_3x3" for op in arch.ops) + 0.5 * (arch.ops[3] == "skip_connect"))


def test_ucb_schedule_and_settings():
    assert ucb_beta_sqrt(1, 3.0) == pytest.approx(np.sqrt(1.5 * np.log(7)))
    assert ucb_beta_sqrt(10, 3.0) < ucb_beta_sqrt(100, 3.0)
    assert default_nu_str(NB201Space()) == 2.0 and default_nu_str(MacroMLPSpace()) == 0.5
    with pytest.raises(ValueError, match="acquisition must be 'ucb' or 'ei'"):
        NASBOT(NB201Space(), acquisition="pi")


@pytest.mark.parametrize("acquisition", ["ucb", "ei"])
def test_sequential_search_improves_on_random_start(acquisition):
    search = NASBOT(NB201Space(), mode="max", seed=0, acquisition=acquisition, **SMALL)
    for k in range(14):
        arch = search.suggest(f"t{k}")
        search.complete(f"t{k}", value(arch))
    values = [o.value for o in search.observations]
    assert len({o.arch for o in search.observations}) == 14
    assert max(values[5:]) > max(values[:5])
    assert search._hypers is not None and search.distances.pairs_solved > 0


def test_pending_suggestions_are_distinct_and_unseen():
    search = NASBOT(NB201Space(), mode="max", seed=1, **SMALL)
    for k in range(6):
        arch = search.suggest(f"t{k}")
        search.complete(f"t{k}", value(arch))
    pending = [search.suggest(f"p{k}") for k in range(6)]  # six workers ask at once
    assert len(set(pending)) == 6
    assert not set(pending) & set(search.evaluated)


def test_min_mode_and_macro_space():
    space = MacroMLPSpace(max_layers=8, sample_layers=(2, 4))
    search = NASBOT(space, mode="min", seed=2, **SMALL)
    for k in range(8):
        arch = search.suggest(f"t{k}")
        space.validate(arch)
        size = sum(int(op.split(":")[1]) for op in arch.ops[1:-1] if ":" in op)
        search.complete(f"t{k}", float(size))
    assert len({o.arch for o in search.observations}) == 8


def test_save_restore_mid_search_continues_identically(tmp_path):
    a = NASBOTSearcher(NB201Space(), metric="acc", mode="max", seed=3, **SMALL)
    for k in range(9):
        config = a.suggest(f"t{k}")
        a.on_trial_complete(f"t{k}", result={"acc": value(Architecture.from_config(config))})
    a.suggest("running")
    path = tmp_path / "state.pkl"
    a.save(str(path))
    b = NASBOTSearcher(NB201Space(), seed=99, **SMALL)
    b.restore(str(path))
    for k in range(9, 14):
        ca, cb = a.suggest(f"t{k}"), b.suggest(f"t{k}")
        assert ca == cb
        result = {"acc": value(Architecture.from_config(ca))}
        a.on_trial_complete(f"t{k}", result=result)
        b.on_trial_complete(f"t{k}", result=result)
    archs = [o.arch for o in b.search.observations] + list(b.search.pending.values())
    assert len(archs) == len(set(archs)) == 15


def make_tuner(bench, searcher, storage, name, num_samples):
    return tune.Tuner(
        tune.with_parameters(TabularTrainable, benchmark=bench),
        param_space={"benchmark": "synthetic"},
        tune_config=tune.TuneConfig(
            search_alg=searcher, metric=bench.objective, mode="max", num_samples=num_samples,
            max_concurrent_trials=4, reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )


def test_tuner_four_concurrent_then_restored_searcher_continues(ray_session, synthetic_nb201_csv, tmp_path):
    bench = TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", test_metric="test_200")
    searcher = NASBOTSearcher(bench.space, seed=0, **SMALL)  # metric/mode from TuneConfig
    first = make_tuner(bench, searcher, tmp_path, "first", num_samples=10).fit()
    frame = first.get_dataframe()
    assert len(frame) == 10 and not first.errors
    archs = [Architecture.from_json(a) for a in frame["config/arch"]]
    assert len(set(archs)) == 10
    state = sorted((tmp_path / "first").glob("searcher-state-*.pkl"))[-1]

    resumed = NASBOTSearcher(bench.space, seed=0, **SMALL)
    resumed.restore(str(state))
    assert resumed.search.num_evaluated == 10 and resumed.metric == "val_200"
    second = make_tuner(bench, resumed, tmp_path, "second", num_samples=6).fit()
    more = [Architecture.from_json(a) for a in second.get_dataframe()["config/arch"]]
    assert len(more) == 6 and not second.errors
    assert len(set(archs) | set(more)) == 16  # nothing evaluated twice across the restore
    assert resumed.search.num_evaluated == 16 and not resumed.search.pending
