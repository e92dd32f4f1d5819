"""Reliability of ``raynas search`` / ``compress`` on real Ray: damaged state, truthful exit codes, early validation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from raynas import cli

SEARCH = ["--objective", "val_200", "--test-metric", "test_200", "--scheduler", "none", "--max-concurrent", "2"]


@pytest.fixture
def restore_signals():
    """cli.main installs raynas' SIGTERM handler in this process: put the test runner's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _state_files(experiment: Path) -> list[Path]:
    return sorted(experiment.glob("searcher-state-*.pkl"))


def _observations(path: Path) -> int:
    from raynas.searchers.base import read_state_file

    return len(read_state_file(str(path))["search"]["observations"])


def test_damaged_searcher_state_is_rebuilt_not_restarted(ray_session, synthetic_nb201_csv, tmp_path, capsys,
                                                         restore_signals):
    storage, name, total = tmp_path / "store", "damaged", 6
    argv = ["search", "--benchmark", str(synthetic_nb201_csv), *SEARCH, "--searcher", "regevo",
            "--num-samples", str(total), "--storage", str(storage), "--name", name, "--seed", "1"]
    assert cli.main(argv) == 0
    experiment = storage / name
    results = (experiment / "results.csv").read_bytes()
    assert len(pd.read_csv(experiment / "results.csv")) == total
    (state,) = _state_files(experiment)
    assert (experiment / "raynas-searcher-backup.pkl").exists()  # the last good state, kept by raynas

    resume = ["search", "--resume", "--name", name, "--storage", str(storage)]
    # 1. damaged state, good backup: the backup is used
    os.truncate(state, 100)
    capsys.readouterr()
    assert cli.main(resume) == 0
    err = capsys.readouterr().err
    assert "was unreadable" in err and "raynas-searcher-backup.pkl" in err
    assert len(pd.read_csv(experiment / "results.csv")) == total
    assert _observations(_state_files(experiment)[-1]) == total

    # 2. damaged state and no backup: rebuilt from the trial directories (params.json / result.json)
    os.truncate(_state_files(experiment)[-1], 100)
    for backup in experiment.glob("raynas-searcher-backup*.pkl"):
        backup.unlink()
    assert cli.main(resume) == 0
    err = capsys.readouterr().err
    assert "was unreadable" in err and "trial directories" in err
    table = pd.read_csv(experiment / "results.csv")
    assert len(table) == total and table["val_200"].notna().all()
    assert (experiment / "results.csv").read_bytes() == results or len(table) == total
    assert _observations(_state_files(experiment)[-1]) == total

    # 3. nothing to rebuild from: a clear error, exit 2, nothing touched
    os.truncate(_state_files(experiment)[-1], 100)
    for backup in experiment.glob("raynas-searcher-backup*.pkl"):
        backup.unlink()
    for params in experiment.glob("*/params.json"):
        params.unlink()
    before = {p: p.stat().st_mtime_ns for p in experiment.rglob("*") if p.is_file()}
    assert cli.main(resume) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "nothing was changed" in err
    assert {p: p.stat().st_mtime_ns for p in experiment.rglob("*") if p.is_file()} == before
    assert len(pd.read_csv(experiment / "results.csv")) == total


