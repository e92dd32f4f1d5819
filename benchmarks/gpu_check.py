"""The GPU check: CUDA tests, throughput of both data paths, and packed searches, in one command (~5 min).

Usage, on a machine with one CUDA GPU (from the repository root)::

    .venv/bin/python benchmarks/gpu_check.py --out-dir benchmarks_out/gpu_check   # or: bash benchmarks/gpu_check.sh

Steps, each a subprocess with a time limit inside an overall budget
(``--budget-s``, default 330 s):

1. ``tests``: ``pytest -m cuda tests`` (the CUDA-marked tests: training step,
   checkpoint round trip, AMP in bf16 and fp16, channels_last, the resident
   loader's augmentation against the CPU's, ...);
2. ``throughput``: ``benchmarks/throughput.py --device cuda`` for the NB201
   network C=16, N=5 on CIFAR-shaped FakeData, batch 256, with the
   device-resident data path and with the DataLoader path, each in bf16 and
   in fp16 AMP, with CUDA graphs (the default) and without (``*_eager``), plus
   the DataLoader pipeline's own ceiling;
3. ``search``: a real ``raynas search`` of 16 trials x 3 epochs on FakeData
   (``--dataset fake --scheduler none``) with 1, 4 and 8 trials per GPU
   (``--gpus-per-trial 1 / 0.25 / 0.125``, ``--max-concurrent`` 1 / 4 / 8;
   ``--packings`` chooses others), ``$RAYNAS_FAKE_SIZE`` images each (``--search-fake-size``).

``nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1``
samples the GPU in the background during steps 2 and 3.

Writes into ``--out-dir``: ``gpu_check.json`` (everything below), ``tests.log``,
``throughput.json`` and ``throughput.log``, ``search_<N>x.log``; the searches'
experiment directories go to ``--work-dir`` (a temporary folder, removed unless
``--keep-work``). ``gpu_check.json``:

* ``machine``: GPU name and memory, driver, torch and CUDA versions, CPUs;
* ``tests``: exit code, passed / failed / skipped counts, wall time;
* ``throughput.runs``: per ``resident_bfloat16`` / ``resident_float16`` / ``loader_bfloat16`` /
  ``loader_float16`` and each of them with ``_eager`` (no CUDA graphs): steady images/s (epochs after the first), per-epoch images/s, peak
  device memory (``gpu_mem_peak_mb``), data path, AMP dtype; ``throughput.gpu``: utilisation
  and memory samples of that step;
* ``search.<N>x``: ``gpus_per_trial``, ``max_concurrent``, exit code, wall time, every trial
  (``trials``: device, ``device_name``, data path, AMP dtype, images/s per epoch and steady,
  peak memory, validation accuracy), ``images_per_s_per_trial`` (median / mean / min / max of the
  trials' steady rates), ``aggregate_images_per_s`` (all training images of the search divided by
  the time from the first trial's first epoch to the last result) and ``..._wall`` (divided by the
  whole command's wall time, Ray start included), ``gpu`` (utilisation median over all samples
  and over the busy stretch from the first to the last non-zero sample, peak ``memory.used``),
  ``devices`` (trials per device);
* ``ok``: every step passed and every trial trained all its epochs on CUDA.

Exit status: 0 if ``ok``; 1 if a step failed; 2 at once, before anything runs, when no CUDA
device is visible (this script is for GPU machines only).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMI_QUERY = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-l", "1"]
#: Trials per GPU of the packed searches (each trial asks for 1/N of the GPU; N run at once).
PACKINGS: tuple[int, ...] = (1, 4, 8)

NO_CUDA_MESSAGE = (
    "gpu_check: no CUDA device is visible (torch.cuda.is_available() is False; torch {torch}, built for CUDA "
    "{cuda}; CUDA_VISIBLE_DEVICES={visible!r}). This check runs only on a machine with an NVIDIA GPU: "
    "run it there (see cluster/GPU.md). Nothing was run."
)


# ------------------------------------------------------------------ sampling
def parse_smi(text: str) -> list[tuple[float, float]]:
    """``(utilisation %, memory.used MiB)`` per line of ``nvidia-smi --format=csv,noheader,nounits`` output."""
    samples = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2:
            continue
        try:
            samples.append((float(parts[0]), float(parts[1])))
        except ValueError:  # "[N/A]", a header, a truncated last line
            continue
    return samples


def summarise_smi(samples: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Median utilisation over all samples and over the busy stretch (first to last non-zero); peak memory."""
    if not samples:
        return {"samples": 0, "utilisation_median": None, "utilisation_median_busy": None,
                "utilisation_max": None, "memory_used_peak_mb": None}
    util = [u for u, _ in samples]
    busy_idx = [i for i, u in enumerate(util) if u > 0]
    busy = util[busy_idx[0] : busy_idx[-1] + 1] if busy_idx else []
    return {
        "samples": len(samples),
        "utilisation_median": statistics.median(util),
        "utilisation_median_busy": statistics.median(busy) if busy else 0.0,
        "utilisation_mean": round(statistics.fmean(util), 1),
        "utilisation_max": max(util),
        "memory_used_peak_mb": max(m for _, m in samples),
        "utilisation_series": util,
    }


