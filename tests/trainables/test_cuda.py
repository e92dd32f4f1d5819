"""Training on a real GPU (``@pytest.mark.cuda``: run with ``pytest -m cuda``; skipped, "needs CUDA", elsewhere).

The CUDA tests cover a training step, a checkpoint/restore round trip on the
device, AMP in bfloat16 and float16, channels_last, CUDA graphs against the
eager step, the automatic data path,
the device-resident loader's augmentation against the CPU's for the same draws,
and the packing estimate against measured memory. The unmarked tests at the end
check ``benchmarks/gpu_check.py`` on the CPU (its refusal without CUDA, its parsers).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from raynas.spaces import NB201Space

REPO = Path(__file__).resolve().parents[2]
NB201 = NB201Space()
SMALL_CELL = NB201.make(["nor_conv_1x1", "skip_connect", "none", "skip_connect", "none", "nor_conv_1x1"])
HEAVY_CELL = NB201.make(["nor_conv_3x3"] * 6)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def cuda_test(function):
    """``@pytest.mark.cuda`` and skipped with the reason "needs CUDA" where no CUDA device is visible."""
    return pytest.mark.cuda(needs_cuda(function))


def _config(**overrides):
    return {**SMALL_CELL.to_config(), "dataset": "fake", "channels": 8, "cells_per_stage": 1, "epochs": 3,
            "fake_size": 600, "batch_size": 64, "lr": 0.05, "device": "cuda", **overrides}


# ------------------------------------------------------------------- CUDA
@cuda_test
def test_training_step_on_cuda_uses_the_resident_path_amp_and_channels_last():
    from raynas.trainables import ImageTrainable

    trainable = ImageTrainable(config=_config())
    assert trainable.device.type == "cuda" and trainable.amp
    assert trainable.data_path == "resident" and "fits on the device" in trainable.data_path_reason
    assert trainable._resident.x_train.device.type == "cuda" and trainable._resident.x_train.dtype == torch.uint8
    assert trainable.data_generator.device.type == "cuda" and trainable.data_generator is not trainable.generator
    assert next(trainable.model.parameters()).device.type == "cuda"
    x, y = next(trainable._batches(train=True))
    assert x.device.type == "cuda" and x.dtype == torch.float32 and y.device.type == "cuda"
    assert x.is_contiguous(memory_format=torch.channels_last)
    conv = next(m for m in trainable.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    result = trainable.step()
    assert result["device"] == "cuda" and result["data_path"] == "resident" and result["amp"] is True
    assert result["device_name"].startswith("cuda:") and result["gpu_mem_peak_mb"] > 0
    assert result["train_images"] == trainable.train_size == 540
    assert math.isfinite(result["train_loss"]) and 0 <= result["val_acc"] <= 100 and result["images_per_s"] > 0


@cuda_test
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_in_bf16_and_fp16(dtype):
    from raynas.trainables import ImageTrainable

    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    trainable = ImageTrainable(config=_config(amp_dtype=dtype, epochs=2))
    assert trainable.amp_dtype == getattr(torch, dtype)
    assert trainable.scaler.is_enabled() is (dtype == "float16")  # bf16 needs no loss scaling
    x, _ = next(trainable._batches(train=True))
    with torch.autocast("cuda", dtype=trainable.amp_dtype):
        assert trainable.model(x).dtype == getattr(torch, dtype)
    results = [trainable.step() for _ in range(2)]
    assert all(r["amp_dtype"] == dtype and math.isfinite(r["train_loss"]) for r in results)
    assert all(r["cuda_graphs"] is True for r in results), trainable.graphs_failure  # captured under autocast
    assert all(p.dtype == torch.float32 for p in trainable.model.parameters())  # master weights stay fp32


@cuda_test
def test_cuda_graphs_train_like_the_eager_step():
    """One epoch with graphs (full batches replay, the last partial one runs eagerly) matches eager training."""
    from raynas.models.cuda_graphs import eager_forward
    from raynas.trainables import ImageTrainable

    # float32 without TF32, deterministic cuDNN: the two runs differ by kernel choice at most (with TF32
    # the stem's weights differed by up to 1.3e-3 after 9 steps on an H200, graph or not).
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        _graphs_against_eager(ImageTrainable, eager_forward)
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = flags


def _graphs_against_eager(ImageTrainable, eager_forward):
    config = _config(amp=False, epochs=2)
    graphed, eager = ImageTrainable(config=config), ImageTrainable(config={**config, "cuda_graphs": False})
    assert graphed.graphs_wanted and not eager.graphs_wanted
    for name, tensor in eager.model.state_dict().items():
        assert torch.equal(tensor, graphed.model.state_dict()[name]), name
    a, b = graphed.step(), eager.step()
    assert a["cuda_graphs"] is True and b["cuda_graphs"] is False, graphed.graphs_failure
    assert "forward" in vars(graphed.model)  # the graphed forward replaced the module's own
    assert a["train_images"] == b["train_images"] == 540  # 8 full batches of 64 replayed, 28 images eagerly
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    for (name, p), q in zip(graphed.model.named_parameters(), eager.model.parameters()):
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-4), name
    # eval mode runs the module's own forward; a batch of another size goes past the graph
    x, _ = next(graphed._batches(train=False))
    with torch.no_grad():
        graphed.model.eval()
        assert torch.allclose(graphed.model(x), eager_forward(graphed.model, x))
    assert graphed.step()["cuda_graphs"] is True


@cuda_test
def test_automatic_amp_dtype_and_forced_loader_path_on_cuda():
    from raynas.trainables import ImageTrainable

    auto = ImageTrainable(config=_config(epochs=1))
    assert auto.amp_dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    loader = ImageTrainable(config=_config(epochs=1, data_path="loader", num_workers=2, cuda_graphs=True))
    assert loader._resident is None and loader.data_path == "loader" and not loader.graphs_wanted
    result = loader.step()  # (a capture here broke the pin-memory thread: graphs stay off on this path)
    assert result["data_path"] == "loader" and result["device"] == "cuda" and math.isfinite(result["train_loss"])
    assert result["cuda_graphs"] is False


@cuda_test
def test_checkpoint_restore_round_trip_on_the_device(tmp_path):
    from raynas.trainables import ImageTrainable

    config = _config(amp_dtype="float16")  # float16: the scaler's state travels too
    reference = ImageTrainable(config=config)
    reference.step()
    reference.save_checkpoint(str(tmp_path))
    state = torch.load(tmp_path / ImageTrainable.checkpoint_file, weights_only=True)
    assert state["data_path"] == "resident" and "data_generator" in state and "cuda_rng" in state
    assert state["scaler"]["scale"] > 0

    resumed = ImageTrainable(config=config)
    resumed.load_checkpoint(str(tmp_path))
    assert resumed.epoch == 1
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert torch.equal(reference.data_generator.get_state(), resumed.data_generator.get_state())
    assert resumed.scaler.get_scale() == reference.scaler.get_scale()
    # the next epoch draws the same batches (order, crops, flips) as the uninterrupted run
    ref_batches = list(reference._batches(train=True))
    res_batches = list(resumed._batches(train=True))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ref_batches, res_batches))
    resumed.load_checkpoint(str(tmp_path))  # (drawing the batches above advanced the generator)
    after = resumed.step()
    assert after["epoch"] == 2 and math.isfinite(after["train_loss"])
    # and a CPU trial can resume from the CUDA checkpoint (other data path: a warning, not an error)
    cpu = ImageTrainable(config={**config, "device": "cpu"})
    cpu.load_checkpoint(str(tmp_path))
    assert cpu.epoch == 1 and cpu.step()["epoch"] == 2


@cuda_test
def test_resident_augmentation_on_cuda_equals_the_cpu_one_for_the_same_draws():
    from torchvision.transforms import functional as TF

    from raynas.data.resident import ResidentImageData, crop_flip, normalise, sample_crop_flip
    from raynas.data.vision import load_image_tensors, normalisation

    tensors = load_image_tensors("fake", fake_size=512, val_fraction=0.25)
    gpu = ResidentImageData.from_tensors(tensors, "cuda")
    cpu = ResidentImageData.from_tensors(tensors, "cpu")
    generator = torch.Generator(device="cuda").manual_seed(7)
    offsets, flips = sample_crop_flip(384, generator)
    assert offsets.device.type == "cuda" and int(offsets.min()) >= 0 and int(offsets.max()) <= 8
    on_gpu = normalise(crop_flip(gpu.x_train, offsets, flips), gpu.mean, gpu.std)
    on_cpu = normalise(crop_flip(cpu.x_train, offsets.cpu(), flips.cpu()), cpu.mean, cpu.std)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=1e-6)
    assert torch.equal(crop_flip(gpu.x_train, offsets, flips).cpu(), crop_flip(cpu.x_train, offsets.cpu(), flips.cpu()))
    mean, std = normalisation("fake")
    for i in range(0, 384, 37):  # torchvision's own pipeline for the same draws
        pil = TF.crop(TF.pad(TF.to_pil_image(tensors.x_train[i]), 4), int(offsets[i, 0]), int(offsets[i, 1]), 32, 32)
        if flips[i]:
            pil = TF.hflip(pil)
        torch.testing.assert_close(on_gpu[i].cpu(), TF.normalize(TF.to_tensor(pil), mean, std), rtol=0, atol=1e-6)
    # the device generator: same seed, same batches; every image once per epoch; plausible draw statistics
    a = list(gpu.train_batches(100, torch.Generator(device="cuda").manual_seed(1)))
    b = list(gpu.train_batches(100, torch.Generator(device="cuda").manual_seed(1)))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert sum(y.shape[0] for _, y in a) == 384
    draws, flipped = sample_crop_flip(90_000, torch.Generator(device="cuda").manual_seed(2))
    counts = torch.bincount(draws.flatten().cpu(), minlength=9).double()
    assert float(((counts - counts.mean()) ** 2 / counts.mean()).sum()) < 26.1
    assert abs(flipped.double().mean().item() - 0.5) < 0.01


@cuda_test
def test_automatic_choice_reads_the_device_memory():
    from raynas.data.resident import decide_data_path
    from raynas.data.vision import image_data_bytes

    free, total = torch.cuda.mem_get_info()
    cifar = decide_data_path("auto", image_data_bytes("cifar10"), "cuda", gpu_share=0.125)
    if 0.25 * min(free - 2 * 1024**3, total / 8) >= image_data_bytes("cifar10"):
        assert cifar.path == "resident"
    assert decide_data_path("auto", 10 * total, "cuda").path == "loader"
    assert decide_data_path("loader", 1, "cuda").path == "loader"


@cuda_test
def test_packing_estimate_bounds_the_measured_memory():
    """The packing model's per-trial memory exceeds what training the heaviest NB201 cell allocates."""
    from raynas.models import build_model
    from raynas.resources import local_gpu_memory, packing_for_model
    from raynas.trainables import ImageTrainable

    model = build_model(NB201, HEAVY_CELL, num_classes=10, in_channels=3, channels=16, cells_per_stage=5)
    free, total = local_gpu_memory()
    assert 0 < free <= total
    packing = packing_for_model(model, (3, 32, 32), 256)
    assert packing.fits and packing.gpus_per_trial in (0.125, 0.25, 0.5, 1.0)
    trainable = ImageTrainable(config={**HEAVY_CELL.to_config(), "dataset": "fake", "fake_size": 600,
                                       "channels": 16, "cells_per_stage": 5, "batch_size": 256, "epochs": 1,
                                       "device": "cuda"})
    peak_bytes = trainable.step()["gpu_mem_peak_mb"] * 2**20
    assert peak_bytes < packing.trial_bytes, (peak_bytes, packing.reason)


