"""The cost benchmark (raynas.cost): simulated epochs and wall-clock, and ASHA's rule equal to Ray Tune's."""

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raynas.benchmarks import TabularBenchmark
from raynas.cost import (
    CONTINUE, STOP, AshaRule, check_asha, cost_mode_requested, plot_cost,
    run_cost, run_cost_bench, summarise_cost,
)

# Three architectures of a one-position space. Rungs: "low" at 2 epochs, the objective "acc" at 6.
# q is the optimum; r is poor at low fidelity, p in between. "speed" (mean 2): time per epoch .5, 1, 1.5.
ROWS = [
    {"a": "p", "low": 0.5, "acc": 0.6, "test": 0.55, "speed": 1.0},
    {"a": "q", "low": 0.9, "acc": 0.95, "test": 0.9, "speed": 2.0},
    {"a": "r", "low": 0.2, "acc": 0.7, "test": 0.65, "speed": 3.0},
]


@pytest.fixture
def tiny_csv(tmp_path):
    path = tmp_path / "tiny.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    return path


@pytest.fixture
def tiny(tiny_csv):
    return TabularBenchmark.from_csv(tiny_csv, "acc", space="positional", position_columns=["a"],
                                     test_metric="test", fidelities="low:2", objective_epochs=6)


def simulate(bench, order, workers, scheduler, **kwargs):
    """``run_cost`` with the random searcher suggesting ``order`` first (so the run can be worked out by hand)."""
    points = [bench.space.make([name]) for name in order]
    kwargs.setdefault("reduction_factor", 2)
    kwargs.setdefault("budgets", ())
    return run_cost(bench, "random", seed=0, workers=workers, scheduler=scheduler,
                    searcher_kwargs={"points_to_evaluate": points}, **kwargs)


def results(record):
    """(time, architecture, rung, epochs so far, trial ended) of every result, in the order processed."""
    return [(e.time, e.arch.ops[0], e.rung, e.epochs, e.stopped) for e in record.events]


def test_one_worker_no_scheduler(tiny):
    record = simulate(tiny, "rpq", 1, "none", budgets=(5, 12, 100), max_epochs=1000)
    assert results(record) == [(2, "r", 0, 2, False), (6, "r", 1, 6, True), (8, "p", 0, 8, False),
                               (12, "p", 1, 12, True), (14, "q", 0, 14, False), (18, "q", 1, 18, True)]
    assert (record.epochs_to_optimum, record.wallclock_to_optimum) == (18, 18)
    assert (record.trials, record.stopped_early, record.full_evaluations) == (3, 0, 3)
    assert (record.epochs, record.wallclock) == (18, 18)  # the space is exhausted
    assert record.trace == [[6, 0.7, 0.65, 6], [18, 0.95, 0.9, 18]]  # p (0.6) is no improvement
    # 5: crossed by r's full result (6 epochs), nothing known within 5; 12: reached exactly; 100: final best
    assert math.isnan(record.test_at_epochs[5])
    assert record.test_at_epochs[12] == 0.65 and record.test_at_epochs[100] == 0.9


def test_one_worker_asha_stops_the_poor_trial(tiny):
    record = simulate(tiny, "prq", 1, "asha")
    # p sets the first cutoff; r (0.2 < 0.5) stops at 2 epochs; q (0.9 > median(0.5, 0.2)) runs to the end
    assert results(record) == [(2, "p", 0, 2, False), (6, "p", 1, 6, True), (8, "r", 0, 8, True),
                               (10, "q", 0, 10, False), (14, "q", 1, 14, True)]
    assert (record.epochs_to_optimum, record.wallclock_to_optimum) == (14, 14)
    assert (record.trials, record.stopped_early, record.full_evaluations) == (3, 1, 2)
    without = simulate(tiny, "prq", 1, "none")
    assert without.epochs_to_optimum == 18