class SmiSampler:
    """``nvidia-smi ... -l 1`` in the background for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self.text = ""
        self.error: str | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._chunks: list[str] = []

    def __enter__(self) -> "SmiSampler":
        if shutil.which("nvidia-smi") is None:
            self.error = "nvidia-smi not found: no utilisation samples"
            return self
        self._proc = subprocess.Popen(SMI_QUERY, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      start_new_session=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._chunks.append(line)

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._thread is not None:
                self._thread.join(timeout=5)
        self.text = "".join(self._chunks)

    def summary(self) -> dict[str, Any]:
        out = summarise_smi(parse_smi(self.text))
        if self.error:
            out["error"] = self.error
        return out


# ------------------------------------------------------------------- running
def run_step(cmd: Sequence[str], log_path: str, timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` in its own session, output to ``log_path``; on timeout end that session (and only it)."""
    started = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True)
        timed_out = False
        try:
            rc = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            rc = proc.returncode if proc.returncode is not None else -9
    return {"cmd": " ".join(cmd), "rc": rc, "timed_out": timed_out, "timeout_s": round(timeout_s, 1),
            "wall_s": round(time.perf_counter() - started, 1), "log": os.path.basename(log_path)}


def junit_counts(path: str) -> dict[str, int] | None:
    """Tests, failures, errors and skips of a pytest ``--junitxml`` file (``None`` if absent or unreadable)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def read_trials(experiment_dir: str) -> list[dict[str, Any]]:
    """Every trial of a Tune experiment directory, from its ``result.json`` (one JSON result per line)."""
    trials = []
    for path in sorted(glob.glob(os.path.join(experiment_dir, "*", "result.json"))):
        results = []
        with open(path) as handle:
            for line in handle:
                line = line.strip()
                if line:
                    try:
                        results.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut off by a timeout
                        continue
        if not results:
            continue
        last = results[-1]
        rates = [float(r.get("images_per_s", 0.0)) for r in results]
        steady = rates[1:] if len(rates) > 1 else rates
        first = results[0]
        trials.append({
            "trial_id": last.get("trial_id", os.path.basename(os.path.dirname(path))),
            "arch_str": last.get("arch_str"),
            "device": last.get("device"),
            "device_name": last.get("device_name"),
            "gpu_share": last.get("gpu_share"),
            "data_path": last.get("data_path"),
            "amp_dtype": last.get("amp_dtype"),
            "params": last.get("params"),
            "epochs": len(results),
            "images_per_s_per_epoch": [round(r, 1) for r in rates],
            "images_per_s": round(statistics.fmean(steady), 1),
            "train_images": int(sum(int(r.get("train_images", 0)) for r in results)),
            "gpu_mem_peak_mb": max((float(r["gpu_mem_peak_mb"]) for r in results if "gpu_mem_peak_mb" in r),
                                   default=None),
            "val_acc": last.get("val_acc"),
            "start": float(first.get("timestamp", 0)) - float(first.get("time_this_iter_s", 0.0)),
            "end": float(last.get("timestamp", 0)),
            "pid": last.get("pid"),
        })
    return trials


def summarise_search(trials: list[dict[str, Any]], wall_s: float, expected_trials: int,
                     expected_epochs: int) -> dict[str, Any]:
    """Per-trial and aggregated images/s, devices, and whether every trial trained all epochs on CUDA."""
    rates = [t["images_per_s"] for t in trials]
    total = sum(t["train_images"] for t in trials)
    span = (max(t["end"] for t in trials) - min(t["start"] for t in trials)) if trials else 0.0
    devices: dict[str, int] = {}
    for t in trials:
        key = t.get("device_name") or t.get("device") or "?"
        devices[key] = devices.get(key, 0) + 1
    complete = (len(trials) == expected_trials
                and all(t["epochs"] == expected_epochs and t["device"] == "cuda" for t in trials))
    return {
        "trials_found": len(trials),
        "all_trials_complete_on_cuda": complete,
        "images_per_s_per_trial": ({"median": round(statistics.median(rates), 1),
                                    "mean": round(statistics.fmean(rates), 1),
                                    "min": round(min(rates), 1), "max": round(max(rates), 1)} if rates else None),
        "train_images_total": total,
        "training_span_s": round(span, 1),
        "aggregate_images_per_s": round(total / span, 1) if span > 0 else None,
        "aggregate_images_per_s_wall": round(total / wall_s, 1) if wall_s > 0 else None,
        "gpu_mem_peak_mb_per_trial_max": max((t["gpu_mem_peak_mb"] for t in trials
                                               if t["gpu_mem_peak_mb"] is not None), default=None),
        "devices": devices,
        "data_paths": sorted({str(t["data_path"]) for t in trials}),
    }


def machine_info() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0), "gpu_count": torch.cuda.device_count(),
        "gpu_memory_gb": round(props.total_memory / 1e9, 1), "capability": f"{props.major}.{props.minor}",
        "bf16_supported": torch.cuda.is_bf16_supported(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if shutil.which("nvidia-smi"):
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", required=True, help="folder for gpu_check.json and the logs (created)")
    parser.add_argument("--work-dir", help="folder for the searches' experiments (default: a temporary one)")
    parser.add_argument("--keep-work", action="store_true", help="keep --work-dir's temporary folder")
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="all steps together (default 330 s: with start-up and clean-up within 6 min)")
    parser.add_argument("--fake-size", type=int, default=16384, help="FakeData images for the throughput runs")
    parser.add_argument("--search-fake-size", type=int, default=8192, help="FakeData images for each search")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers for the loader path (default: min(8, CPUs))")
    parser.add_argument("--packings", default=",".join(map(str, PACKINGS)),
                        help="comma list of trials per GPU for the searches (default 1,4,8)")
    parser.add_argument("--skip", default="", help="comma list of steps to skip: tests, throughput, search")
    args = parser.parse_args(argv)

    import torch  # after argument errors; the CUDA check comes before anything else runs

    if not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE.format(torch=torch.__version__, cuda=torch.version.cuda,
                                     visible=os.environ.get("CUDA_VISIBLE_DEVICES")), file=sys.stderr)
        return 2

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"tests", "throughput", "search"}
    if unknown:
        parser.error(f"--skip: unknown steps {sorted(unknown)}")
    try:
        packings = [int(p) for p in args.packings.split(",") if p.strip()]
    except ValueError:
        packings = []
    if not packings or any(p < 1 for p in packings):
        parser.error(f"--packings: expected a comma list of positive integers (trials per GPU), got {args.packings!r}")
    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    work_dir = os.path.abspath(args.work_dir) if args.work_dir else tempfile.mkdtemp(prefix="raynas-gpu-check-")
    os.makedirs(work_dir, exist_ok=True)
    started = time.perf_counter()
    deadline = started + args.budget_s
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    report: dict[str, Any] = {"machine": machine_info(), "settings": vars(args) | {"workers": workers},
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out_json = os.path.join(out_dir, "gpu_check.json")
    failures: list[str] = []

    def remaining(limit: float) -> float:
        return max(1.0, min(limit, deadline - time.perf_counter()))

    def save() -> None:
        report["wall_s"] = round(time.perf_counter() - started, 1)
        report["failures"] = failures
        report["ok"] = not failures
        with open(out_json, "w") as handle:
            json.dump(report, handle, indent=2)

    print(f"gpu_check on {report['machine']['gpu']}: out {out_dir}, budget {args.budget_s:g} s", flush=True)

    # 1. the CUDA-marked tests
    if "tests" not in skip:
        xml = os.path.join(work_dir, "tests.xml")
        step = run_step([sys.executable, "-m", "pytest", "-m", "cuda", "tests", "-q", "-p", "no:cacheprovider",
                         f"--junitxml={xml}"], os.path.join(out_dir, "tests.log"), remaining(100))
        counts = junit_counts(xml)
        step["counts"] = counts
        report["tests"] = step
        if step["rc"] != 0 or not counts or counts["passed"] == 0:
            failures.append("tests")
        print(f"tests: rc {step['rc']} {counts} in {step['wall_s']} s", flush=True)
        save()

    # 2. throughput: resident vs DataLoader path, bf16 vs fp16
    if "throughput" not in skip:
        tp_json = os.path.join(out_dir, "throughput.json")
        dtypes = ["bfloat16", "float16"] if torch.cuda.is_bf16_supported() else ["float16"]  # pre-Ampere: fp16
        with SmiSampler() as smi:
            step = run_step([sys.executable, os.path.join(REPO, "benchmarks", "throughput.py"), "--device", "cuda",
                             "--skip-asha", "--cases", "fake,pipeline", "--data-path", "resident,loader",
                             "--amp-dtype", ",".join(dtypes), "--cuda-graphs", "auto,off", "--epochs", str(args.epochs),
                             "--fake-size", str(args.fake_size), "--workers", str(workers), "--out", tp_json],
                            os.path.join(out_dir, "throughput.log"), remaining(110))
        step["gpu"] = smi.summary()
        runs: dict[str, Any] = {}
        try:
            with open(tp_json) as handle:
                measured = json.load(handle)["throughput"]
            for key, entry in measured.items():
                name = key.removeprefix("fake_cifar_nb201_C16_N5_")
                if name != key:
                    runs[name] = {k: entry.get(k) for k in (
                        "images_per_s", "images_per_s_per_epoch", "data_path", "amp_dtype", "gpu_mem_peak_mb",
                        "cuda_graphs", "dataloader_workers", "batch_size", "train_images_per_epoch", "params", "setup_s",
                        "device_name", "data_path_reason")}
            step["pipeline_ceiling"] = measured.get("fake_cifar_data_pipeline")
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            step["error"] = f"no throughput JSON: {exc}"
        step["runs"] = runs
        report["throughput"] = step
        if step["rc"] != 0 or len(runs) != 2 * 2 * len(dtypes):  # data paths x dtypes x graphs on/off
            failures.append("throughput")
        print(f"throughput: rc {step['rc']} " + json.dumps({k: v["images_per_s"] for k, v in runs.items()}),
              flush=True)
        save()

    # 3. real searches with 1, 4 and 8 trials per GPU
    if "search" not in skip:
        report["search"] = {}
        storage = os.path.join(work_dir, "search")
        for concurrent in packings:
            gpus = 1.0 / concurrent
            label = f"{concurrent}x"
            name = f"gpu-check-{label}"
            cmd = [sys.executable, "-m", "raynas.cli", "search", "--dataset", "fake", "--gpus-per-trial", f"{gpus:g}",
                   "--epochs", str(args.epochs), "--num-samples", str(args.num_samples),
                   "--max-concurrent", str(concurrent), "--scheduler", "none", "--seed", "0",
                   "--storage", storage, "--name", name]
            env = {"RAYNAS_FAKE_SIZE": str(args.search_fake_size), "RAY_USAGE_STATS_ENABLED": "0",
                   "RAY_AIR_NEW_OUTPUT": "0"}
            with SmiSampler() as smi:
                step = run_step(cmd, os.path.join(out_dir, f"search_{label}.log"),
                                remaining({1: 110, 4: 70, 8: 70}.get(concurrent, 90)), env=env)
            trials = read_trials(os.path.join(storage, name))
            step.update(gpus_per_trial=gpus, max_concurrent=concurrent, fake_size=args.search_fake_size,
                        **summarise_search(trials, step["wall_s"], args.num_samples, args.epochs),
                        gpu=smi.summary(), trials=trials)
            report["search"][label] = step
            if step["rc"] != 0 or not step["all_trials_complete_on_cuda"]:
                failures.append(f"search {label}")
            print(f"search {label}: rc {step['rc']}, {step['trials_found']} trials, aggregate "
                  f"{step['aggregate_images_per_s']} images/s, utilisation median "
                  f"{step['gpu']['utilisation_median']} % (busy {step['gpu']['utilisation_median_busy']} %), "
                  f"peak {step['gpu']['memory_used_peak_mb']} MiB in {step['wall_s']} s", flush=True)
            save()

    save()
    if not args.work_dir and not args.keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"{'OK' if not failures else 'FAILED: ' + ', '.join(failures)} in {report['wall_s']} s; wrote {out_json}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