# ----------------------------------------------- gpu_check.py, on the CPU
def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="would run the whole GPU check")
def test_gpu_check_refuses_at_once_without_cuda(tmp_path):
    started = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out-dir",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert "no CUDA device is visible" in proc.stderr and "Nothing was run" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
    assert time.time() - started < 60


def test_gpu_check_parsers():
    check = _gpu_check()
    samples = check.parse_smi("0, 510\n35, 2048\n[N/A], 10\n97, 30000\n88, 29000\n0, 512\n")
    assert samples == [(0.0, 510.0), (35.0, 2048.0), (97.0, 30000.0), (88.0, 29000.0), (0.0, 512.0)]
    summary = check.summarise_smi(samples)
    assert summary["utilisation_median"] == 35.0 and summary["utilisation_median_busy"] == 88.0
    assert summary["memory_used_peak_mb"] == 30000.0 and summary["samples"] == 5
    assert check.summarise_smi([])["utilisation_median"] is None


def test_gpu_check_reads_trials_and_aggregates(tmp_path):
    check = _gpu_check()
    experiment = tmp_path / "exp"
    for t, (start, rate) in enumerate(((100.0, 1000.0), (101.0, 3000.0))):
        trial = experiment / f"ImageTrainable_{t}"
        trial.mkdir(parents=True)
        lines = []
        for epoch in range(3):
            lines.append(json.dumps({
                "trial_id": f"t{t}", "epoch": epoch + 1, "images_per_s": rate * (0.5 if epoch == 0 else 1.0),
                "train_images": 900, "device": "cuda", "device_name": "cuda:0 GPU (CUDA_VISIBLE_DEVICES=0)",
                "data_path": "resident", "amp_dtype": "bfloat16", "gpu_mem_peak_mb": 100.0 + epoch,
                "val_acc": 10.0, "timestamp": start + 2 * (epoch + 1), "time_this_iter_s": 2.0,
            }))
        (trial / "result.json").write_text("\n".join(lines) + "\n{\"cut off")
    trials = check.read_trials(str(experiment))
    assert [t["trial_id"] for t in trials] == ["t0", "t1"]
    assert trials[0]["images_per_s"] == 1000.0 and trials[0]["images_per_s_per_epoch"] == [500.0, 1000.0, 1000.0]
    assert trials[0]["train_images"] == 2700 and trials[0]["gpu_mem_peak_mb"] == 102.0
    assert trials[0]["start"] == 100.0 and trials[1]["end"] == 107.0
    summary = check.summarise_search(trials, wall_s=20.0, expected_trials=2, expected_epochs=3)
    assert summary["all_trials_complete_on_cuda"] is True
    assert summary["train_images_total"] == 5400 and summary["training_span_s"] == 7.0
    assert summary["aggregate_images_per_s"] == round(5400 / 7, 1) and summary["aggregate_images_per_s_wall"] == 270.0
    assert summary["images_per_s_per_trial"]["median"] == 2000.0
    assert summary["devices"] == {"cuda:0 GPU (CUDA_VISIBLE_DEVICES=0)": 2}
    assert check.summarise_search(trials, 20.0, 16, 3)["all_trials_complete_on_cuda"] is False