def test_two_workers(tiny):
    record = simulate(tiny, "prq", 2, "none")
    # ties at t=2 and t=6 in start order; q starts when a worker frees at 6
    assert results(record) == [(2, "p", 0, 2, False), (2, "r", 0, 4, False), (6, "p", 1, 8, True),
                               (6, "r", 1, 12, True), (8, "q", 0, 14, False), (12, "q", 1, 18, True)]
    assert (record.epochs_to_optimum, record.wallclock_to_optimum) == (18, 12)
    assert record.trace == [[8, 0.6, 0.55, 6], [12, 0.7, 0.65, 6], [18, 0.95, 0.9, 12]]

    record = simulate(tiny, "prq", 2, "asha")
    # r is stopped at t=2, so q starts at 2 and finishes at 8
    assert results(record) == [(2, "p", 0, 2, False), (2, "r", 0, 4, True), (4, "q", 0, 6, False),
                               (6, "p", 1, 10, True), (8, "q", 1, 14, True)]
    assert (record.epochs_to_optimum, record.wallclock_to_optimum) == (14, 8)
    assert (record.trials, record.stopped_early, record.full_evaluations) == (3, 1, 2)


def test_speed_column_and_stopping_rules(tiny):
    record = simulate(tiny, "prq", 2, "none", speed_column="speed")  # time per epoch p .5, q 1, r 1.5
    assert results(record) == [(1, "p", 0, 2, False), (3, "p", 1, 6, True), (3, "r", 0, 8, False),
                               (5, "q", 0, 10, False), (9, "r", 1, 14, True), (9, "q", 1, 18, True)]
    assert (record.epochs_to_optimum, record.wallclock_to_optimum) == (18, 9)
    # the epoch budget: stop at the result that reaches it (in-flight p is started but never delivers)
    record = simulate(tiny, "rpq", 1, "none", max_epochs=7)
    assert (record.epochs, record.wallclock, record.trials, record.epochs_to_optimum) == (8, 8, 2, None)
    # optimum found and the largest budget passed: nothing more is measured
    record = simulate(tiny, "qpr", 1, "none", budgets=(5,))
    assert (record.epochs_to_optimum, record.epochs, record.trials) == (6, 6, 1)
    with pytest.raises(ValueError, match="must hold positive numbers"):
        tiny_bad = TabularBenchmark(tiny.frame.assign(speed=[1.0, 0.0, 2.0]), tiny.space, tiny.architectures,
                                    "acc", fidelities=tiny.fidelities[:-1], objective_epochs=6)
        simulate(tiny_bad, "pqr", 1, "none", speed_column="speed")


def test_summary_and_report(tiny, tmp_path):
    found = simulate(tiny, "prq", 1, "asha")
    missed = simulate(tiny, "rpq", 1, "none", max_epochs=7)
    block = summarise_cost([found, missed], max_epochs=7)
    assert block["epochs_to_optimum"] == [14, None] and block["wallclock_to_optimum"] == [14, None]
    assert block["mean_epochs_to_optimum"] == (14 + 7) / 2  # a miss counts as max_epochs
    assert block["mean_wallclock_to_optimum"] == (14 + 8) / 2  # ... and as the time its run ended
    assert block["found_fraction"] == 0.5
    assert block["trials"] == 2.5 and block["stopped_early"] == 0.5 and block["full_evaluations"] == 1.5

    out = tmp_path / "cost.json"
    report = run_cost_bench(tiny, ["random", "regevo"], seeds=2, workers=2, scheduler="asha", grace_period=1,
                            reduction_factor=2, max_epochs=50, budgets=(10, 20, 4000), out=out, progress=False)
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["fidelities"] == [["low", 2], ["acc", 6]] and on_disk["workers"] == 2
    assert on_disk["scheduler"]["name"] == "asha" and on_disk["scheduler"]["max_t"] == 2
    assert on_disk["scheduler"]["milestones"] == [1, 2] and on_disk["budgets"] == [10, 20]
    for block in on_disk["searchers"].values():
        assert len(block["epochs_to_optimum"]) == 2 and set(block["test_at_epochs"]) == {"10", "20"}
        assert all(0 < e <= 18 for e in block["epochs_to_optimum"])  # three architectures: always found
    from PIL import Image

    with Image.open(plot_cost(report, tmp_path / "cost.png")) as image:
        assert image.size[0] > 500


