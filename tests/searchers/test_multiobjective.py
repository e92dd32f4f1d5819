"""Several objectives through ``tune.Tuner``: metric and mode as lists, interrupted and restored."""

from __future__ import annotations

import pytest
from ray import tune

from raynas.architecture import Architecture
from raynas.benchmarks import TabularBenchmark
from raynas.pareto import ComputedObjective
from raynas.searchers.bonas import BONASSearcher
from raynas.searchers.gpnas import GPNASSearcher
from raynas.spaces import NB201Space
from raynas.trainables import TabularTrainable
from tests.searchers.test_gpnas_searcher import _InterruptAfter


@pytest.fixture(scope="module")
def flops_table(synthetic_flops_csv):
    """The synthetic NB201 table with a ``flops`` column (tests/conftest.py)."""
    return synthetic_flops_csv


def test_metric_and_mode_lists_are_checked():
    flops = ComputedObjective("flops", "min", lambda arch: 1.0)
    searcher = GPNASSearcher(NB201Space(), metric=["val_200", "flops"], mode=["max", "min"],
                             computed_objectives=[flops])
    assert searcher.metric == "val_200" and searcher.mode == "max" and searcher.search.mode == "max"
    assert searcher.objectives == [("val_200", "max"), ("flops", "min")]
    with pytest.raises(ValueError, match="exactly one metric is learned"):
        GPNASSearcher(NB201Space(), metric=["val_200", "params"], mode=["max", "min"], computed_objectives=[flops])
    with pytest.raises(ValueError, match="has mode 'max' here but 'min'"):
        GPNASSearcher(NB201Space(), metric=["val_200", "flops"], mode=["max", "max"], computed_objectives=[flops])
    with pytest.raises(ValueError, match="a mode for each"):
        GPNASSearcher(NB201Space(), metric=["val_200", "flops"], mode="max", computed_objectives=[flops])


def test_two_metric_tuner_run_interrupted_and_restored(ray_session, flops_table, tmp_path):
    bench = TabularBenchmark.from_csv(str(flops_table), "val_200")
    trainable = tune.with_parameters(TabularTrainable, benchmark=bench)
    flops = ComputedObjective("flops", "min", lambda arch: bench.value(arch, "flops"), reference=60.0)
    total = 9
    searcher = BONASSearcher(bench.space, metric=["val_200", "flops"], mode=["max", "min"], seed=0,
                             computed_objectives=[flops], num_initial=3, pool_size=100, epochs=20)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=total, max_concurrent_trials=2,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name="mo", storage_path=str(tmp_path), verbose=0,
                                  callbacks=[_InterruptAfter(4, str(tmp_path / "interrupted"))]),
    )
    first = tuner.fit()
    assert len(first.get_dataframe()) < total
    restored = tune.Tuner.restore(str(tmp_path / "mo"), trainable, resume_errored=True)
    results = restored.fit()
    frame = results.get_dataframe()
    assert len(frame) == total and not results.errors
    # the tabular trainable reports every numeric column: both objectives are in the results
    assert {"val_200", "flops"} <= set(frame.columns)
    archs = [Architecture.from_json(a) for a in frame["config/arch"]]
    assert len(set(archs)) == total
    assert frame["flops"].tolist() == pytest.approx([bench.value(a, "flops") for a in archs])
    states = sorted((tmp_path / "mo").glob("searcher-state-*.pkl"))
    again = BONASSearcher(bench.space, computed_objectives=[flops])
    again.restore(str(states[-1]))
    assert again.objectives == [("val_200", "max"), ("flops", "min")] and again.metric == "val_200"
    assert again.search.num_evaluated == total


def test_raynas_search_with_objectives_and_a_constraint(ray_session, flops_table, tmp_path, capsys):
    import json

    from raynas import cli

    argv = ["search", "--benchmark", str(flops_table), "--objectives", "val_200:max,flops:min",
            "--computed", "flops", "--reference", "50,40", "--constraint", "flops<=30", "--searcher", "regevo",
            "--num-samples", "8", "--max-concurrent", "2", "--scheduler", "none", "--storage", str(tmp_path),
            "--name", "mo", "--searcher-option", "population_size=4"]
    assert cli.main(argv) == 0
    saved = json.loads((tmp_path / "mo" / "raynas.json").read_text())
    assert saved["objectives"] == "val_200:max,flops:min" and saved["computed"] == ["flops"]
    assert saved["objective"] == "val_200" and saved["constraints"] == ["flops<=30"] and saved["reference"] == [50, 40]
    import pandas as pd

    frame = pd.read_csv(tmp_path / "mo" / "results.csv")
    assert len(frame) == 8 and (frame["flops"] <= 30).all()  # the constraint held for every trial
    capsys.readouterr()
    # what the flags cannot be: several learned objectives, a column the table lacks, a resumed search changed
    bad = argv[:4] + ["val_200:max,flops:min", "--computed", "", "--storage", str(tmp_path)]
    assert cli.main(bad) == 2 and "exactly one objective" in capsys.readouterr().err
    assert cli.main(["search", "--resume", "--storage", str(tmp_path), "--constraint", "flops<=9"]) == 2
    assert "cannot change a resumed search" in capsys.readouterr().err
