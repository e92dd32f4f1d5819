"""The ``raynas`` command line itself: --searcher-option, help texts, positional tables (no Ray unless marked)."""

from __future__ import annotations

import json

import pytest

from raynas import cli

TABULAR = ["--objective", "val_200", "--test-metric", "test_200", "--scheduler", "none"]


# --- --searcher-option -----------------------------------------------------------------------------

def test_searcher_options_are_typed_from_the_signature():
    options = cli.parse_searcher_options(
        ["pool_size=50", "warm_start=true", "prune=0", "lr=1e-3", "low_fidelity=drop", "num_threads=none",
         "normalization=rank"], ["bonas"])
    assert options == {"bonas": {"pool_size": 50, "warm_start": True, "prune": False, "lr": 0.001,
                                 "low_fidelity": "drop", "num_threads": None, "normalization": "rank"}}
    assert isinstance(options["bonas"]["pool_size"], int) and isinstance(options["bonas"]["lr"], float)
    assert cli.parse_searcher_options(None, ["regevo"]) == {}


def test_bench_options_apply_to_every_searcher_or_to_one_by_name():
    options = cli.parse_searcher_options(["num_initial=5", "bonas.pool_size=7", "gpnas.num_initial=3"],
                                         ["bonas", "gpnas", "nasbot"])
    assert options == {"bonas": {"num_initial": 5, "pool_size": 7}, "gpnas": {"num_initial": 3},
                       "nasbot": {"num_initial": 5}}


@pytest.mark.parametrize("items, names, expected", [
    (["bogus=1"], ["bonas"], "bonas has no option 'bogus'; its options are: num_initial, pool_size"),
    (["pool_size=abc"], ["bonas"], "pool_size expects an integer"),
    (["pool_size=1.5"], ["bonas"], "pool_size expects an integer"),
    (["warm_start=maybe"], ["bonas"], "warm_start expects true/false (or 1/0)"),
    (["lr=fast"], ["bonas"], "lr expects a number"),
    (["low_fidelity=keep"], ["bonas"], "low_fidelity expects one of calibrate, use, drop"),
    (["num_threads=x"], ["bonas"], "num_threads expects an integer or none"),
    (["pretrained=x"], ["bonas"], "cannot be given on the command line"),
    (["seed=3"], ["regevo"], "seed: set by --seed"),
    (["pool_size"], ["bonas"], "expected key=value"),
    (["=3"], ["bonas"], "expected key=value"),
    (["x.pool_size=5"], ["bonas"], "'x' is not among the searchers"),
    (["pool_size=5"], ["random", "bonas"], "random has no option 'pool_size'"),
])
def test_bad_searcher_options_are_rejected_naming_key_and_type(items, names, expected):
    with pytest.raises(ValueError, match=None) as error:
        cli.parse_searcher_options(items, names, reserved=cli.SEARCH_RESERVED)
    assert expected in str(error.value)


def test_options_a_method_refuses_fail_before_any_run():
    from raynas.spaces import NB201Space

    with pytest.raises(ValueError, match="max_attempts"):
        cli.check_searcher_builds("regevo", NB201Space(), "max", {"max_attempts": 3})
    with pytest.raises(ValueError, match="pool_size"):
        cli.check_searcher_builds("bonas", NB201Space(), "max", {"pool_size": -3})
    cli.check_searcher_builds("bonas", NB201Space(), "max", {"pool_size": 50})