def _ray_trial(trial_id):
    from ray.tune.experiment import Trial

    return Trial("__fake", trial_id=trial_id, stub=True)  # no Ray runtime needed


@pytest.mark.parametrize("grace, rf, max_t, mode, stop_last", [
    (1, 2, 2, "max", True), (1, 3, 9, "max", True), (2, 3, 9, "min", True), (1, 4, 7, "min", True),
    (2, 2, 8, "max", True), (1, 3, 5, "min", True), (1, 1.5, 6, "max", True), (1, 2, 9, "max", False),
])
def test_asha_rule_equals_ray(grace, rf, max_t, mode, stop_last):
    """Same (trial, iteration, value) stream into Ray's AsyncHyperBandScheduler and AshaRule: same decisions."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    assert (TrialScheduler.CONTINUE, TrialScheduler.STOP) == (CONTINUE, STOP)
    ray_asha = AsyncHyperBandScheduler(time_attr="training_iteration", metric="m", mode=mode, max_t=max_t,
                                       grace_period=grace, reduction_factor=rf, stop_last_trials=stop_last)
    ours = AshaRule(max_t, grace, rf, mode, stop_last_trials=stop_last)
    assert ours.milestones == [m for m, _ in ray_asha._brackets[0]._rungs]
    rng = np.random.default_rng([grace, int(rf * 10), max_t, mode == "max"])
    values = [0.1, 0.2, 0.3, 0.5, 0.8, float("nan")]  # few values: many ties; NaN as Ray takes it
    active: dict[str, list] = {}
    started = decisions = stops = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanpercentile of NaN only, in both
        while started < 60 or active:
            if started < 60 and (not active or rng.random() < 0.3):
                trial = _ray_trial(f"t{started}")
                ray_asha.on_trial_add(None, trial)
                active[trial.trial_id] = [trial, 0]
                started += 1
                continue
            trial_id = list(active)[rng.integers(len(active))]
            trial, iteration = active[trial_id]
            iteration += 1
            active[trial_id][1] = iteration
            value = values[rng.integers(len(values))]
            result = {"training_iteration": iteration, "m": value}
            expected = ray_asha.on_trial_result(None, trial, result)
            assert ours.on_result(trial_id, iteration, value) == expected, (trial_id, iteration, value)
            decisions += 1
            if expected == STOP or iteration >= max_t:  # stopped, or done (the trainable's last rung)
                stops += expected == STOP and iteration < max_t
                ray_asha.on_trial_complete(None, trial, result)
                ours.on_complete(trial_id, iteration, value)
                del active[trial_id]
    assert decisions > 60 and stops > 0
    assert ours.num_stopped == ray_asha._num_stopped
    for milestone, recorded in ray_asha._brackets[0]._rungs:
        mine = ours.recorded(milestone)
        assert list(mine) == list(recorded)
        assert np.array_equal(list(mine.values()), list(recorded.values()), equal_nan=True)


def test_asha_rule_in_a_simulation_matches_ray(synthetic_nb201_csv):
    """A whole simulated search: every scheduler decision of run_cost replayed through Ray's scheduler."""
    from ray.tune.schedulers import AsyncHyperBandScheduler

    bench = TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", fidelities="val_12:12", objective_epochs=200)
    record = run_cost(bench, "random", seed=3, workers=3, scheduler="asha", reduction_factor=3, max_epochs=6000)
    ray_asha = AsyncHyperBandScheduler(metric="val_200", mode="max", max_t=2, grace_period=1, reduction_factor=3)
    trials = {}
    for event in record.events:
        if event.trial_id not in trials:
            trials[event.trial_id] = _ray_trial(event.trial_id)
            ray_asha.on_trial_add(None, trials[event.trial_id])
        result = {"training_iteration": event.rung + 1, "val_200": event.value}
        decision = ray_asha.on_trial_result(None, trials[event.trial_id], result)
        assert (decision == STOP) == event.stopped
        if event.stopped:
            ray_asha.on_trial_complete(None, trials[event.trial_id], result)
    assert 0 < record.stopped_early < record.trials


