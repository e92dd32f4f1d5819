"""Ray-free analysis of finished searches: the trial table, best-so-far curve and plot.

Works on the pandas DataFrame of Tune's ``ResultGrid.get_dataframe()`` (one
row per trial, the last reported result, config flattened as ``config/...``).
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import pandas as pd

from raynas.architecture import CONFIG_KEY


def trial_table(frame: pd.DataFrame, metric: str, mode: Literal["max", "min"] = "max") -> pd.DataFrame:
    """One row per trial in the order the searcher suggested them, with the running best of ``metric``.

    raynas searchers put the suggestion index into the config
    (``config/suggestion``); results of other searchers fall back to Tune's
    ``timestamp`` (time of each trial's last result). Trials without a finite
    ``metric`` (errored, or stopped before reporting) are kept, with NaN, and
    do not move the running best.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if frame.empty:
        return pd.DataFrame(columns=["trial", "trial_id", metric, "best_so_far"])
    if metric not in frame.columns:
        raise KeyError(f"metric {metric!r} not in results; columns: {sorted(frame.columns)}")
    table = frame.copy()
    order = [c for c in ("config/suggestion", "timestamp", "trial_id") if c in table.columns]
    if order:
        table = table.sort_values(order, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    table.insert(0, "trial", range(1, len(table) + 1))
    values = pd.to_numeric(table[metric], errors="coerce")
    running = (values.cummax() if mode == "max" else values.cummin()).ffill()
    table["best_so_far"] = running
    keep = ["trial", "trial_id", metric, "best_so_far"]
    extra = [c for c in ("arch_str", "training_iteration", "epochs", "params", "time_total_s",
                         f"config/{CONFIG_KEY}") if c in table.columns and c not in keep]
    rest = [c for c in table.columns if c not in keep + extra]
    return table[keep + extra + rest]


def best_row(table: pd.DataFrame, metric: str, mode: Literal["max", "min"] = "max") -> pd.Series | None:
    """The trial with the best finite ``metric``, or ``None`` when no trial reported one."""
    values = pd.to_numeric(table[metric], errors="coerce") if metric in table else pd.Series(dtype=float)
    if values.notna().sum() == 0:
        return None
    return table.loc[values.idxmax() if mode == "max" else values.idxmin()]


def plot_best_so_far(table: pd.DataFrame, metric: str, path: str | os.PathLike, title: str = "") -> str:
    """Write the best-so-far curve (and every trial's value) as a PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if len(table):
        x = np.arange(1, len(table) + 1)
        ax.scatter(x, pd.to_numeric(table[metric], errors="coerce"), s=12, alpha=0.5, label="trial")
        ax.step(x, table["best_so_far"], where="post", color="C3", label="best so far")
        ax.legend(loc="lower right")
    ax.set_xlabel("trials, in suggestion order")
    ax.set_ylabel(metric)
    ax.set_title(title or f"best {metric} so far")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    frame: pd.DataFrame,
    metric: str,
    mode: Literal["max", "min"],
    directory: str | os.PathLike,
    title: str = "",
) -> dict[str, object]:
    """Write ``results.csv`` and ``best_so_far.png`` into ``directory``; return a summary."""
    os.makedirs(directory, exist_ok=True)
    table = trial_table(frame, metric, mode)
    csv_path = os.path.join(directory, "results.csv")
    table.to_csv(csv_path, index=False)
    png_path = plot_best_so_far(table, metric, os.path.join(directory, "best_so_far.png"), title)
    best = best_row(table, metric, mode)
    summary: dict[str, object] = {
        "trials": int(len(table)),
        "with_metric": int(pd.to_numeric(table.get(metric), errors="coerce").notna().sum()) if len(table) else 0,
        "results_csv": csv_path,
        "plot": png_path,
        "best": None,
    }
    if best is not None:
        summary["best"] = {
            k: (v.item() if hasattr(v, "item") else v)
            for k, v in best.items()
            if k in ("trial_id", metric, "arch_str", "training_iteration", "params", f"config/{CONFIG_KEY}")
            or k.startswith("cifar") or k.endswith("acc")
        }
    return summary


def format_summary(summary: dict[str, object], metric: str) -> str:
    """Human-readable lines for the end of ``raynas search`` / ``raynas analyze``."""
    lines = [f"trials: {summary['trials']} ({summary['with_metric']} reported {metric})"]
    best = summary.get("best")
    if isinstance(best, dict):
        lines.append(f"best {metric}: {best.get(metric)}  (trial {best.get('trial_id')})")
        if best.get("arch_str"):
            lines.append(f"best architecture: {best['arch_str']}")
        for key, value in best.items():
            if key not in (metric, "trial_id", "arch_str"):
                lines.append(f"  {key}: {value}")
    else:
        lines.append(f"no trial reported {metric}")
    lines.append(f"results table: {summary['results_csv']}")
    lines.append(f"best-so-far plot: {summary['plot']}")
    return "\n".join(lines)