def test_every_trial_failing_exits_1_with_the_first_error_once(ray_session, synthetic_nb201_csv, tmp_path, capsys,
                                                                restore_signals):
    table = tmp_path / "one_row.csv"
    pd.read_csv(synthetic_nb201_csv).tail(1).to_csv(table, index=False)  # every other cell is unknown
    argv = ["search", "--benchmark", str(table), *SEARCH, "--searcher", "random", "--num-samples", "3",
            "--storage", str(tmp_path / "store"), "--name", "failing", "--seed", "0"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "no trial reported 'val_200'" in err
    assert err.count("UnknownArchitectureError: architecture") == 1  # the first trial's error, once


def test_compress_stop_messages_name_compress(tmp_path, capsys, restore_signals):
    from raynas.searchers import experiment
    from raynas.searchers.experiment import CompressSpec, RunOutcome

    received = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))  # stands in for Tune's handler
    cli._stop_gracefully_on_sigterm("compress")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)
    assert received == [signal.SIGUSR1]
    assert "raynas compress: SIGTERM received" in capsys.readouterr().err
    spec = CompressSpec(storage=str(tmp_path), name="c1")
    experiment.LAST_RUN = RunOutcome("interrupted", spec, {"trials": 3}, "objective")
    try:
        assert cli._run_outcome("compress") == 143
    finally:
        experiment.LAST_RUN = None
    err = capsys.readouterr().err
    assert f"raynas compress --resume --name c1 --storage {tmp_path}" in err


def _wait_for(predicate, process, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not predicate() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)


