"""Training throughput of the NB201 network, and the epochs ASHA saves, written as JSON.

Usage (from the repository root)::

    .venv/bin/python benchmarks/throughput.py                  # CPU, ~5-10 min on 2 cores
    .venv/bin/python benchmarks/throughput.py --quick          # smaller, ~2-4 min
    .venv/bin/python benchmarks/throughput.py --device cuda --skip-asha --workers 8 --cifar-dir ~/raynas_data
    # both data paths and both AMP dtypes, CIFAR-shaped data only (what benchmarks/gpu_check.py runs):
    .venv/bin/python benchmarks/throughput.py --device cuda --skip-asha --cases fake \
        --data-path resident,loader --amp-dtype bfloat16,float16

Measures, with :class:`raynas.trainables.ImageTrainable` itself (the code a trial runs):

1. ``throughput``: training images per second (forward, backward, SGD step and
   data loading; the mean over the epochs after the first) of the NB201
   network of one cell on
   * ``digits`` at the main job's size (C=8, one cell per stage, batch 64, 8x8 images), and
   * CIFAR-shaped torchvision ``FakeData`` at the published size (C=16, N=5,
     batch 256, 32x32 images, the standard augmentation), plus the data
     pipeline alone (``DataLoader`` images/s without the model). FakeData
     draws every image with ``torch.randn`` and PIL, so on a fast GPU it can
     be the bottleneck: ``--cifar-dir`` also measures real CIFAR-10.
   On CUDA the trainable uses AMP and channels_last, as in a search.
   ``--data-path`` (``auto``, ``resident``, ``loader``; a comma list measures
   each) chooses between the device-resident data path (the whole data set on
   the device, crop/flip/normalise there per batch) and the CPU ``DataLoader``;
   ``--amp-dtype`` (``auto``, ``bfloat16``, ``float16``) and ``--cuda-graphs``
   (``auto``, ``on``, ``off``: CUDA graphs of the training step) likewise. With
   more than one combination the keys get a ``_<data path>_<amp dtype>``
   suffix, and ``_eager`` where graphs are off; every entry records
   ``data_path``, ``amp_dtype``, ``cuda_graphs`` and, on CUDA, the peak
   device memory of its last epoch (``gpu_mem_peak_mb``). ``--cases`` picks
   the measurements (``digits``, ``fake``, ``pipeline``; default all).
2. ``asha``: the same small search on ``digits`` (regularized evolution, same
   seed, same number of architectures) run through :func:`run_search` once with
   ASHA and once with full training: epochs trained by each, the fraction ASHA
   saved, wall time and best validation accuracy.

Writes ``benchmarks_out/throughput.json`` (``--out``). Timings on a shared
machine are noisy: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Sequence

import torch

# The cell of the README's main-job result (a mid-weight NB201 cell).
CELL = "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|avg_pool_3x3~2|"


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def measure_training(dataset: str, device: str, epochs: int, threads: int, workers: int | None,
                     **config: Any) -> dict[str, Any]:
    """Train one trial for ``epochs`` epochs in-process; images/s of the epochs after the first."""
    from raynas.spaces import NB201Space
    from raynas.trainables import ImageTrainable

    arch = NB201Space().parse(CELL)
    full = {**arch.to_config(), "dataset": dataset, "epochs": epochs, "device": device,
            "num_threads": threads, "num_workers": workers, **config}
    started = time.perf_counter()
    trainable = ImageTrainable(config=full)
    setup_s = time.perf_counter() - started
    results = [trainable.step() for _ in range(epochs)]
    if trainable.device.type == "cuda":
        torch.cuda.synchronize()
    rates = [r["images_per_s"] for r in results]
    steady = rates[1:] if len(rates) > 1 else rates
    out = {
        "dataset": dataset,
        "cell": CELL,
        "device": results[-1]["device"],
        "amp": results[-1]["amp"],
        "channels_last": trainable.settings["channels_last"],
        "channels": trainable.settings["channels"],
        "cells_per_stage": trainable.settings["cells_per_stage"],
        "batch_size": trainable.settings["batch_size"],
        "input_shape": list(trainable.input_shape),
        "train_images_per_epoch": _train_size(trainable),
        "params": results[-1]["params"],
        "flops_per_image": results[-1]["flops"],
        "torch_threads": torch.get_num_threads(),
        "dataloader_workers": trainable.num_workers if results[-1]["data_path"] == "loader" else 0,
        "data_path": results[-1]["data_path"],
        "data_path_reason": trainable.data_path_reason,
        "amp_dtype": results[-1]["amp_dtype"],
        "cuda_graphs": results[-1]["cuda_graphs"],
        "gpu_mem_peak_mb": results[-1].get("gpu_mem_peak_mb"),
        "device_name": results[-1].get("device_name"),
        "epochs": epochs,
        "images_per_s_per_epoch": [round(r, 1) for r in rates],
        "images_per_s": round(statistics.mean(steady), 1),
        "setup_s": round(setup_s, 2),
        "val_acc_last": results[-1]["val_acc"],
    }
    trainable.stop()
    del trainable
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def _train_size(trainable) -> int:
    return int(trainable.train_size)


def _choices(value: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        raise argparse.ArgumentTypeError(f"{flag}: expected a comma list of {', '.join(allowed)}, got {value!r}")
    return items


def _variants(data_paths: list[str], amp_dtypes: list[str],
              graphs: Sequence[str] = ("auto",)) -> list[tuple[str, dict[str, Any]]]:
    """(key suffix, config overrides) for every data path x AMP dtype x CUDA-graphs combination.

    The suffix is ``_<path>_<dtype>``, plus ``_eager`` where CUDA graphs are off (none for one variant).
    """
    single = len(data_paths) == 1 and len(amp_dtypes) == 1 and len(graphs) == 1
    out = []
    for path in data_paths:
        for dtype in amp_dtypes:
            for graph in graphs:
                suffix = "" if single else f"_{path}_{dtype}" + ("_eager" if graph == "off" else "")
                out.append((suffix, {"data_path": path, "amp_dtype": None if dtype == "auto" else dtype,
                                     "cuda_graphs": {"auto": None, "on": True, "off": False}[graph]}))
    return out


def measure_data_pipeline(fake_size: int, batch_size: int, workers: int, epochs: int = 2) -> dict[str, Any]:
    """Images/s of the FakeData training DataLoader alone (augmentation included, no model)."""
    from torch.utils.data import DataLoader

    from raynas.data.vision import load_image_datasets

    data = load_image_datasets("fake", fake_size=fake_size)
    loader = DataLoader(data.train, batch_size=batch_size, shuffle=True, num_workers=workers)
    rates = []
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for x, _y in loader:
            seen += x.shape[0]
        rates.append(seen / (time.perf_counter() - start))
    return {"dataloader_workers": workers, "batch_size": batch_size,
            "images_per_s_per_epoch": [round(r, 1) for r in rates], "images_per_s": round(max(rates), 1)}


def measure_asha(num_samples: int, epochs: int, concurrency: int, seed: int) -> dict[str, Any]:
    """The same digits search with ASHA and with full training, through run_search."""
    import ray

    from raynas.searchers.experiment import SearchSpec, init_ray, run_search

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            init_ray()
        else:
            ray.init(num_cpus=concurrency, include_dashboard=False, log_to_driver=False)
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="raynas-bench-") as storage:
        for scheduler in ("asha", "none"):
            spec = SearchSpec(searcher="regevo", num_samples=num_samples, max_concurrent=concurrency,
                              scheduler=scheduler, grace_period=3, reduction_factor=3, seed=seed,
                              epochs=epochs, storage=storage, name=f"digits-{scheduler}")
            started = time.perf_counter()
            results, summary = run_search(spec, verbose=False)
            frame = results.get_dataframe()
            runs[scheduler] = {
                "trials": int(len(frame)),
                "epochs_trained": int(frame["training_iteration"].sum()),
                "trials_stopped_early": int((frame["training_iteration"] < epochs).sum()),
                "errors": len(results.errors),
                "best_val_acc": float(frame["val_acc"].max()),
                "wall_s": round(time.perf_counter() - started, 1),
            }
    full_budget = num_samples * epochs
    asha_epochs = runs["asha"]["epochs_trained"]
    return {
        "search": {"searcher": "regevo", "dataset": "digits", "num_samples": num_samples, "epochs": epochs,
                   "max_concurrent": concurrency, "grace_period": 3, "reduction_factor": 3, "seed": seed},
        "asha": runs["asha"],
        "full": runs["none"],
        "epochs_saved_fraction": round(1.0 - asha_epochs / runs["none"]["epochs_trained"], 3),
        "epochs_saved_fraction_of_budget": round(1.0 - asha_epochs / full_budget, 3),
        "wall_time_ratio": round(runs["asha"]["wall_s"] / runs["none"]["wall_s"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a 1-CPU trial has 1)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers for FakeData (default: 0 on CPU, 8 on CUDA)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per throughput measurement")
    parser.add_argument("--fake-size", type=int, default=None, help="FakeData images (default 1024; CUDA 16384)")
    parser.add_argument("--cifar-dir", metavar="DIR",
                        help="also measure real CIFAR-10 from DIR (holding cifar-10-batches-py/); never downloads")
    parser.add_argument("--asha-samples", type=int, default=16)
    parser.add_argument("--asha-epochs", type=int, default=10)
    parser.add_argument("--asha-concurrency", type=int, default=2)
    parser.add_argument("--skip-asha", action="store_true", help="throughput only (e.g. on a GPU machine)")
    parser.add_argument("--quick", action="store_true", help="smaller measurements (fewer images and trials)")
    parser.add_argument("--data-path", default="auto",
                        help="comma list of auto, resident (data set on the device), loader (CPU DataLoader)")
    parser.add_argument("--amp-dtype", default="auto", help="comma list of auto, bfloat16, float16 (CUDA)")
    parser.add_argument("--cuda-graphs", default="auto",
                        help="comma list of auto, on, off (CUDA graphs of the training step; 'off' keys end in _eager)")
    parser.add_argument("--cases", default="digits,fake,pipeline",
                        help="comma list of digits, fake, pipeline (real CIFAR-10 comes with --cifar-dir)")
    parser.add_argument("--out", default=os.path.join("benchmarks_out", "throughput.json"))
    args = parser.parse_args(argv)
    try:
        data_paths = _choices(args.data_path, ("auto", "resident", "loader"), "--data-path")
        amp_dtypes = _choices(args.amp_dtype, ("auto", "bfloat16", "float16"), "--amp-dtype")
        cases = _choices(args.cases, ("digits", "fake", "pipeline"), "--cases")
        graphs = _choices(args.cuda_graphs, ("auto", "on", "off"), "--cuda-graphs")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    variants = _variants(data_paths, amp_dtypes, graphs)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    fake_size = args.fake_size or (16384 if device == "cuda" else (512 if args.quick else 1024))
    workers = args.workers if args.workers is not None else (8 if device == "cuda" else 0)
    epochs = max(2, args.epochs - (1 if args.quick else 0))

    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "platform": platform.platform(),
                    "cuda": torch.cuda.get_device_name(0) if device == "cuda" else None,
                    "load_average_before": _load()},
        "note": "timings on a machine shared with other jobs are noisy (see the load averages)",
        "throughput": {},
    }
    print(f"throughput on {device} ...", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    def write() -> None:
        """The JSON after every measurement: a later one that fails or is killed loses nothing before it."""
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)

    def measure(key: str, dataset: str, **config: Any) -> None:
        n_epochs = config.pop("epochs", epochs)
        for suffix, overrides in variants:
            entry = measure_training(dataset, device, epochs=n_epochs, threads=args.threads,
                                     **{**config, **overrides})
            report["throughput"][key + suffix] = entry
            write()
            print(json.dumps({key + suffix: entry["images_per_s"], "data_path": entry["data_path"],
                              "amp_dtype": entry["amp_dtype"], "cuda_graphs": entry["cuda_graphs"]}), flush=True)

    if "digits" in cases:
        measure("digits_nb201_C8_N1", "digits", epochs=epochs + 2, workers=0)
    if "fake" in cases:
        measure("fake_cifar_nb201_C16_N5", "fake", workers=workers, fake_size=fake_size,
                channels=16, cells_per_stage=5, batch_size=256)
    if "pipeline" in cases:
        report["throughput"]["fake_cifar_data_pipeline"] = measure_data_pipeline(fake_size, 256, workers)
    if args.cifar_dir:
        # Real CIFAR-10 decodes cheaper than FakeData generates: the figure to quote for a GPU.
        measure("cifar10_nb201_C16_N5", "cifar10", workers=workers, data_dir=args.cifar_dir,
                channels=16, cells_per_stage=5, batch_size=256)
    if not args.skip_asha:
        print("ASHA against full training on digits ...", flush=True)
        samples = 8 if args.quick else args.asha_samples
        report["asha"] = measure_asha(samples, args.asha_epochs, args.asha_concurrency, seed=0)
    report["machine"]["load_average_after"] = _load()
    write()
    print(json.dumps(report, indent=2))
    print(f"wrote {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