def test_grace_period_validation(tiny_csv, tiny):
    from raynas.schedule import ScheduleError, grace_iterations

    rungs = [f.epochs for f in tiny.fidelities]
    assert grace_iterations(rungs, None) == 1 and grace_iterations(rungs, 2) == 1
    with pytest.raises(ScheduleError, match=r"grace period 5 epochs is not a rung of this search; its rungs are at "
                                            r"2, 6 epochs: pass --grace-period 2"):
        grace_iterations(rungs, 5)
    with pytest.raises(ScheduleError, match=r"grace period 6 epochs can never stop a trial: trials end at 6 epochs"):
        check_asha(tiny, 2)
    flat = TabularBenchmark.from_csv(tiny_csv, "acc", space="positional", position_columns=["a"])
    with pytest.raises(ScheduleError, match=r"ASHA can never stop a trial here: trials report once.*"
                                            r"--fidelities COL:EPOCHS"):
        run_cost(flat, "random", 0, 1, "asha")
    assert run_cost(flat, "random", 0, 2, "none").full_evaluations == 3


def _bench_args(argv):
    """``raynas bench`` arguments as the CLI parses them (its parser has the cost options)."""
    from raynas.cli import build_parser

    return build_parser().parse_args(["bench", *argv])


def test_raynas_bench_cost_mode_on_the_command_line(tiny_csv, tmp_path, capsys):
    from raynas import cli

    base = ["bench", "--table", str(tiny_csv), "--objective", "acc", "--space", "positional", "--position-columns",
            "a", "--test-metric", "test", "--searchers", "random", "--seeds", "2", "--quiet",
            "--out", str(tmp_path / "c.json")]
    assert not cost_mode_requested(_bench_args(base[1:]))
    with pytest.raises(ValueError, match="--max-epochs belong"):
        cost_mode_requested(_bench_args(base[1:] + ["--max-epochs", "100"]))
    argv = base + ["--fidelities", "low:2", "--objective-epochs", "6", "--workers", "2", "--grace-period", "2",
                   "--reduction-factor", "2", "--plot", str(tmp_path / "c.png")]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["kind"] == "cost" and report["workers"] == 2
    assert report["scheduler"]["name"] == "asha" and report["scheduler"]["grace_period_epochs"] == 2
    assert report["searchers"]["random"]["found_fraction"] == 1.0
    printed = capsys.readouterr().out
    assert "random: mean epochs to optimum" in printed and "c.png" in printed and (tmp_path / "c.png").exists()
    assert cli.main(base + ["--fidelities", "low:2", "--objective-epochs", "6", "--grace-period", "6"]) == 2
    assert "can never stop a trial" in capsys.readouterr().err
    assert cli.main(base + ["--fidelities", "low:2", "--grace-period", "1"]) == 2
    assert "not a rung" in capsys.readouterr().err


def test_cost_never_imports_ray(synthetic_nb201_csv):
    """Like ``raynas bench``: importing raynas.cost and running a cost bench loads no ``ray`` module."""
    code = """if True:
        import json, sys
        from raynas.benchmarks import TabularBenchmark
        from raynas.cost import run_cost_bench

        bench = TabularBenchmark.from_csv(sys.argv[1], "val_200", test_metric="test_200",
                                          fidelities="val_12:12", objective_epochs=200)
        report = run_cost_bench(bench, ["random", "regevo"], seeds=1, workers=4, max_epochs=3000, progress=False)
        print(json.dumps({
            "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")),
            "trials": {name: block["trials"] for name, block in report["searchers"].items()},
        }))
    """
    done = subprocess.run([sys.executable, "-c", code, str(synthetic_nb201_csv)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["ray"] == [], f"raynas.cost imported Ray: {seen['ray'][:10]}"
    assert all(trials > 0 for trials in seen["trials"].values())
