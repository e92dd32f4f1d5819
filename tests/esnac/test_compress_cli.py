"""The ``compress`` CLI: its pieces, the Ray-free core of ESNAC, and compress runs as raynas experiments (resume, analyze)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from raynas.compress import add_compress_parser, main
from raynas.teachers import digits_teacher, load_teacher

#: A tiny, fast compression run on digits (1 teacher epoch, 1 distillation epoch per student).
TINY = ["--teacher-epochs", "1", "--epochs", "1", "--num-kernels", "2"]


def test_parser_defaults_and_options():
    parser = argparse.ArgumentParser(prog="raynas")
    add_compress_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compress", "--num-samples", "8", "--searcher", "random", "--epochs", "2"])
    assert (args.command, args.num_samples, args.searcher, args.epochs) == ("compress", 8, "random", 2)
    assert args.teacher == "digits-cnn" and args.num_kernels == 4 and args.scheduler == "asha"


def test_teacher_loading_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="neither 'digits-cnn' nor an existing file"):
        load_teacher(str(tmp_path / "missing.pt"), 1, ())
    torch.save({"not": "a module"}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match="not an nn.Module"):
        load_teacher(str(tmp_path / "dict.pt"), 1, ())
    model = digits_teacher(width=4)
    torch.save(model, tmp_path / "teacher.pt")
    assert isinstance(load_teacher(str(tmp_path / "teacher.pt"), 1, ()), torch.nn.Module)
    assert main(["--teacher", str(tmp_path / "missing.pt")]) == 2
    assert "raynas compress: error" in capsys.readouterr().err


def test_esnac_core_does_not_import_ray():
    code = ("import sys, raynas.spaces.compression, raynas.models.student, raynas.surrogates.esnac, "
            "raynas.search.esnac, raynas.compress; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_and_compress_import_one_way():
    """cli -> compress only: raynas.compress never imports raynas.cli (the shared flags live in raynas.cli_args)."""
    code = "import sys, raynas.compress; print('raynas.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from raynas.cli import build_parser

    args = build_parser().parse_args(["compress", "--resume", "--name", "n", "--data-dir", "d"])
    assert args.resume and args.name == "n" and args.data_dir == "d"


def test_compress_spec_saved_and_loaded_by_kind(tmp_path):
    """A compress run's raynas.json loads as a CompressSpec (also through SearchSpec.load); esnac stays compress-only."""
    from raynas.searchers.experiment import CompressSpec, SearchSpec, latest_experiment

    spec = CompressSpec(storage=str(tmp_path), name="c", num_kernels=2, epochs=1, kernels="k.pt")
    spec.save()
    SearchSpec(storage=str(tmp_path), name="s").save()
    loaded = SearchSpec.load(str(tmp_path / "c"))
    assert isinstance(loaded, CompressSpec) and loaded == spec and loaded.metric == "objective"
    assert loaded.kernels == os.path.abspath("k.pt")
    assert json.loads((tmp_path / "c" / "raynas.json").read_text())["kind"] == "compress"
    assert latest_experiment(str(tmp_path), kind="compress").endswith("/c")
    with pytest.raises(ValueError, match="raynas search --resume"):
        CompressSpec.load(str(tmp_path / "s"))
    with pytest.raises(ValueError, match="use `raynas compress`"):
        SearchSpec(searcher="esnac", storage=str(tmp_path))
    with pytest.raises(ValueError, match="'esnac' or 'random'"):
        CompressSpec(searcher="regevo", storage=str(tmp_path))


def test_compress_end_to_end_on_local_ray(ray_session, tmp_path, capsys):
    out = tmp_path / "best.json"
    code = main([
        *TINY, "--num-samples", "3", "--max-concurrent", "3", "--storage", f"file://{tmp_path}/store",
        "--out", str(out), "--save-kernels", str(tmp_path / "k.pt"),
    ])  # a URI (s3://, gs://, ...) is passed to Tune as is: exercised with file://
    assert code == 0
    summary = json.loads(out.read_text())
    assert summary["params"] < summary["teacher_params"] and summary["objective"] is not None
    assert summary["experiment"].startswith(f"file://{tmp_path}/store/compress-esnac-0-")
    experiment = tmp_path / "store" / summary["experiment"].rsplit("/", 1)[1]
    for name in ("raynas.json", "teacher.pt", "results.csv", "best_so_far.png"):
        assert (experiment / name).is_file(), name
    assert summary["trials"] == 3 and summary["teacher_state"] == summary["experiment"] + "/teacher.pt"
    # a fresh run never overwrites an experiment (nor its teacher): it fails before training or Ray
    again = main([*TINY, "--storage", f"file://{tmp_path}/store", "--name", experiment.name])
    assert again == 2 and "--resume" in capsys.readouterr().err


def _checkpointed_trials(experiment: Path) -> int:
    return sum(1 for trial in experiment.glob("DistillTrainable_*") if any(trial.glob("checkpoint_*")))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_compress_interrupted_resumed_and_analyzed(ray_session, tmp_path, capsys):
    """Stop a compress run gracefully (Tune's SIGUSR1, as Ctrl+C), ``--resume`` it, then ``raynas analyze`` it."""
    from raynas.cli import main as cli_main

    store, name, total = tmp_path / "store", "tiny", 8
    experiment = store / name

    finished = threading.Event()

    def interrupt_after_two_students() -> None:
        deadline = time.time() + 240
        while _checkpointed_trials(experiment) < 2 and time.time() < deadline and not finished.is_set():
            time.sleep(0.2)
        if _checkpointed_trials(experiment) >= 2 and not finished.is_set():  # Tune runs, its handler is set
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop: snapshot of experiment and searcher

    watcher = threading.Thread(target=interrupt_after_two_students, daemon=True)
    watcher.start()
    try:
        first = main([*TINY, "--num-samples", str(total), "--max-concurrent", "2", "--storage", str(store),
                      "--name", name])
    finally:
        finished.set()
        watcher.join(timeout=60)
    assert first == 0
    teacher = _sha256(experiment / "teacher.pt")
    done_before = len(pd.read_csv(experiment / "results.csv").dropna(subset=["objective"]))
    assert 2 <= done_before < total, "the run ended before the interruption reached it"
    capsys.readouterr()

    # --resume: the saved settings and teacher.pt, not the command line's (nothing trained again)
    resumed = main(["--resume", "--storage", str(store), "--name", name, "--teacher-epochs", "50",
                    "--out", str(tmp_path / "best.json"), "--save-kernels", str(tmp_path / "k.pt")])
    assert resumed == 0
    err = capsys.readouterr().err
    assert f"resuming {experiment}" in err and "not reachable" not in err  # the restored searcher is at hand
    assert _sha256(experiment / "teacher.pt") == teacher
    table = pd.read_csv(experiment / "results.csv")
    assert len(table) == total and table["trial_id"].is_unique and table["config/arch"].is_unique
    assert table["objective"].notna().all() and table["config/suggestion"].tolist() == list(range(total))
    assert table["teacher_acc"].nunique() == 1 and table["teacher_params"].nunique() == 1  # one teacher
    summary = json.loads((tmp_path / "best.json").read_text())
    assert summary["objective"] == pytest.approx(table["objective"].max()) and summary["trials"] == total

    (experiment / "results.csv").unlink()
    assert cli_main(["analyze", str(experiment)]) == 0
    printed = capsys.readouterr().out
    assert f"trials: {total} ({total} reported objective)" in printed and "best objective" in printed
    assert len(pd.read_csv(experiment / "results.csv")) == total