def test_search_rejects_bad_options_before_ray(synthetic_nb201_csv, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "raynas.searchers.experiment", raising=False)
    argv = ["search", "--benchmark", str(synthetic_nb201_csv), *TABULAR, "--searcher", "bonas",
            "--storage", str(tmp_path), "--searcher-option", "pool_sise=50"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "raynas search: error: --searcher-option: bonas has no option 'pool_sise'" in err and "pool_size" in err
    assert "raynas.searchers.experiment" not in sys.modules  # failed before Ray was even imported
    assert cli.main(["search", "--resume", "--storage", str(tmp_path), "--searcher-option", "pool_size=5"]) == 2
    assert "cannot change a resumed search" in capsys.readouterr().err


def test_bench_rejects_bad_options(synthetic_nb201_csv, tmp_path, capsys):
    argv = ["bench", "--table", str(synthetic_nb201_csv), "--objective", "val_200", "--searchers", "random,regevo",
            "--seeds", "1", "--max-queries", "5", "--out", str(tmp_path / "b.json"),
            "--searcher-option", "population_size=4"]
    assert cli.main(argv) == 2
    assert "random has no option 'population_size'" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_bench_passes_options_to_the_searchers(synthetic_nb201_csv, tmp_path):
    out = tmp_path / "b.json"
    argv = ["bench", "--table", str(synthetic_nb201_csv), "--objective", "val_200", "--searchers", "random,regevo",
            "--seeds", "1", "--max-queries", "8", "--quiet", "--out", str(out),
            "--searcher-option", "regevo.population_size=4", "--searcher-option", "allow_repeats=false"]
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["searcher_options"] == {"random": {"allow_repeats": False},
                                          "regevo": {"population_size": 4, "allow_repeats": False}}


def test_search_option_saved_in_raynas_json_and_kept_on_resume(synthetic_nb201_csv, tmp_path, monkeypatch):
    """cli -> SearchSpec -> raynas.json -> SearchSpec.load -> the searcher's keyword arguments (no Ray)."""
    from raynas.searchers import experiment

    seen = {}
    monkeypatch.setattr(experiment, "init_ray", lambda **kwargs: None)
    monkeypatch.setattr(cli, "_stop_gracefully_on_sigterm", lambda command="search": None)

    def fake_run_search(spec, resume=False, **kwargs):
        spec.save()  # what build_tuner does
        seen["spec"] = spec
        return None, {}

    monkeypatch.setattr(experiment, "run_search", fake_run_search)
    argv = ["search", "--benchmark", str(synthetic_nb201_csv), *TABULAR, "--searcher", "bonas",
            "--num-samples", "6", "--storage", str(tmp_path), "--name", "opts", "--seed", "3",
            "--searcher-option", "pool_size=50"]
    assert cli.main(argv) == 0
    saved = json.loads((tmp_path / "opts" / "raynas.json").read_text())
    assert saved["searcher_kwargs"] == {"pool_size": 50}
    loaded = experiment.SearchSpec.load(str(tmp_path / "opts"))
    assert loaded.searcher_kwargs == {"pool_size": 50}
    assert loaded.searcher_options() == {"pool_size": 50, "seed": 3}


# --- help texts ------------------------------------------------------------------------------------

def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()




def test_every_option_has_help():
    parser = cli.build_parser()
    missing = []
    for name, sub in _subparsers(parser):
        for action in sub._actions:
            if "-h" in action.option_strings or (action.help and action.help.strip()):
                continue
            label = action.option_strings[-1] if action.option_strings else action.dest
            missing.append(f"raynas {name} {label}")
    assert not missing, f"options without help: {missing}"
    names = dict(_subparsers(parser))
    assert {"search", "analyze", "bench", "compress"} <= set(names)
    for command in ("search", "bench"):
        assert "--searcher-option" in names[command].format_help()


# --- positional tables -----------------------------------------------------------------------------

@pytest.fixture
def positional_csv(tmp_path):
    """12 architectures: one column per position (depth, width, act) and an objective with one optimum."""
    import itertools

    import pandas as pd

    rows = []
    for depth, width, act in itertools.product((1, 2, 3), (16, 32), ("relu", "tanh")):
        score = depth + width / 16 + (act == "relu")
        rows.append({"depth": depth, "width": width, "act": act, "val": 60.0 + score, "test": 59.0 + score})
    path = tmp_path / "positional.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_bench_on_a_positional_table(positional_csv, tmp_path, capsys):
    out = tmp_path / "pos.json"
    argv = ["bench", "--table", str(positional_csv), "--objective", "val", "--test-metric", "test",
            "--space", "positional", "--position-columns", "depth,width,act", "--searchers", "random,regevo",
            "--seeds", "2", "--max-queries", "12", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["optimum"] == 66.0
    assert report["searchers"]["random"]["found_fraction"] == 1.0  # 12 queries: the whole table


@pytest.mark.parametrize("extra, expected", [
    ([], "--space positional needs --position-columns"),
    (["--position-columns", "depth,width,colour"], "colour"),
    (["--position-columns", "depth,depth"], "names a column twice"),
])
def test_positional_table_errors(positional_csv, tmp_path, capsys, extra, expected):
    argv = ["bench", "--table", str(positional_csv), "--objective", "val", "--space", "positional",
            "--seeds", "1", "--max-queries", "3", "--out", str(tmp_path / "x.json"), *extra]
    assert cli.main(argv) == 2
    assert expected in capsys.readouterr().err


def test_position_columns_need_space_positional(synthetic_nb201_csv, tmp_path, capsys):
    argv = ["bench", "--table", str(synthetic_nb201_csv), "--objective", "val_200", "--position-columns", "a,b",
            "--out", str(tmp_path / "x.json")]
    assert cli.main(argv) == 2
    assert "--position-columns applies to --space positional only" in capsys.readouterr().err


def test_positional_search_saves_its_columns(positional_csv, tmp_path, capsys, monkeypatch):
    """``raynas search --benchmark T --space positional --position-columns ...``: checked before Ray, saved in
    raynas.json, and the experiment built from the saved spec reads the table the same way (no Ray)."""
    from raynas.searchers import experiment

    monkeypatch.setattr(experiment, "init_ray", lambda **kwargs: None)
    monkeypatch.setattr(cli, "_stop_gracefully_on_sigterm", lambda command="search": None)
    monkeypatch.setattr(experiment, "run_search", lambda spec, resume=False, **kw: (spec.save(), {}))
    base = ["search", "--benchmark", str(positional_csv), "--objective", "val", "--space", "positional",
            "--scheduler", "none", "--storage", str(tmp_path), "--name", "pos"]
    assert cli.main(base) == 2
    assert "--space positional needs --position-columns" in capsys.readouterr().err
    assert cli.main([*base, "--position-columns", "depth,width,act"]) == 0
    saved = json.loads((tmp_path / "pos" / "raynas.json").read_text())
    assert saved["position_columns"] == ["depth", "width", "act"]
    spec = experiment.SearchSpec.load(str(tmp_path / "pos"))
    bench = experiment.validate_spec(spec)
    assert bench is not None and bench.optimum[1] == 66.0 and bench.space.position_names == ("depth", "width", "act")


# --- console ---------------------------------------------------------------------------------------

def test_console_helpers():
    from raynas.searchers.console import format_duration, shorten

    assert shorten("abc") == "abc" and shorten("a  b\nc") == "a b c"
    long = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    short = shorten(long, 40)
    assert len(short) == 40 and short.startswith("|nor_conv_3x3~0|") and short.endswith("~2|") and "..." in short
    assert format_duration(5) == "0:05" and format_duration(125) == "2:05" and format_duration(3725) == "1:02:05"
    assert format_duration(float("nan")) == "?"


def test_search_prints_one_line_per_trial(synthetic_nb201_csv, tmp_path):
    """A real (tiny, tabular) ``raynas search`` on local Ray: one line per trial, no Tune tables, and the
    --searcher-option recorded in raynas.json."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AIR_NEW_OUTPUT", None)  # Tune's default output, as users have it (conftest turns it off)
    storage, name = tmp_path / "store", "console"
    argv = [sys.executable, "-m", "raynas.cli", "search", "--benchmark", str(synthetic_nb201_csv), *TABULAR,
            "--searcher", "regevo", "--num-samples", "6", "--max-concurrent", "2", "--storage", str(storage),
            "--name", name, "--searcher-option", "population_size=4"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if re.match(r"\[\s*\d+/6\] #\d+ ", line)]
    assert len(lines) == 6, done.stdout
    assert sorted(int(re.match(r"\[\s*\d+/6\] #(\d+)", line).group(1)) for line in lines) == list(range(6))
    for line in lines:
        assert re.search(r" \|\S+\| .* val_200=\d+(\.\d+)? at 1/1  best \d+(\.\d+)?  \d+:\d\d elapsed, ETA \d+:\d\d$",
                         line), line
    for tune_table in ("Trial status", "Current time", "Configuration for experiment", "View detailed results"):
        assert tune_table not in done.stdout, done.stdout  # Tune's own output only with --verbose
    saved = json.loads((storage / name / "raynas.json").read_text())
    assert saved["searcher_kwargs"] == {"population_size": 4}
    # the summary: the best cell drawn as text, and how far it is above the random cells the search began with
    assert re.search(r"^    node1 = \S+\(node0\)$", done.stdout, re.M), done.stdout
    assert re.search(r"^  [+-]\d+\.\d\d against the median random cell \(\d+(\.\d+)?: the median of the 4 of the "
                     r"first 4 trials, drawn at random, that trained to the end\)$", done.stdout, re.M), done.stdout


def test_grace_period_must_be_a_rung_and_able_to_stop(synthetic_nb201_csv, tmp_path, capsys):
    """--grace-period is in epochs: a table's rung, below its last; checked before Ray starts."""
    import time

    base = ["search", "--benchmark", str(synthetic_nb201_csv), "--objective", "val_200", "--fidelities", "val_12:12",
            "--objective-epochs", "200", "--storage", str(tmp_path)]
    started = time.time()
    assert cli.main(base + ["--grace-period", "3"]) == 2
    assert ("ASHA grace period 3 epochs is not a rung of this search; its rungs are at 12, 200 epochs: "
            "pass --grace-period 12") in capsys.readouterr().err
    assert cli.main(base + ["--grace-period", "200"]) == 2
    assert "can never stop a trial: trials end at 200 epochs" in capsys.readouterr().err
    assert time.time() - started < 30 and not list(tmp_path.iterdir())  # nothing started, nothing written


def test_grace_iterations_maps_epochs_to_rungs():
    from raynas.schedule import ScheduleError, grace_iterations

    assert grace_iterations([12, 200], None) == 1 and grace_iterations([12, 36, 200], 36) == 2
    assert grace_iterations(range(1, 7), None) == 2 and grace_iterations(range(1, 4), None) == 1
    assert grace_iterations(range(1, 11), 4) == 4
    with pytest.raises(ScheduleError, match="trials report once"):
        grace_iterations([200], None)
    with pytest.raises(ScheduleError, match="can never stop a trial: trials end at 6 epochs"):
        grace_iterations(range(1, 7), 6)


def test_trial_lines_count_earlier_trials_of_a_resumed_run(capsys):
    """After --resume the line counter and the best start from the trials finished before (no Ray run)."""
    from types import SimpleNamespace

    from raynas.searchers.console import TrialLines
    from raynas.spaces import NB201Space

    space = NB201Space()
    arch = space.sample(__import__("numpy").random.default_rng(0))

    def trial(index, value, iteration, status="TERMINATED"):
        return SimpleNamespace(config={**arch.to_config(), "suggestion": index}, status=status,
                               last_result={"val": value, "training_iteration": iteration})

    lines = TrialLines(space, "val", "max", max_t=3, num_samples=5)
    earlier = [trial(0, 70.0, 3), trial(1, 90.0, 1)]  # the second was stopped early: not a best
    current = trial(2, 60.0, 3, status="RUNNING")
    lines.on_trial_complete(0, [*earlier, current], current)
    nxt = trial(3, 80.0, 1, status="RUNNING")
    lines.on_trial_complete(1, [*earlier, current, nxt], nxt)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[3/5] #2 |") and "val=60 at 3/3  best 70 " in out[0]
    assert out[1].startswith("[4/5] #3 |") and "val=80 stopped at 1/3  best 70 " in out[1]
    state = lines.__getstate__()
    assert state["_done"] == 0 and state["_seen"] is None and state["_best"] is None
