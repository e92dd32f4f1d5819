"""The ``compress`` CLI pieces and the Ray-free core of ESNAC."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

from raynas.compress import add_compress_parser, digits_teacher, load_teacher, main


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


def test_compress_end_to_end_on_local_ray(ray_session, tmp_path, capsys):
    out = tmp_path / "best.json"
    code = main([
        "--teacher-epochs", "1", "--num-samples", "3", "--max-concurrent", "3", "--epochs", "1",
        "--num-kernels", "2", "--storage", f"file://{tmp_path}/store", "--out", str(out),
        "--save-kernels", str(tmp_path / "k.pt"),
    ])  # a URI (s3://, gs://, ...) is passed to Tune as is: exercised with file://
    assert code == 0
    import json

    summary = json.loads(out.read_text())
    assert summary["params"] < summary["teacher_params"] and summary["objective"] is not None
    assert "compress-esnac-0" in summary["experiment"]
    assert (tmp_path / "store" / "compress-esnac-0").is_dir()