def test_gpu_check_junit_counts(tmp_path):
    check = _gpu_check()
    xml = tmp_path / "t.xml"
    xml.write_text('<testsuites><testsuite tests="9" failures="1" errors="0" skipped="2"/></testsuites>')
    assert check.junit_counts(str(xml)) == {"tests": 9, "failures": 1, "errors": 0, "skipped": 2, "passed": 6}
    assert check.junit_counts(str(tmp_path / "missing.xml")) is None


def test_gpu_check_run_step_times_out_and_ends_its_session(tmp_path):
    check = _gpu_check()
    step = check.run_step([sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"],
                          str(tmp_path / "log"), timeout_s=2)
    assert step["timed_out"] and step["rc"] != 0 and step["wall_s"] < 30
    assert "hi" in (tmp_path / "log").read_text()
    ok = check.run_step([sys.executable, "-c", "pass"], str(tmp_path / "log2"), timeout_s=30)
    assert ok["rc"] == 0 and not ok["timed_out"]


def test_gpu_check_main_runs_every_step_and_writes_one_json(tmp_path, monkeypatch):
    """The orchestration on the CPU, with CUDA and the steps' subprocesses stubbed out."""
    check = _gpu_check()
    commands = []

    def fake_run_step(cmd, log_path, timeout_s, env=None):
        commands.append((list(cmd), dict(env or {})))
        Path(log_path).write_text("log\n")
        if "pytest" in cmd:
            xml = next(c for c in cmd if c.startswith("--junitxml=")).split("=", 1)[1]
            Path(xml).write_text('<testsuites><testsuite tests="9" failures="0" errors="0" skipped="0"/>'
                                 "</testsuites>")
        elif any(c.endswith("throughput.py") for c in cmd):
            assert cmd[cmd.index("--cuda-graphs") + 1] == "auto,off"
            runs = {f"fake_cifar_nb201_C16_N5_{p}_{d}{e}": {"images_per_s": 1000.0, "data_path": p, "amp_dtype": d}
                    for p in ("resident", "loader") for d in ("bfloat16", "float16") for e in ("", "_eager")}
            Path(cmd[cmd.index("--out") + 1]).write_text(json.dumps({"throughput": {
                **runs, "fake_cifar_data_pipeline": {"images_per_s": 5000.0}}}))
        else:  # raynas search: 16 trials x 3 epochs
            experiment = Path(cmd[cmd.index("--storage") + 1]) / cmd[cmd.index("--name") + 1]
            for t in range(16):
                (experiment / f"T_{t}").mkdir(parents=True)
                (experiment / f"T_{t}" / "result.json").write_text("".join(json.dumps({
                    "trial_id": f"t{t}", "images_per_s": 500.0, "train_images": 100, "device": "cuda",
                    "device_name": "cuda:0 FakeGPU", "timestamp": 10 + e, "time_this_iter_s": 1.0}) + "\n"
                    for e in range(3)))
        return {"cmd": " ".join(cmd), "rc": 0, "timed_out": False, "timeout_s": timeout_s, "wall_s": 1.0,
                "log": os.path.basename(log_path)}

    monkeypatch.setattr(check, "run_step", fake_run_step)
    monkeypatch.setattr(check, "machine_info", lambda: {"gpu": "FakeGPU"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    out = tmp_path / "out"
    assert check.main(["--out-dir", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] and report["failures"] == [] and report["tests"]["counts"]["passed"] == 9
    assert set(report["throughput"]["runs"]) == {f"{p}_{d}{e}" for p in ("resident", "loader")
                                                 for d in ("bfloat16", "float16") for e in ("", "_eager")}
    assert set(report["search"]) == {"1x", "4x", "8x"}
    for label, gpus in (("1x", 1.0), ("4x", 0.25), ("8x", 0.125)):
        search = report["search"][label]
        assert search["gpus_per_trial"] == gpus and search["all_trials_complete_on_cuda"]
        assert search["trials_found"] == 16 and search["devices"] == {"cuda:0 FakeGPU": 16}
        assert search["aggregate_images_per_s"] == 16 * 300 / 3.0
    searches = [(cmd, env) for cmd, env in commands if "search" in cmd]
    assert [cmd[cmd.index("--gpus-per-trial") + 1] for cmd, _ in searches] == ["1", "0.25", "0.125"]
    assert [cmd[cmd.index("--max-concurrent") + 1] for cmd, _ in searches] == ["1", "4", "8"]
    for cmd, env in searches:
        for flag, value in (("--dataset", "fake"), ("--epochs", "3"), ("--num-samples", "16"),
                            ("--scheduler", "none")):
            assert cmd[cmd.index(flag) + 1] == value
        assert env["RAYNAS_FAKE_SIZE"] == "8192"
    assert commands[0][0][1:5] == ["-m", "pytest", "-m", "cuda"]
