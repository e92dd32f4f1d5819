"""Tune domains in ``param_space`` beside a raynas searcher: sampled per trial, plain values in the trainable."""

from __future__ import annotations

import sys

import pytest
import ray.cloudpickle
from ray import tune

from raynas.architecture import Architecture
from raynas.searchers import make_searcher
from raynas.searchers.base import UnsupportedSearchSpaceError, tune_domains
from raynas.spaces import NB201Space

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests

#: Small settings so each model-based searcher proposes from its model within a dozen trials.
OPTIONS = {
    "random": {}, "regevo": {"population_size": 4, "sample_size": 2},
    "bonas": {"num_initial": 4, "pool_size": 50, "epochs": 10, "retrain_every": 4},
    "gpnas": {"num_initial": 4}, "nasbot": {"num_initial": 4, "ea_parents": 2, "ea_elite": 1, "ea_children": 4,
                                              "ea_random": 2, "ea_generations": 1},
}


def trainable(config):
    lr, wd = config["lr"], config["opt"]["wd"]
    assert type(lr) is float and type(wd) is float, (type(lr), type(wd))
    ops = Architecture.from_config(config).ops
    score = sum(op == "nor_conv_3x3" for op in ops) - abs(lr - 0.01) * 10
    tune.report({"score": float(score), "lr": lr, "wd": wd, "momentum": config["momentum"]})


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_learning_rates_reach_the_trainable_as_floats_within_the_domain(ray_session, tmp_path, name):
    searcher = make_searcher(name, NB201Space(), seed=0, **OPTIONS[name])
    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.loguniform(1e-3, 1e-1), "opt": {"wd": tune.uniform(0.0, 1e-3)},
                     "momentum": tune.choice([0.8, 0.9]), "epochs": 1},
        tune_config=tune.TuneConfig(search_alg=searcher, metric="score", mode="max", num_samples=10,
                                    max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    frame = results.get_dataframe()
    assert not results.errors and len(frame) == 10
    assert frame["lr"].between(1e-3, 1e-1).all() and frame["lr"].nunique() == 10
    assert frame["wd"].between(0.0, 1e-3).all() and set(frame["momentum"]) <= {0.8, 0.9}
    assert frame["config/arch"].nunique() == 10


def test_sampling_is_seeded_and_survives_save_restore(tmp_path):
    space = {"lr": tune.loguniform(1e-3, 1e-1)}
    a = make_searcher("random", NB201Space(), metric="score", mode="max", seed=3)
    b = make_searcher("random", NB201Space(), metric="score", mode="max", seed=3)
    for s in (a, b):
        assert s.set_search_properties(None, None, space)
    assert [a.suggest(f"t{k}")["lr"] for k in range(3)] == [b.suggest(f"t{k}")["lr"] for k in range(3)]
    a.save(str(tmp_path / "state.pkl"))
    c = make_searcher("random", NB201Space(), metric="score", mode="max", seed=99)
    c.restore(str(tmp_path / "state.pkl"))
    assert a.suggest("t3")["lr"] == c.suggest("t3")["lr"]


@pytest.mark.parametrize("entry, key", [
    ({"lr": tune.grid_search([0.1, 0.01])}, "'lr'"),
    ({"opt": {"f": tune.sample_from(lambda spec: 1)}}, "'opt/f'"),
    ({"arch": tune.choice(["a", "b"])}, "'arch'"),
])
def test_unsupported_entries_are_rejected_naming_the_key(entry, key):
    with pytest.raises(UnsupportedSearchSpaceError, match=key):
        tune_domains(entry)
