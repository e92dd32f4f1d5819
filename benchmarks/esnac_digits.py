"""ESNAC vs random search: compress a small digits CNN under the same student budget (offline, CPU).

Usage (from the repository root)::

    nice .venv/bin/python benchmarks/esnac_digits.py                       # 5 seeds x 40 students x 3 epochs
    nice .venv/bin/python benchmarks/esnac_digits.py --seeds 2 --budget 16 --epochs 2   # quick look

The teacher is :func:`raynas.teachers.digits_teacher` (a conv stem and two
torchvision ``BasicBlock`` s, one with a downsample shortcut), trained once on
scikit-learn's 8x8 digits (stratified 80/20 split, seed 0). For each seed, ESNAC
(:class:`raynas.search.esnac.ESNAC`, K kernels per step) and random search
(:class:`raynas.search.RandomSearch`: random compressions of the teacher,
:meth:`CompressionSpace.sample`) each get ``--budget`` students; a student is
distilled from the teacher for ``--epochs`` epochs
(:class:`raynas.models.student.DistillationRun`, weights inherited) and scored by
``f = r(2 − r) · A_s / A_t``. Suggestions are made ``K`` at a time (as Tune's
workers would) and completed together. This runs without Ray: it measures the
search methods, not the scheduling.

Accuracies are on the validation split that also drives the search (digits
has no separate test split here), so they are optimistic for the selected
students, equally so for both methods.

Writes ``benchmarks_out/esnac_digits.json`` and ``benchmarks_out/esnac_digits.png``
(accuracy vs parameters of every student, teacher marked).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from raynas.teachers import DIGITS_SHAPE, digits_teacher, train_teacher  # noqa: E402
from raynas.data.digits import load_digits_split  # noqa: E402
from raynas.models import count_parameters  # noqa: E402
from raynas.models.student import DistillationRun, logits_of  # noqa: E402
from raynas.search import RandomSearch  # noqa: E402
from raynas.search.esnac import ESNAC  # noqa: E402
from raynas.spaces.compression import CompressionSpace  # noqa: E402


def evaluate(space, arch, data, teacher_acc, teacher_logits, epochs, seed) -> dict[str, Any]:
    run = DistillationRun(space, arch, data, teacher_acc=teacher_acc, teacher_logits=teacher_logits,
                          epochs=epochs, seed=seed)
    result = {}
    while not result.get("done"):
        result = run.step()
    return {"arch": space.describe(arch), "objective": result["objective"], "val_acc": result["val_acc"],
            "params": result["params"], "compression": result["compression"]}


def run_method(method: str, space, data, teacher_acc, teacher_logits, args, seed) -> dict[str, Any]:
    if method == "esnac":
        search = ESNAC(space, seed=seed, num_kernels=args.kernels, fit_iters=args.fit_iters,
                       num_candidates=args.candidates)
    else:
        search = RandomSearch(space, mode="max", seed=seed)
    history: list[dict[str, Any]] = []
    suggest_seconds = 0.0
    start = time.perf_counter()
    while len(history) < args.budget:
        batch = []
        for k in range(min(args.kernels, args.budget - len(history))):
            t0 = time.perf_counter()
            trial = f"t{len(history) + k}"
            arch = search.suggest(trial)
            suggest_seconds += time.perf_counter() - t0
            batch.append((trial, arch))
        for trial, arch in batch:
            record = evaluate(space, arch, data, teacher_acc, teacher_logits, args.epochs, seed)
            search.complete(trial, record["objective"])
            history.append(record)
    best = max(history, key=lambda r: r["objective"])
    return {"best": best, "history": history, "suggest_seconds": suggest_seconds,
            "seconds": time.perf_counter() - start}


def plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"esnac": "tab:blue", "random": "tab:orange"}
    for method, runs in report["runs"].items():
        points = [(r["params"], r["val_acc"]) for run in runs for r in run["history"]]
        ax.scatter(*zip(*points), s=10, alpha=0.35, color=colours[method], label=f"{method} students")
        bests = [(run["best"]["params"], run["best"]["val_acc"]) for run in runs]
        ax.scatter(*zip(*bests), s=60, marker="D", edgecolor="black", color=colours[method],
                   label=f"{method} best f per seed")
    t = report["teacher"]
    ax.scatter([t["params"]], [t["val_acc"]], s=220, marker="*", color="red", edgecolor="black", label="teacher")
    ax.axvline(0.3 * t["params"], color="grey", ls=":", lw=1, label="30% of teacher params")
    ax.axhline(t["val_acc"] - 2, color="grey", ls="--", lw=1, label="teacher acc - 2 points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(max(0, min(ax.get_ylim()[0], t["val_acc"] - 20)), 100.5)
    ax.set_title("ESNAC vs random search: compressing a digits CNN")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=40, help="students per method and seed")
    parser.add_argument("--epochs", type=int, default=3, help="distillation epochs per student")
    parser.add_argument("--kernels", type=int, default=4, help="ESNAC's K (also the batch size of both methods)")
    parser.add_argument("--fit-iters", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--teacher-width", type=int, default=32)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks_out/esnac_digits.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    load_before = os.getloadavg()

    data = tuple(load_digits_split(0.2, 0))
    teacher = digits_teacher(width=args.teacher_width, seed=0)
    teacher_acc = train_teacher(teacher, data, epochs=args.teacher_epochs, seed=0)
    teacher_params = count_parameters(teacher)
    teacher_logits = logits_of(teacher, data[0])
    space = CompressionSpace(teacher, DIGITS_SHAPE)
    print(f"teacher: {teacher_acc:.2f}% with {teacher_params} parameters", flush=True)

    report: dict[str, Any] = {
        "settings": vars(args), "machine": {"platform": platform.platform(), "load_before": load_before},
        "teacher": {"val_acc": teacher_acc, "params": teacher_params, "arch": space.describe(space.teacher_arch)},
        "runs": {"esnac": [], "random": []},
    }
    for seed in range(args.seeds):
        for method in ("esnac", "random"):
            run = run_method(method, space, data, teacher_acc, teacher_logits, args, seed)
            report["runs"][method].append({"seed": seed, **run})
            b = run["best"]
            print(f"seed {seed} {method:6s}: best f {b['objective']:.4f} ({b['val_acc']:.2f}%, {b['params']} params, "
                  f"{b['params'] / teacher_params:.1%} of teacher) in {run['seconds']:.0f} s", flush=True)

    summary: dict[str, Any] = {}
    for method, runs in report["runs"].items():
        fs = [run["best"]["objective"] for run in runs]
        students = [r for run in runs for r in run["history"]]
        small_good = [r for r in students
                      if r["params"] <= 0.3 * teacher_params and r["val_acc"] >= teacher_acc - 2.0]
        summary[method] = {
            "best_f_mean": statistics.mean(fs), "best_f_std": statistics.pstdev(fs), "best_f_per_seed": fs,
            "best_val_acc_mean": statistics.mean(run["best"]["val_acc"] for run in runs),
            "best_params_ratio_mean": statistics.mean(run["best"]["params"] / teacher_params for run in runs),
            "seeds_whose_best_f_student_meets_30pct_2pt":
                sum(run["best"]["params"] <= 0.3 * teacher_params and run["best"]["val_acc"] >= teacher_acc - 2.0
                    for run in runs),
            "students_meeting_30pct_2pt": len(small_good),
            "searcher_seconds_per_seed": statistics.mean(run["suggest_seconds"] for run in runs),
        }
    overall = max((run["best"] for run in report["runs"]["esnac"]), key=lambda r: r["objective"])
    summary["esnac_beats_random_in_mean_best_f"] = summary["esnac"]["best_f_mean"] > summary["random"]["best_f_mean"]
    summary["esnac_best_student"] = {**overall, "params_ratio": overall["params"] / teacher_params,
                                     "acc_drop_points": teacher_acc - overall["val_acc"]}
    summary["esnac_best_student_meets_30pct_2pt"] = (
        overall["params"] <= 0.3 * teacher_params and overall["val_acc"] >= teacher_acc - 2.0
    )
    report["summary"] = summary
    report["machine"]["load_after"] = os.getloadavg()
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    png = os.path.splitext(args.out)[0] + ".png"
    plot(report, png)
    print(json.dumps({k: v for k, v in summary.items()}, indent=1, default=str))
    print(f"wrote {os.path.abspath(args.out)} and {os.path.abspath(png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
