"""Searchers driving real Ray Tune runs on local Ray: concurrency, ASHA, interruption and restore."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from raynas.architecture import Architecture
from raynas.benchmarks import TabularBenchmark
from raynas.searchers import make_searcher
from raynas.trainables import TabularTrainable

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(synthetic_nb201_csv):
    return TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", test_metric="test_200",
                                     fidelities="val_12:12", objective_epochs=200)


def make_tuner(bench, searcher, storage, name, num_samples, max_concurrent=4, seconds_per_epoch=0.0):
    return tune.Tuner(
        tune.with_parameters(TabularTrainable, benchmark=bench, seconds_per_epoch=seconds_per_epoch),
        param_space={"benchmark": "synthetic"},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            metric=bench.objective,
            mode="max",
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            scheduler=ASHAScheduler(max_t=len(bench.fidelities), grace_period=1, reduction_factor=2),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )


@pytest.mark.parametrize("name", ["random", "regevo"])
def test_tuner_with_asha_and_four_concurrent_trials(ray_session, bench, tmp_path, name):
    searcher = make_searcher(name, bench.space, seed=0)  # metric/mode come from TuneConfig
    results = make_tuner(bench, searcher, tmp_path, f"run_{name}", num_samples=24).fit()
    frame = results.get_dataframe()
    assert len(frame) == 24 and not results.errors
    archs = [Architecture.from_json(a) for a in frame["config/arch"]]
    assert len(set(archs)) == 24  # no architecture trained twice
    # ASHA stopped some trials after the 12-epoch rung; the rest reached the objective
    assert set(frame["training_iteration"]) == {1, 2}
    assert (frame["training_iteration"] == 1).any()
    finished = frame[frame["training_iteration"] == 2]
    for _, row in finished.iterrows():
        assert row["val_200"] == pytest.approx(bench.value(Architecture.from_json(row["config/arch"])))
        assert row["test_200"] == pytest.approx(row["val_200"] + 1)
    # searcher state saved by Tune holds every trial as an observation
    state_files = sorted((tmp_path / f"run_{name}").glob("searcher-state-*.pkl"))
    assert state_files
    restored = make_searcher(name, bench.space)
    restored.restore(str(state_files[-1]))
    assert restored.search.num_evaluated == 24 and not restored.search.pending
    assert {o.arch for o in restored.search.observations} == set(archs)


def test_search_stops_when_finite_space_is_exhausted(ray_session, tmp_path):
    rows = [{"k": k, "se": se, "acc": k + (se == "on")} for k in (3, 5, 7) for se in ("on", "off")]
    pd.DataFrame(rows).to_csv(tmp_path / "tiny.csv", index=False)
    tiny = TabularBenchmark.from_csv(tmp_path / "tiny.csv", "acc", space="positional", position_columns=["k", "se"])
    searcher = make_searcher("random", tiny.space, seed=0)
    results = make_tuner(tiny, searcher, tmp_path, "tiny", num_samples=50, max_concurrent=2).fit()
    frame = results.get_dataframe()
    assert len(frame) == 6 and frame["acc"].max() == 8


def _finished_trials(experiment: Path) -> int:
    """Trials that reached their end-of-training checkpoint (written when each trial ends).

    Tune's own files (experiment snapshots, buffered ``result.json``) can lag
    far behind on a loaded machine; checkpoint folders appear at once.
    """
    return sum(1 for trial in experiment.glob("TabularTrainable_*") if any(trial.glob("checkpoint_*")))


def test_cli_search_interrupted_then_resumed(synthetic_nb201_csv, tmp_path):
    """SIGINT a running ``raynas search`` (its own Ray), then ``--resume``: nothing lost or repeated."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    storage, name, total = tmp_path / "store", "interrupted", 20
    command = [sys.executable, "-m", "raynas.cli", "search", "--benchmark", str(synthetic_nb201_csv),
               "--objective", "val_200", "--test-metric", "test_200", "--searcher", "regevo",
               "--num-samples", str(total), "--max-concurrent", "2", "--scheduler", "none",
               "--seconds-per-epoch", "2.0", "--storage", str(storage), "--name", name, "--seed", "3"]
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    experiment = storage / name
    deadline = time.time() + 120
    while _finished_trials(experiment) < 4 and time.time() < deadline and first.poll() is None:
        time.sleep(0.5)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    first.send_signal(signal.SIGINT)  # Tune stops gracefully and snapshots experiment and searcher
    first.wait(timeout=120)
    done_before = _finished_trials(experiment)
    assert 4 <= done_before < total

    resumed = subprocess.run(
        [sys.executable, "-m", "raynas.cli", "search", "--resume", "--storage", str(storage), "--name", name],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "best val_200" in resumed.stdout
    table = pd.read_csv(experiment / "results.csv")
    assert len(table) == total
    assert table["trial_id"].is_unique and table["config/arch"].is_unique
    assert table["val_200"].notna().all()
    assert (experiment / "best_so_far.png").stat().st_size > 0


def test_search_in_uri_storage_reports_resumes_and_reloads(ray_session, synthetic_nb201_csv, tmp_path):
    """``--storage`` may be a URI (s3://, gs://, ...): exercised with file://, through the same pyarrow path."""
    from raynas.searchers.experiment import SearchSpec, latest_experiment, load_results, run_search

    uri = f"file://{tmp_path}/store"
    spec = SearchSpec(searcher="random", benchmark=str(synthetic_nb201_csv), objective="val_200",
                      num_samples=4, max_concurrent=2, scheduler="none", storage=uri, name="remote")
    assert spec.storage == uri and spec.experiment_dir == f"{uri}/remote"
    results, summary = run_search(spec, verbose=False)
    assert len(results) == 4 and summary["results_csv"] == f"{uri}/remote/results.csv"
    assert (tmp_path / "store" / "remote" / "results.csv").exists()
    assert (tmp_path / "store" / "remote" / "raynas.json").exists()
    assert latest_experiment(uri) == f"{uri}/remote"
    reloaded, loaded_spec, metric, mode = load_results(f"{uri}/remote")
    assert len(reloaded) == 4 and loaded_spec.storage == uri and loaded_spec.name == "remote"
    again, _ = run_search(loaded_spec, resume=True, verbose=False)  # a finished search resumes as done
    assert len(again) == 4


def test_warm_start_from_earlier_trials_keeps_each_fidelity(ray_session, bench, tmp_path):
    searcher = make_searcher("random", bench.space, seed=1)
    results = make_tuner(bench, searcher, tmp_path, "first", num_samples=16).fit()
    frame = results.get_dataframe()
    assert (frame["training_iteration"] == 1).any()  # ASHA stopped some at the 12-epoch rung
    fresh = make_searcher("bonas", bench.space, metric=bench.objective, mode="max", seed=0)
    fresh.add_evaluated_trials(results._experiment_analysis, bench.objective)
    fidelity = {Architecture.from_json(a): float(t) for a, t in zip(frame["config/arch"], frame["training_iteration"])}
    observations = fresh.search.observations
    assert len(observations) == 16
    assert all(o.fidelity == fidelity[o.arch] for o in observations)
    # the engine's data mark the 12-epoch values as not full fidelity
    data = fresh.search.model_data()
    assert sorted(data.full.tolist()) == sorted((frame["training_iteration"] == 2).tolist())