def test_interrupted_search_exits_non_zero_with_resume_command(synthetic_nb201_csv, tmp_path):
    """SIGTERM (``ray job stop``) then SIGINT (Ctrl-C) a real ``raynas search``: 143, then 130, each naming
    the resume command; the last resume finishes every trial and exits 0."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    storage, name, total = tmp_path / "store", "stopped", 10
    experiment = storage / name
    command = [sys.executable, "-m", "raynas.cli", "search", "--benchmark", str(synthetic_nb201_csv), *SEARCH,
               "--searcher", "regevo", "--num-samples", str(total), "--seconds-per-epoch", "1.5",
               "--storage", str(storage), "--name", name]
    resume = [sys.executable, "-m", "raynas.cli", "search", "--resume", "--name", name, "--storage", str(storage)]
    expected = f"raynas search --resume --name {name} --storage {storage}"

    def finished() -> int:
        return sum(1 for t in experiment.glob("TabularTrainable_*") if any(t.glob("checkpoint_*")))

    for argv, sig, status, at_least in ((command, signal.SIGTERM, 143, 2), (resume, signal.SIGINT, 130, 4)):
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=tmp_path)
        _wait_for(lambda: finished() >= at_least, process)
        assert process.poll() is None, process.communicate()[1][-3000:]
        process.send_signal(sig)
        out, err = process.communicate(timeout=180)
        assert process.returncode == status, err[-3000:]
        assert expected in err, err[-3000:]
    done = subprocess.run(resume, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(experiment / "results.csv")
    assert len(table) == total and table["config/arch"].is_unique


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_settings_fail_in_seconds_before_ray_is_imported(synthetic_nb201_csv, tmp_path):
    """Tables, columns, fidelities, searcher and space names are checked before Ray (not even imported)."""
    frame = pd.read_csv(synthetic_nb201_csv, nrows=4)
    header = ",".join(frame.columns)
    good = tmp_path / "good.csv"
    frame.to_csv(good, index=False)
    bad_value = frame.astype({"val_200": object})
    bad_value.loc[1, "val_200"] = "n/a"
    bad_value.to_csv(tmp_path / "nonnum.csv", index=False)
    bad_arch = frame.copy()
    bad_arch.loc[2, "arch_str"] = "|conv9~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    bad_arch.to_csv(tmp_path / "badarch.csv", index=False)
    cases = {
        "the table has a header": ["--benchmark", str(_write(tmp_path / "empty.csv", header + "\n")),
                                   "--objective", "val_200"],
        "non-numeric or missing": ["--benchmark", str(tmp_path / "nonnum.csv"), "--objective", "val_200"],
        "'conv9' is not one of": ["--benchmark", str(tmp_path / "badarch.csv"), "--objective", "val_200"],
        "line 6: malformed architecture": ["--benchmark", str(_write(tmp_path / "torn.csv",
                                                                    good.read_text() + "|none~0|,none\n")),
                                           "--objective", "val_200"],
        "missing value(s), first at line(s) 6": [  # a short row: a known cell, no values
            "--benchmark", str(_write(tmp_path / "short.csv", good.read_text() + frame.loc[0, "arch_str"] + "\n")),
            "--objective", "val_200"],
        "no architecture in column 'arch_str'": [  # a row without its cell
            "--benchmark", str(_write(tmp_path / "nocell.csv", good.read_text() + ",none,none,none,none,none,none,1,2,3\n")),
            "--objective", "val_200"],
        "column(s) ['nope'] not found": ["--benchmark", str(good), "--objective", "nope"],
        "column(s) ['test_nope'] not found": ["--benchmark", str(good), "--objective", "val_200",
                                              "--test-metric", "test_nope"],
        "epochs 'x' is not a number": ["--benchmark", str(good), "--objective", "val_200", "--fidelities", "val_12:x"],
        "unknown searcher": ["--benchmark", str(good), "--objective", "val_200", "--searcher", "bogus"],
        "unknown search space": ["--space", "bogus"],
        "raynas compress": ["--searcher", "esnac"],
    }
    script = ("import sys; from raynas import cli; status = cli.main(sys.argv[1:]); "
              "print('RAY-IMPORTED' if 'ray' in sys.modules else 'NO-RAY'); sys.exit(status)")
    for expected, argv in cases.items():
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script, "search", *argv, "--storage", str(tmp_path / "store")],
                              capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - start
        assert done.returncode == 2, (expected, done.stderr[-2000:])
        assert expected in done.stderr, (expected, done.stderr[-2000:])
        assert "NO-RAY" in done.stdout, (expected, done.stdout)
        assert elapsed < 20, (expected, elapsed)  # ~1 CPU-second each; generous for a loaded 2-core machine
    assert not (tmp_path / "store").exists()


def test_a_final_nan_is_a_failure_not_its_earlier_value():
    """As Tune reports it: a 12-epoch value, then a final NaN (diverged) -> failed, not an observation."""
    from raynas.searchers import make_searcher
    from raynas.spaces import NB201Space

    searcher = make_searcher("random", NB201Space(), metric="acc", mode="max", seed=0)
    for trial in ("diverged", "missing", "inf"):
        searcher.suggest(trial)
        searcher.on_trial_result(trial, {"acc": 80.0, "training_iteration": 12})
    searcher.on_trial_complete(trial_id="diverged", result={"acc": float("nan"), "training_iteration": 200})
    searcher.on_trial_complete(trial_id="inf", result={"acc": float("inf"), "training_iteration": 200})
    searcher.on_trial_complete(trial_id="missing", result={"training_iteration": 200})  # no metric: fallback kept
    assert set(searcher.search.failed) == {"diverged", "inf"}
    assert [(o.trial_id, o.value, o.fidelity) for o in searcher.search.observations] == [("missing", 80.0, 12)]


def test_asha_on_a_table_stops_trials_and_the_searcher_keeps_their_fidelity(ray_session, synthetic_nb201_csv,
                                                                             tmp_path, restore_signals):
    """Default ASHA settings on a table with a 12-epoch rung: trials really stop there, and the searcher's
    saved observations carry each trial's fidelity (the rung of its last result)."""
    from raynas.searchers.base import read_state_file

    storage, name, total = tmp_path / "store", "asha", 12
    argv = ["search", "--benchmark", str(synthetic_nb201_csv), "--objective", "val_200", "--fidelities", "val_12:12",
            "--objective-epochs", "200", "--searcher", "random", "--num-samples", str(total),
            "--max-concurrent", "2", "--storage", str(storage), "--name", name]
    assert cli.main(argv) == 0
    experiment = storage / name
    table = pd.read_csv(experiment / "results.csv")
    assert len(table) == total and 0 < (table["training_iteration"] == 1).sum() < total
    observations = read_state_file(str(_state_files(experiment)[-1]))["search"]["observations"]
    saved = {trial_id: fidelity for _, _, trial_id, fidelity in observations}
    assert saved == dict(zip(table["trial_id"], table["training_iteration"].astype(float)))
