"""Ray-free analysis of finished searches: the trial table, plots and a self-contained HTML report.

Works on the pandas DataFrame of Tune's ``ResultGrid.get_dataframe()`` (one
row per trial, the last reported result, config flattened as ``config/...``).

:func:`write_report` writes into an experiment directory:

- ``results.csv``: one row per trial in suggestion order, with the running
  best (of full-fidelity results only) and whether each trial ran at full
  fidelity;
- ``best_so_far.png``: best so far over the trials, the regret against the
  table's optimum (log scale) when the run answered from a tabular
  benchmark, and the test metric of the incumbent when the results have one;
  trials stopped before full fidelity (by a scheduler such as ASHA, or
  still running when the run was interrupted) are marked, never counted;
- ``pareto.png``: the objective against parameters / FLOPs, when the results
  have such columns, with the Pareto front highlighted;
- ``best_arch.png``: the best architecture drawn from ``space.to_graph``;
- ``report.html``: all of it in one self-contained page (plots embedded as
  base64 PNG), with a summary and the ten best architectures.

:func:`write_comparison` overlays several runs (``raynas analyze DIR DIR ...``).
The settings of a run (its table, test metric, space) are read from the
``raynas.json`` that ``raynas search`` keeps in the experiment directory, or
passed as ``spec``.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
import math
import os
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from raynas.architecture import CONFIG_KEY, Architecture
from raynas.benchmarks.tabular import BenchmarkError
from raynas.spaces.base import InvalidArchitectureError

Mode = Literal["max", "min"]

#: Files :func:`write_report` writes (besides ``results.csv``).
REPORT_HTML = "report.html"
PROGRESS_PNG = "best_so_far.png"
PARETO_PNG = "pareto.png"
ARCH_PNG = "best_arch.png"
COMPARISON_HTML = "comparison.html"
COMPARISON_PNG = "comparison.png"
COMPARISON_PARETO_PNG = "comparison_pareto.png"
#: ``raynas.json``: the settings ``raynas search`` saves in the experiment directory.
SPEC_FILE = "raynas.json"

logger = logging.getLogger(__name__)

_STOPPED_STYLE = dict(marker="|", linestyle="none", color="0.45", markersize=9, markeredgewidth=1.2)


# ------------------------------------------------------------------ the trial table
def full_fidelity(frame: pd.DataFrame, metric: str, max_iteration: int | None = None) -> pd.Series:
    """Whether each trial's last result is at full fidelity (not a trial a scheduler stopped early).

    A trial that reports ``fidelity`` (:class:`~raynas.trainables.TabularTrainable`)
    is at full fidelity when that is the objective's column (``metric``); else
    when its last ``training_iteration`` reached ``max_iteration`` (default:
    the largest any trial reached). Without either column every trial counts.
    """
    full = pd.Series(True, index=frame.index)
    iterations = (pd.to_numeric(frame["training_iteration"], errors="coerce")
                  if "training_iteration" in frame.columns else None)
    if iterations is not None and iterations.notna().any():
        top = max_iteration if max_iteration is not None else iterations.max()
        full = (iterations >= top).fillna(False)
    if "fidelity" in frame.columns:
        reported = frame["fidelity"].notna()
        full = full.where(~reported, frame["fidelity"].astype(str) == metric)
    return full.astype(bool)


def trial_table(frame: pd.DataFrame, metric: str, mode: Mode = "max",
                max_iteration: int | None = None) -> pd.DataFrame:
    """One row per trial in the order the searcher suggested them, with the running best of ``metric``.

    raynas searchers put the suggestion index into the config
    (``config/suggestion``); results of other searchers fall back to Tune's
    ``timestamp`` (time of each trial's last result). ``full_fidelity`` says
    whether a trial's value is a full-fidelity result (:func:`full_fidelity`);
    the running best ``best_so_far`` counts only those, so the lower-fidelity
    value of a trial ASHA stopped never becomes "the best". Trials without a
    finite ``metric`` (errored, or stopped before reporting) are kept, with
    NaN, and do not move the running best.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if frame.empty:
        return pd.DataFrame(columns=["trial", "trial_id", metric, "best_so_far", "full_fidelity"])
    if metric not in frame.columns:
        raise KeyError(f"metric {metric!r} not in results; columns: {sorted(frame.columns)}")
    table = frame.copy()
    order = [c for c in ("config/suggestion", "timestamp", "trial_id") if c in table.columns]
    if order:
        table = table.sort_values(order, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    table.insert(0, "trial", range(1, len(table) + 1))
    table["full_fidelity"] = full_fidelity(table, metric, max_iteration)
    values = pd.to_numeric(table[metric], errors="coerce").where(table["full_fidelity"])
    running = (values.cummax() if mode == "max" else values.cummin()).ffill()
    table["best_so_far"] = running
    keep = ["trial", "trial_id", metric, "best_so_far", "full_fidelity"]
    extra = [c for c in ("arch_str", "fidelity", "training_iteration", "epochs", "params", "time_total_s",
                         f"config/{CONFIG_KEY}") if c in table.columns and c not in keep]
    rest = [c for c in table.columns if c not in keep + extra]
    return table[keep + extra + rest]


def best_row(table: pd.DataFrame, metric: str, mode: Mode = "max") -> pd.Series | None:
    """The trial with the best finite ``metric``, or ``None`` when no trial reported one.

    Full-fidelity trials (``full_fidelity`` of :func:`trial_table`) come
    first; only when none reported the metric is a stopped trial's value taken.
    """
    values = pd.to_numeric(table[metric], errors="coerce") if metric in table else pd.Series(dtype=float)
    if "full_fidelity" in table and values.where(table["full_fidelity"].astype(bool)).notna().any():
        values = values.where(table["full_fidelity"].astype(bool))
    if values.notna().sum() == 0:
        return None
    return table.loc[values.idxmax() if mode == "max" else values.idxmin()]


def pareto_front(costs: Sequence[float], values: Sequence[float], mode: Mode = "max") -> np.ndarray:
    """Boolean mask of the points no other point beats: lower (or equal) cost *and* a better (or equal) value.

    :func:`raynas.pareto.pareto_mask` on (value, −cost); of identical points the first is kept.
    Points with a non-finite cost or value are never on the front.
    """
    import torch

    from raynas.pareto import pareto_mask

    costs = np.asarray(costs, dtype=float)
    values = np.asarray(values, dtype=float)
    score = values if mode == "max" else -values
    ok = np.flatnonzero(np.isfinite(costs) & np.isfinite(score))
    front = np.zeros(len(costs), dtype=bool)
    if len(ok) == 0:
        return front
    points = np.stack([score[ok], -costs[ok]], axis=1)
    _, first = np.unique(points, axis=0, return_index=True)  # identical points: the first one only
    keep = ok[np.sort(first)]
    mask = pareto_mask(torch.as_tensor(np.stack([score[keep], -costs[keep]], axis=1))).numpy()
    front[keep[mask]] = True
    return front


def cost_columns(table: pd.DataFrame) -> list[str]:
    """Numeric result columns that measure size: names with "param" or "flop" that vary across trials."""
    columns = []
    for column in table.columns:
        name = str(column).lower()
        if name.startswith("config/") or not ("param" in name or "flop" in name):
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().sum() >= 2 and values.nunique() > 1:
            columns.append(str(column))
    return columns


# ------------------------------------------------------------------ one run
@dataclass
class Run:
    """A finished (or interrupted) search, ready to report: its trial table and what is known about it."""

    label: str
    table: pd.DataFrame
    metric: str
    mode: Mode
    spec: dict[str, Any] = field(default_factory=dict)
    #: the table's best objective value when the run answered from a tabular benchmark
    optimum: float | None = None
    #: the test metric of the table's optimum
    optimum_test: float | None = None
    test_metric: str | None = None
    space: Any = None
    notes: list[str] = field(default_factory=list)
    directory: str | None = None
    #: the tabular benchmark the run answered from, if any (its true Pareto fronts are drawn)
    benchmark: Any = None

    def true_front(self, column: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The benchmark's own Pareto front of the metric against ``column``: ``(costs, values)``
        sorted by cost, or ``None`` without a table holding both columns."""
        if self.benchmark is None:
            return None
        try:
            costs = np.asarray([self.benchmark.value(a, column) for a in self.benchmark.architectures])
            values = np.asarray([self.benchmark.value(a, self.metric) for a in self.benchmark.architectures])
        except (KeyError, ValueError, LookupError):  # the table lacks one of them (BenchmarkError is a ValueError)
            return None
        front = pareto_front(costs, values, self.mode)
        order = np.argsort(costs[front])
        return costs[front][order], values[front][order]

    @property
    def stopped(self) -> pd.Series:
        """Trials with a (lower-fidelity) value whose last result is not at full fidelity."""
        values = pd.to_numeric(self.table[self.metric], errors="coerce")
        return values.notna() & ~self.table["full_fidelity"].astype(bool)

    @property
    def values(self) -> pd.Series:
        """``metric`` of full-fidelity trials, NaN elsewhere."""
        return pd.to_numeric(self.table[self.metric], errors="coerce").where(self.table["full_fidelity"].astype(bool))

    def regret(self) -> pd.Series | None:
        """Regret of the running best against the table's optimum (``None`` without a table)."""
        if self.optimum is None:
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        return (sign * (self.optimum - self.table["best_so_far"])).clip(lower=0.0)

    def incumbent_test(self) -> pd.Series | None:
        """Test metric of the best full-fidelity trial so far, per trial (``None`` without a test metric)."""
        if not self.test_metric or self.test_metric not in self.table.columns:
            return None
        tests = pd.to_numeric(self.table[self.test_metric], errors="coerce")
        values = self.values
        out, best, current = [], math.nan, math.nan
        for value, test in zip(values, tests):
            if not math.isnan(value) and (math.isnan(best) or (value > best if self.mode == "max" else value < best)):
                best, current = value, test
            out.append(current)
        series = pd.Series(out, index=self.table.index, dtype=float)
        return series if series.notna().any() else None

    def architecture_text(self, row: pd.Series) -> str:
        """``space.describe`` of a trial's architecture; the reported ``arch_str`` or its JSON otherwise."""
        arch = _arch_of(row)
        if arch is not None and self.space is not None:
            try:
                return str(self.space.describe(arch))
            except (InvalidArchitectureError, ValueError, KeyError, IndexError):
                pass  # an architecture of another space: fall back to what the trial said
        if "arch_str" in row and isinstance(row["arch_str"], str) and row["arch_str"]:
            return row["arch_str"]
        return arch.to_json() if arch is not None else "?"


def read_spec(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The ``raynas.json`` of an experiment directory as a dict, or ``None`` where there is none."""
    path = os.path.join(os.fspath(directory), SPEC_FILE)
    if "://" in os.fspath(directory) or not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prepare_run(
    frame: pd.DataFrame,
    metric: str,
    mode: Mode,
    *,
    spec: Mapping[str, Any] | Any | None = None,
    label: str | None = None,
    benchmark: Any = None,
    space: Any = None,
    directory: str | os.PathLike | None = None,
) -> Run:
    """A :class:`Run` from Tune's results and the run's settings.

    ``spec``: the ``raynas.json`` dict (or the ``SearchSpec`` itself); read
    from ``directory`` when not given. When it names a tabular benchmark that
    exists, the table's optimum gives the regret and its space draws the
    architectures; ``benchmark`` / ``space`` override what the spec says.
    """
    if spec is not None and dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        spec = dataclasses.asdict(spec)
    spec = dict(spec) if spec is not None else (read_spec(directory) if directory is not None else None) or {}
    notes: list[str] = []
    max_iteration = _max_iteration(spec)
    table = trial_table(frame, metric, mode, max_iteration=max_iteration)
    test_metric = spec.get("test_metric")
    if benchmark is None and spec.get("benchmark"):
        benchmark, problem = _load_benchmark(spec, metric, mode)
        if problem:
            notes.append(problem)
    optimum = optimum_test = None
    if benchmark is not None:
        arch, optimum = benchmark.optimum
        test_metric = test_metric or benchmark.test_metric
        if test_metric:
            try:
                optimum_test = float(benchmark.value(arch, test_metric))
            except (BenchmarkError, KeyError, ValueError):  # the table lacks that column
                optimum_test = None
        space = space if space is not None else benchmark.space
    if space is None:
        space, problem = _space_for(spec, table)
        if problem:
            notes.append(problem)
    if label is None:
        label = str(spec.get("name") or (os.path.basename(os.fspath(directory).rstrip("/")) if directory else "run"))
        if spec.get("searcher") and spec["searcher"] not in label:
            label = f"{spec['searcher']}: {label}"
    return Run(label=label, table=table, metric=metric, mode=mode, spec=spec, optimum=optimum,
               optimum_test=optimum_test, test_metric=test_metric, space=space, notes=notes,
               directory=os.fspath(directory) if directory is not None else None, benchmark=benchmark)


# ------------------------------------------------------------------ plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_best_so_far(
    table: pd.DataFrame,
    metric: str,
    path: str | os.PathLike,
    title: str = "",
    *,
    run: Run | None = None,
) -> str:
    """Write the progress figure as a PNG; returns the path.

    Top: every full-fidelity trial's value and the best so far (the table's
    optimum dashed when known); below, when known, the regret against that
    optimum (log scale) and the test metric of the incumbent. Trials a
    scheduler stopped early are ticks along the bottom of each panel: their
    lower-fidelity values are not comparable and count for nothing.
    """
    plt = _pyplot()
    if run is None:
        run = Run(label=title or "run", table=table if "full_fidelity" in table else
                  table.assign(full_fidelity=True), metric=metric, mode="max")
    regret = run.regret()
    test = run.incumbent_test()
    panels = 1 + (regret is not None) + (test is not None)
    fig, axes = plt.subplots(panels, 1, figsize=(7.5, 2.2 + 2.3 * panels), dpi=120, sharex=True, squeeze=False)
    axes = list(axes[:, 0])
    table = run.table
    x = np.arange(1, len(table) + 1)
    stopped = run.stopped.to_numpy() if len(table) else np.zeros(0, dtype=bool)
    ax = axes[0]
    if len(table):
        values = run.values
        ax.scatter(x, values, s=14, alpha=0.55, color="C0", label="trial (full fidelity)", zorder=2)
        ax.step(x, table["best_so_far"], where="post", color="C3", lw=2, label="best so far", zorder=3)
        if run.optimum is not None:
            ax.axhline(run.optimum, color="k", ls="--", lw=1, label=f"table optimum {run.optimum:g}")
        _mark_found(ax, run, table["best_so_far"])
    ax.set_ylabel(metric)
    ax.set_title(title or f"best {metric} so far", fontsize=11)
    for axis in axes:
        if stopped.any():
            axis.plot(x[stopped], np.full(stopped.sum(), 0.015), transform=axis.get_xaxis_transform(),
                      label=f"stopped before full fidelity ({int(stopped.sum())})" if axis is ax else None,
                      **_STOPPED_STYLE)
        axis.grid(alpha=0.3)
    k = 1
    if regret is not None:
        axr = axes[k]
        k += 1
        positive = regret[regret > 0]
        floor = float(10 ** (np.floor(np.log10(positive.min())) - 1)) if len(positive) else 1e-3
        shown = regret.clip(lower=floor)
        axr.step(x, shown, where="post", color="C3", lw=2)
        trial_regret = ((1.0 if run.mode == "max" else -1.0) * (run.optimum - run.values)).clip(lower=floor)
        axr.scatter(x, trial_regret, s=10, alpha=0.4, color="C0")
        axr.axhline(floor, color="0.4", ls=":", lw=1)
        axr.annotate("optimum found (regret 0)", (0.01, floor), xycoords=("axes fraction", "data"),
                     xytext=(0, 2), textcoords="offset points", va="bottom", fontsize=8, color="0.3")
        axr.set_yscale("log")
        axr.set_ylabel("regret (log)")
        axr.set_title(f"regret = optimum − best so far (optimum {run.optimum:g})", fontsize=10)
        axr.grid(alpha=0.3, which="both")
    if test is not None:
        axt = axes[k]
        axt.step(x, test, where="post", color="C2", lw=2, label="incumbent's test metric")
        if run.optimum_test is not None:
            axt.axhline(run.optimum_test, color="k", ls="--", lw=1,
                        label=f"test metric of the table optimum {run.optimum_test:g}")
        axt.set_ylabel(str(run.test_metric))
        axt.set_title("test metric of the best full-fidelity trial so far", fontsize=10)
        axt.legend(loc="best", fontsize=8, framealpha=0.85)
    axes[-1].set_xlabel("trials, in suggestion order")
    if len(table):
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
        axes[-1].set_xlim(0.5, len(table) + 0.5)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _mark_found(ax, run: Run, best: pd.Series) -> None:
    """A star where the run first reached its final best."""
    final = best.dropna()
    if final.empty:
        return
    first = int(np.flatnonzero(best.to_numpy() == final.iloc[-1])[0]) + 1
    ax.scatter([first], [final.iloc[-1]], marker="*", s=140, color="C3", edgecolor="k", zorder=4)
    right = first > 0.7 * len(best)  # near the right edge: the label goes to the left of the star
    ax.annotate(f"best {final.iloc[-1]:g} at trial {first}", (first, final.iloc[-1]), xytext=(-8 if right else 8, -14),
                textcoords="offset points", fontsize=8, ha="right" if right else "left")


def plot_pareto(run: Run, columns: Sequence[str], path: str | os.PathLike, title: str = "") -> str | None:
    """The objective against each cost column (params, FLOPs), the Pareto front highlighted; ``None`` if none."""
    if not columns:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(5.2 * len(columns), 4.2), dpi=120, squeeze=False)
    values = run.values
    best = best_row(run.table, run.metric, run.mode)
    for ax, column in zip(axes[0], columns):
        costs = pd.to_numeric(run.table[column], errors="coerce")
        front = pareto_front(costs, values, run.mode)
        ax.scatter(costs, values, s=16, alpha=0.45, color="C0", label="trial (full fidelity)")
        order = np.argsort(costs.to_numpy()[front])
        fx, fy = costs.to_numpy()[front][order], values.to_numpy()[front][order]
        ax.step(fx, fy, where="post", color="C1", lw=1.5, zorder=2)
        ax.scatter(fx, fy, s=46, color="C1", edgecolor="k", zorder=3, label=f"Pareto front ({len(fx)})")
        true = run.true_front(column)
        if true is not None:
            ax.step(*true, where="post", color="0.4", lw=1.0, ls="--", zorder=1,
                    label=f"the table's front ({len(true[0])})")
        if best is not None and best.get("full_fidelity", True):
            ax.scatter([best[column]], [best[run.metric]], marker="*", s=200, color="C3", edgecolor="k", zorder=4,
                       label="best")
        ax.set_xlabel(column)
        ax.set_ylabel(run.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if run.mode == "max" else "upper right")
    fig.suptitle(title or f"{run.metric} against size", fontsize=11)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def graph_layout(graph, wrap: int = 8) -> dict[Any, tuple[float, float]]:
    """Left-to-right layered layout of a DAG: layer = longest path from a source, barycentre ordering.

    A graph deeper than ``wrap`` layers (a long chain, say) continues on
    further rows below, like lines of text, so that it stays readable.
    """
    import networkx as nx

    layer: dict[Any, int] = {}
    for node in nx.topological_sort(graph):
        layer[node] = max((layer[p] + 1 for p in graph.predecessors(node)), default=0)
    layers: dict[int, list] = {}
    for node in sorted(graph.nodes, key=lambda n: (layer[n], str(n))):
        layers.setdefault(layer[node], []).append(node)
    y: dict[Any, float] = {}
    for depth in sorted(layers):
        nodes = layers[depth]
        if depth > 0:  # order by the mean height of the predecessors: fewer crossings
            nodes.sort(key=lambda n: np.mean([y[p] for p in graph.predecessors(n)]) if graph.in_degree(n) else 0.0)
        for k, node in enumerate(nodes):
            y[node] = (len(nodes) - 1) / 2.0 - k
    depth = max(layers, default=0) + 1
    if depth <= wrap + 2:
        return {node: (float(layer[node]), y[node]) for node in graph.nodes}
    per_row = math.ceil(depth / math.ceil(depth / wrap))
    row_height = max(len(nodes) for nodes in layers.values()) + 0.8
    return {node: (float(layer[node] % per_row), y[node] - row_height * (layer[node] // per_row))
            for node in graph.nodes}


def plot_architecture(space: Any, arch: Architecture, path: str | os.PathLike, title: str = "") -> str:
    """Draw ``space.to_graph(arch)``: one box per node labelled with its op, arrows along the edges."""
    import networkx as nx

    from raynas.spaces.base import OP_ATTR

    plt = _pyplot()
    graph = space.to_graph(arch)
    if not nx.is_directed_acyclic_graph(graph):
        raise ValueError("the architecture graph has a cycle")
    pos = graph_layout(graph)
    depth = int(max(p[0] for p in pos.values())) + 1
    rows = max(p[1] for p in pos.values()) - min(p[1] for p in pos.values()) + 1
    big = graph.number_of_nodes() > 40
    fig, ax = plt.subplots(figsize=(min(22.0, max(6.0, 1.8 * depth)), min(22.0, max(3.2, 0.95 * rows + 1.5))),
                           dpi=120)
    ops = sorted({str(graph.nodes[n].get(OP_ATTR, "")) for n in graph.nodes} - {"input", "output"})
    palette = plt.get_cmap("tab20")
    colors = {op: palette(k % 20) for k, op in enumerate(ops)}
    colors.update({"input": (0.85, 0.85, 0.85, 1.0), "output": (0.85, 0.85, 0.85, 1.0)})
    texts = {}
    for node in graph.nodes:
        data = graph.nodes[node]
        op = str(data.get(OP_ATTR, node))
        label = "\n".join(textwrap.wrap(op, 16, break_on_hyphens=False)) or op
        units = data.get("units")
        if isinstance(units, (int, float)) and units > 0:
            label += f"\n({units:g})"
        fill = colors.get(op, (0.9, 0.9, 0.9, 1.0))
        light = 0.6 * np.asarray(fill[:3]) + 0.4  # lighter than the palette, so black text reads well
        texts[node] = ax.text(*pos[node], label, ha="center", va="center", fontsize=7 if big else 9, zorder=3,
                              family="DejaVu Sans Mono",
                              bbox=dict(boxstyle="round,pad=0.45", fc=(*light, 1.0), ec="0.25", lw=1.0))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    fig.canvas.draw()  # the boxes need their sizes before arrows can stop at their edges
    for u, v in graph.edges:
        span = pos[v][0] - pos[u][0]
        if span < 0:  # on to the next row
            rad = 0.0
        else:
            rad = 0.0 if span <= 1 and pos[u][1] == pos[v][1] else (0.12 if span <= 1 else 0.25)
        ax.annotate("", xy=pos[v], xytext=pos[u], zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.1, mutation_scale=12,
                                    shrinkA=2, shrinkB=2, connectionstyle=f"arc3,rad={rad}",
                                    patchA=texts[u].get_bbox_patch(), patchB=texts[v].get_bbox_patch()))
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_comparison(runs: Sequence[Run], path: str | os.PathLike, title: str = "") -> str:
    """Several runs overlaid: best so far (regret when they share a table's optimum), incumbent test metric."""
    plt = _pyplot()
    optima = {run.optimum for run in runs}
    use_regret = None not in optima and len(optima) == 1
    tests = [run.incumbent_test() for run in runs]
    with_test = any(t is not None for t in tests)
    panels = 1 + with_test
    fig, axes = plt.subplots(panels, 1, figsize=(8, 1.6 + 3.0 * panels), dpi=120, sharex=True, squeeze=False)
    axes = list(axes[:, 0])
    ax = axes[0]
    floor = None
    if use_regret:
        regrets = [run.regret() for run in runs]
        positive = pd.concat([r[r > 0] for r in regrets if r is not None])
        floor = float(10 ** (np.floor(np.log10(positive.min())) - 1)) if len(positive) else 1e-3
    for k, run in enumerate(runs):
        x = np.arange(1, len(run.table) + 1)
        color = f"C{k % 10}"
        y = run.regret().clip(lower=floor) if use_regret else run.table["best_so_far"]
        ax.step(x, y, where="post", color=color, lw=2, label=run.label)
        stopped = run.stopped.to_numpy()
        if stopped.any():
            ax.plot(x[stopped], np.full(stopped.sum(), 0.015 + 0.025 * k), transform=ax.get_xaxis_transform(),
                    **{**_STOPPED_STYLE, "color": color, "alpha": 0.6})
        if with_test and tests[k] is not None:
            axes[1].step(x, tests[k], where="post", color=color, lw=2, label=run.label)
    if use_regret:
        ax.set_yscale("log")
        ax.axhline(floor, color="0.4", ls=":", lw=1)
        ax.annotate("optimum found (regret 0)", (0.01, floor), xycoords=("axes fraction", "data"),
                    xytext=(0, 2), textcoords="offset points", va="bottom", fontsize=8, color="0.3")
        ax.set_ylabel(f"regret of {runs[0].metric} (log)")
        ax.set_title(f"regret = table optimum ({runs[0].optimum:g}) − best so far; ticks: trials stopped early",
                     fontsize=10)
    else:
        ax.set_ylabel(" / ".join(dict.fromkeys(run.metric for run in runs)))
        ax.set_title("best full-fidelity value so far; ticks: trials stopped early", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if with_test:
        axes[1].set_ylabel(" / ".join(dict.fromkeys(r.test_metric for r in runs if r.test_metric)))
        axes[1].set_title("test metric of each run's incumbent", fontsize=10)
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=8, loc="lower right")
    axes[-1].set_xlabel("trials, in suggestion order")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_comparison_pareto(runs: Sequence[Run], columns: Sequence[str], path: str | os.PathLike) -> str | None:
    """Full-fidelity trials of several runs against a shared cost column each, one colour per run."""
    if not columns:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(5.2 * len(columns), 4.2), dpi=120, squeeze=False)
    for ax, column in zip(axes[0], columns):
        for k, run in enumerate(runs):
            costs = pd.to_numeric(run.table[column], errors="coerce")
            values = run.values
            front = pareto_front(costs, values, run.mode)
            color = f"C{k % 10}"
            ax.scatter(costs, values, s=12, alpha=0.35, color=color)
            order = np.argsort(costs.to_numpy()[front])
            ax.step(costs.to_numpy()[front][order], values.to_numpy()[front][order], where="post", color=color,
                    lw=1.8, marker="o", markersize=4, label=f"{run.label}: Pareto front")
        ax.set_xlabel(column)
        ax.set_ylabel(runs[0].metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ reports
def write_report(
    frame: pd.DataFrame,
    metric: str,
    mode: Mode,
    directory: str | os.PathLike,
    title: str = "",
    *,
    spec: Mapping[str, Any] | Any | None = None,
    benchmark: Any = None,
    space: Any = None,
) -> dict[str, object]:
    """Write ``results.csv``, the plots and ``report.html`` into ``directory``; return a summary.

    ``spec`` (the run's ``raynas.json`` settings) is read from ``directory``
    when not given; see :func:`prepare_run` for ``benchmark`` and ``space``.
    """
    os.makedirs(directory, exist_ok=True)
    run = prepare_run(frame, metric, mode, spec=spec, benchmark=benchmark, space=space, directory=directory,
                      label=title or None)
    return write_run_report(run, directory, title=title)


def write_run_report(run: Run, directory: str | os.PathLike, title: str = "") -> dict[str, object]:
    """:func:`write_report` of a prepared :class:`Run`."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    table, metric = run.table, run.metric
    csv_path = os.path.join(directory, "results.csv")
    table.to_csv(csv_path, index=False)
    title = title or run.label
    plots: dict[str, str] = {}
    plots["progress"] = plot_best_so_far(table, metric, os.path.join(directory, PROGRESS_PNG), title, run=run)
    columns = cost_columns(table[table["full_fidelity"].astype(bool)]) if len(table) else []
    pareto = plot_pareto(run, columns, os.path.join(directory, PARETO_PNG), title=f"{metric} against size")
    if pareto:
        plots["pareto"] = pareto
    else:
        _remove(os.path.join(directory, PARETO_PNG))
    best = best_row(table, metric, run.mode)
    arch_png = _draw_best(run, best, os.path.join(directory, ARCH_PNG))
    if arch_png:
        plots["architecture"] = arch_png
    summary = _summary(run, best)
    summary.update({"results_csv": csv_path, "plot": plots["progress"], "plots": plots})
    report_path = os.path.join(directory, REPORT_HTML)
    _write_text(report_path, _report_html(run, summary, plots, columns, title))
    summary["report"] = report_path
    return summary


def write_comparison(runs: Sequence[Run], directory: str | os.PathLike, title: str = "") -> dict[str, object]:
    """Overlay several runs: ``comparison.png`` (and ``comparison_pareto.png``) and ``comparison.html``."""
    if not runs:
        raise ValueError("write_comparison needs at least one run")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    plots = {"progress": plot_comparison(runs, os.path.join(directory, COMPARISON_PNG), title)}
    shared = [c for c in cost_columns(runs[0].table) if all(c in run.table.columns for run in runs)]
    pareto = plot_comparison_pareto(runs, shared, os.path.join(directory, COMPARISON_PARETO_PNG))
    if pareto:
        plots["pareto"] = pareto
    summaries = [_summary(run, best_row(run.table, run.metric, run.mode)) for run in runs]
    path = os.path.join(directory, COMPARISON_HTML)
    _write_text(path, _comparison_html(runs, summaries, plots, title or f"{len(runs)} runs compared"))
    return {"report": path, "plots": plots, "runs": summaries}


def format_summary(summary: dict[str, object], metric: str) -> str:
    """Human-readable lines for the end of ``raynas search`` / ``raynas analyze``."""
    lines = [f"trials: {summary['trials']} ({summary['with_metric']} reported {metric})"]
    if summary.get("stopped"):
        lines.append(f"  {summary['full_fidelity']} at full fidelity, {summary['stopped']} stopped before it "
                     "(by the scheduler; not counted for the best)")
    best = summary.get("best")
    if isinstance(best, dict):
        lines.append(f"best {metric}: {_num(best.get(metric))}  (trial {summary.get('best_trial')}, "
                     f"{best.get('trial_id')})")
        if summary.get("best_architecture"):
            lines.append(f"best architecture: {summary['best_architecture']}")
        for line in summary.get("best_drawing") or []:
            lines.append(f"    {line}")
        for key, value in best.items():
            if key not in (metric, "trial_id", "arch_str", f"config/{CONFIG_KEY}"):
                lines.append(f"  {key}: {_num(value)}")
        randoms = summary.get("random_cells")
        if isinstance(randoms, dict) and summary.get("above_random_median") is not None:
            which = (f"the first {randoms['design']} trials, drawn at random" if randoms["design"] is not None
                     else "all trials (random search)")
            stopped = (f"; {randoms['stopped']} more were stopped early as weaker" if randoms["stopped"] else "")
            lines.append(f"  {summary['above_random_median']:+.2f} against the median random cell "
                         f"({_num(randoms['median'])}: the median of the {randoms['full']} of {which}, that "
                         f"trained to the end{stopped})")
    else:
        lines.append(f"no trial reported {metric}")
    if summary.get("optimum") is not None:
        lines.append(f"table optimum: {summary['optimum']}  (regret {summary.get('regret')})")
    lines.append(f"results table: {summary['results_csv']}")
    lines.append(f"best-so-far plot: {summary['plot']}")
    if summary.get("report"):
        # beside results.csv: right also where the caller copied the files elsewhere (remote storage)
        where = str(summary["results_csv"])
        if "://" in where:
            lines.append(f"report: {where.rsplit('/', 1)[0]}/{REPORT_HTML}")
        else:
            lines.append(f"report: {os.path.join(os.path.dirname(where), REPORT_HTML)}")
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def _max_iteration(spec: Mapping[str, Any]) -> int | None:
    """The full budget in ``training_iteration`` of a run, where its settings say it."""
    if spec.get("benchmark"):
        fidelities = spec.get("fidelities")
        if isinstance(fidelities, str):
            return len([f for f in fidelities.split(",") if f.strip()]) + 1
        if isinstance(fidelities, (list, tuple)):
            return len(fidelities) + 1
        return 1
    if spec.get("kind") == "compress" and spec.get("epochs"):
        return int(spec["epochs"])
    return None  # real training: recipe defaults vary; the largest iteration reached is the budget


_BENCHMARKS: dict[tuple, Any] = {}


def _load_benchmark(spec: Mapping[str, Any], metric: str, mode: Mode) -> tuple[Any, str | None]:
    """The run's tabular benchmark (cached), or ``(None, why not)``."""
    from raynas.benchmarks.tabular import BenchmarkError, TabularBenchmark

    path = str(spec["benchmark"])
    if not os.path.isfile(path):
        return None, f"benchmark table {path} not found: no regret against its optimum"
    columns = spec.get("position_columns")
    key = (path, os.path.getmtime(path), spec.get("objective") or metric, spec.get("space", "nb201"), mode,
           spec.get("test_metric"), spec.get("fidelities"), spec.get("objective_epochs"),
           tuple(columns) if columns else None)
    if key not in _BENCHMARKS:
        try:
            _BENCHMARKS.clear()  # one table at a time is plenty
            _BENCHMARKS[key] = TabularBenchmark.from_csv(
                path, spec.get("objective") or metric, space=spec.get("space", "nb201"), mode=mode,
                test_metric=spec.get("test_metric"), fidelities=spec.get("fidelities"),
                objective_epochs=spec.get("objective_epochs"), position_columns=columns)
        except (BenchmarkError, ValueError, OSError) as exc:
            return None, f"benchmark table {path} could not be read ({exc}): no regret against its optimum"
    return _BENCHMARKS[key], None


def _space_for(spec: Mapping[str, Any], table: pd.DataFrame) -> tuple[Any, str | None]:
    """The space of the run's architectures (to describe and draw them), or ``(None, why not)``."""
    from raynas.registry import SPACES, make_space

    if spec.get("kind") == "compress":
        try:
            return _compression_space(spec), None
        except Exception as exc:  # no teacher.pt, torch missing, ...: strings from the results instead
            return None, f"the compression space could not be rebuilt ({exc}): no drawing of the best student"
    name = spec.get("space")
    if not name and f"config/{CONFIG_KEY}" in table.columns:
        first = table[f"config/{CONFIG_KEY}"].dropna()
        if len(first):
            try:
                name = Architecture.from_json(first.iloc[0]).space
            except ValueError:
                name = None
    if name in SPACES:
        return make_space(name), None
    return None, (f"space {name!r} is not a registered space: no drawing" if name else None)


def _compression_space(spec: Mapping[str, Any]) -> Any:
    """A compression run's space, from the teacher it saved (``teacher.pt``)."""
    import io

    import torch

    from raynas.teachers import CIFAR_SHAPE, DIGITS_SHAPE, teacher_module
    from raynas.spaces.compression import CompressionSpace

    directory = os.path.join(str(spec["storage"]), str(spec["name"]))
    with open(os.path.join(directory, "teacher.pt"), "rb") as handle:
        state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
    dataset = spec.get("dataset", "digits")
    model = teacher_module(spec.get("teacher", "digits-cnn"), dataset, stem=spec.get("teacher_stem", "cifar"),
                           seed=int(spec.get("seed", 0)))
    model.load_state_dict(state)
    return CompressionSpace(model.eval(), DIGITS_SHAPE if dataset == "digits" else CIFAR_SHAPE)


def _arch_of(row: pd.Series) -> Architecture | None:
    text = row.get(f"config/{CONFIG_KEY}") if hasattr(row, "get") else None
    if not isinstance(text, str):
        return None
    try:
        return Architecture.from_json(text)
    except ValueError:
        return None


def _draw_best(run: Run, best: pd.Series | None, path: str) -> str | None:
    arch = _arch_of(best) if best is not None else None
    if arch is None or run.space is None:
        _remove(path)
        return None
    value = best[run.metric]
    text = run.architecture_text(best)
    title = f"best architecture ({run.metric} {value:g}, trial {best['trial']})\n" + "\n".join(
        textwrap.wrap(text, 110))
    try:
        return plot_architecture(run.space, arch, path, title=title)
    except Exception as exc:  # a space without a drawable graph: the report still has the string
        run.notes.append(f"the best architecture could not be drawn: {exc}")
        _remove(path)
        return None


def random_design_size(run: Run) -> int | None:
    """How many of the run's first trials its searcher drew at random (``None``: every trial; ``0``: none).

    Asked of the Ray-free method the run's settings name
    (:attr:`~raynas.search.base.ArchitectureSearch.num_random_initial`: the
    initial design of a Bayesian-optimisation method, regularized
    evolution's first population); ``0`` when the settings or space are unknown.
    """
    from raynas.methods import UnknownMethodError, make_method

    name = run.spec.get("searcher")
    if not name or run.space is None:
        return 0
    try:
        method = make_method(str(name), run.space, mode=run.mode, **dict(run.spec.get("searcher_kwargs") or {}))
    except (UnknownMethodError, TypeError, ValueError) as exc:
        logger.info("no random-cell comparison for searcher %r: %s", name, exc)
        return 0
    return method.num_random_initial


def random_cells(run: Run) -> dict[str, Any] | None:
    """The trials the searcher drew at random, as a yardstick for what the search found.

    ``{"design": n, "trials": ..., "full": ..., "stopped": ..., "median": ...}``:
    the median is of the random cells that trained to full fidelity; those a
    scheduler stopped early were weaker at their rung, so this median, if
    anything, overstates the typical random cell (and understates how far the
    best is above it). ``None`` when the run had no random trials to compare with.
    """
    size = random_design_size(run)
    table = run.table
    if size == 0 or not len(table):
        return None
    first = table.index[table["trial"] <= size] if size is not None else table.index
    full = run.values.loc[first].dropna()
    return {
        "design": int(size) if size is not None else None,
        "trials": int(len(first)),
        "full": int(len(full)),
        "stopped": int(run.stopped.loc[first].sum()),
        "median": float(full.median()) if len(full) else None,
    }


def _summary(run: Run, best: pd.Series | None) -> dict[str, Any]:
    table, metric = run.table, run.metric
    values = pd.to_numeric(table.get(metric), errors="coerce") if len(table) else pd.Series(dtype=float)
    summary: dict[str, Any] = {
        "label": run.label,
        "trials": int(len(table)),
        "with_metric": int(values.notna().sum()) if len(table) else 0,
        "full_fidelity": int(run.values.notna().sum()) if len(table) else 0,
        "stopped": int(run.stopped.sum()) if len(table) else 0,
        "best": None,
        "optimum": run.optimum,
        "regret": None,
        "notes": list(run.notes),
    }
    if best is not None:
        summary["best"] = {
            k: _plain(v)
            for k, v in best.items()
            if k in ("trial_id", metric, "arch_str", "training_iteration", "params", f"config/{CONFIG_KEY}")
            or (run.test_metric and k == run.test_metric)
            or str(k).startswith("cifar") or str(k).endswith("acc")
        }
        summary["best_trial"] = int(best["trial"])
        summary["best_architecture"] = run.architecture_text(best)
        arch = _arch_of(best)
        if arch is not None and run.space is not None:
            try:
                summary["best_drawing"] = run.space.text_drawing(arch)
            except (InvalidArchitectureError, ValueError, KeyError, IndexError):
                pass  # an architecture of another space: the string above stands alone
        sign = 1.0 if run.mode == "max" else -1.0
        summary["best_full_fidelity"] = bool(best.get("full_fidelity", True))
        randoms = random_cells(run)
        if randoms is not None:
            summary["random_cells"] = randoms
            if randoms["median"] is not None and summary["best_full_fidelity"]:
                summary["above_random_median"] = sign * (float(best[metric]) - randoms["median"])
        if run.optimum is not None:
            summary["regret"] = max(0.0, sign * (run.optimum - float(best[metric])))
    return summary


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _img(path: str, alt: str) -> str:
    with open(path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _num(value: Any) -> str:
    """A value for the console: numbers to 4 significant digits (integers whole)."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and not float(value).is_integer():
        return f"{value:.4g}"
    return str(value)


def _fmt(value: Any, digits: int = 6) -> str:
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        return "–" if math.isnan(value) else f"{value:.{digits}g}"
    return html.escape(str(value))


def _breakable(text: str) -> str:
    """HTML of an architecture string that may wrap after its separators."""
    escaped = html.escape(text)
    for sep in ("+", "&gt;", ","):
        escaped = escaped.replace(sep, sep + "<wbr>")
    return f"<code>{escaped}</code>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.stopped td{color:#888}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:.5rem 0}
dl.kv dt{font-weight:600;color:#444}dl.kv dd{margin:0}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.85rem;word-break:normal}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4rem .8rem;margin:.5rem 0}
.wide{overflow-x:auto}td.arch{min-width:22em}td.nowrap{white-space:nowrap}
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
            f"<p class=\"sub\">written by raynas analyze, {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>"
            f"\n</body></html>\n")


def _header(name: str) -> str:
    """A column name for a table header, allowed to wrap after its underscores."""
    return html.escape(name).replace("_", "_<wbr>")


def _figure(path: str, alt: str, caption: str) -> str:
    return f"<figure>{_img(path, alt)}<figcaption>{caption}</figcaption></figure>"


def _report_html(run: Run, summary: Mapping[str, Any], plots: Mapping[str, str], columns: Sequence[str],
                 title: str) -> str:
    spec, metric = run.spec, run.metric
    kv: list[tuple[str, str]] = []
    if run.directory:
        kv.append(("experiment", f"<code>{html.escape(run.directory)}</code>"))
    if spec.get("searcher"):
        kv.append(("searcher", html.escape(str(spec["searcher"]))))
    if spec.get("benchmark"):
        kv.append(("table", f"<code>{html.escape(str(spec['benchmark']))}</code>"))
    if spec.get("space"):
        kv.append(("space", html.escape(str(spec["space"]))))
    kv.append(("objective", f"{html.escape(metric)} ({'maximised' if run.mode == 'max' else 'minimised'})"))
    if run.test_metric:
        kv.append(("test metric", html.escape(run.test_metric)))
    if spec.get("scheduler"):
        kv.append(("scheduler", html.escape(str(spec["scheduler"]))))
    kv.append(("trials", f"{summary['trials']}: {summary['full_fidelity']} at full fidelity, "
                         f"{summary['stopped']} stopped before full fidelity (by the scheduler), "
                         f"{summary['trials'] - summary['with_metric']} without a result"))
    best = summary.get("best")
    if isinstance(best, dict):
        kv.append((f"best {html.escape(metric)}",
                   f"<b>{_fmt(best.get(metric))}</b> (trial {summary['best_trial']} of {summary['trials']}"
                   + ("" if summary.get("best_full_fidelity", True) else ", <i>lower fidelity only</i>") + ")"))
        kv.append(("best architecture", _breakable(str(summary["best_architecture"]))))
        if summary.get("best_drawing"):
            kv.append(("the cell", "<br>".join(f"<code>{html.escape(line)}</code>"
                                               for line in summary["best_drawing"])))
        randoms = summary.get("random_cells")
        if isinstance(randoms, dict) and summary.get("above_random_median") is not None:
            kv.append(("against random cells",
                       f"{summary['above_random_median']:+.3g} against the median random cell "
                       f"({_fmt(randoms['median'])}, of the {randoms['full']} random trials that trained to "
                       f"the end; {randoms['stopped']} more were stopped early as weaker)"))
        if run.test_metric and run.test_metric in best:
            kv.append((f"its {html.escape(run.test_metric)}", _fmt(best[run.test_metric])))
        row = run.table.loc[run.table["trial"] == summary["best_trial"]].iloc[0]
        for column in columns:
            kv.append((f"its {html.escape(column)}", _fmt(row[column])))
    else:
        kv.append((f"best {html.escape(metric)}", "no trial reported it"))
    if run.optimum is not None:
        kv.append(("table optimum", f"{_fmt(run.optimum)} (regret of the best: {_fmt(summary.get('regret'))})"))
    if "time_total_s" in run.table.columns and len(run.table):
        total = pd.to_numeric(run.table["time_total_s"], errors="coerce").sum()
        kv.append(("trial time, summed", f"{total:.1f} s"))
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"sub\">raynas search report: {summary['trials']} trials of "
             f"{html.escape(str(spec.get('searcher', 'a searcher')))}</p>"]
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in summary.get("notes", [])]
    parts.append("<h2>Summary</h2><dl class=\"kv\">"
                 + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in kv) + "</dl>")
    caption = ("Best full-fidelity value so far over the trials (in the order the searcher suggested them)"
               + ("; regret against the table's optimum on a log scale" if run.optimum is not None else "")
               + ("; test metric of the incumbent" if run.incumbent_test() is not None else "")
               + ". Grey ticks along the bottom: trials stopped before full fidelity, by the scheduler or an "
                 "interruption (their lower-fidelity "
                 "values are not counted).")
    parts.append("<h2>Progress</h2>" + _figure(plots["progress"], "best so far", caption))
    if "pareto" in plots:
        parts.append("<h2>Value against size</h2>" + _figure(
            plots["pareto"], "Pareto front", f"{html.escape(metric)} of full-fidelity trials against "
            + ", ".join(html.escape(c) for c in columns) + "; orange: the Pareto front (nothing smaller is as "
            "good), red star: the best."))
    if "architecture" in plots:
        parts.append("<h2>Best architecture</h2>" + _figure(
            plots["architecture"], "best architecture", "The best architecture as a graph; each box is an "
            "operation, arrows are the data flow from input to output."))
    parts.append("<h2>Top 10 architectures</h2>" + _top_table(run, columns))
    return _page(title, "\n".join(parts))


def _top_table(run: Run, columns: Sequence[str], limit: int = 10) -> str:
    """The best trials: full-fidelity ones first (by value), then stopped ones, at most ``limit``."""
    table, metric = run.table, run.metric
    values = pd.to_numeric(table[metric], errors="coerce") if len(table) else pd.Series(dtype=float)
    ranked = table.assign(_value=values, _full=table["full_fidelity"].astype(bool) if len(table) else [])
    ranked = ranked[ranked["_value"].notna()].sort_values(
        ["_full", "_value"], ascending=[False, run.mode == "min"], kind="stable").head(limit)
    if ranked.empty:
        return "<p>No trial reported a value.</p>"
    head = ["#", "trial", "architecture", _header(metric), "fidelity"]
    if run.test_metric and run.test_metric in table.columns:
        head.append(_header(run.test_metric))
    head += [_header(c) for c in columns]
    rows = []
    top_iteration = pd.to_numeric(table.get("training_iteration"), errors="coerce").max() \
        if "training_iteration" in table.columns else None
    for rank, (_, row) in enumerate(ranked.iterrows(), start=1):
        if "epochs" in row and pd.notna(row["epochs"]):
            fidelity = f"{_fmt(row['epochs'])} epochs"
        elif "training_iteration" in row and pd.notna(row["training_iteration"]):
            fidelity = f"{int(row['training_iteration'])} of {int(top_iteration)} iterations"
        else:
            fidelity = ""
        fidelity += (" (full)" if row["_full"] else " (stopped early)") if fidelity else ("full" if row["_full"] else
                                                                                       "stopped early")
        if "fidelity" in row and isinstance(row["fidelity"], str):  # the table column the value came from
            fidelity = f'<span title="{html.escape(row["fidelity"])}">{fidelity}</span>'
        cells = [str(rank), str(int(row["trial"])),
                 f'<td class="arch">{_breakable(run.architecture_text(row))}</td>',
                 f'<td class="num">{_fmt(row["_value"])}</td>', f'<td class="nowrap">{fidelity}</td>']
        if run.test_metric and run.test_metric in table.columns:
            cells.append(f'<td class="num">{_fmt(row[run.test_metric])}</td>')
        cells += [f'<td class="num">{_fmt(row[c])}</td>' for c in columns]
        rendered = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
        row_class = "" if row["_full"] else ' class="stopped"'
        rows.append(f"<tr{row_class}>{rendered}</tr>")
    return ('<div class="wide"><table><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def _comparison_html(runs: Sequence[Run], summaries: Sequence[Mapping[str, Any]], plots: Mapping[str, str],
                     title: str) -> str:
    any_optimum = any(run.optimum is not None for run in runs)
    any_test = any(run.test_metric for run in runs)
    head = ["run", "searcher", "trials", "full fidelity", "stopped", "best", "at trial"]
    head += ["regret"] if any_optimum else []
    head += ["test metric of the best"] if any_test else []
    head += ["best architecture"]
    rows = []
    for run, summary in zip(runs, summaries):
        best = summary.get("best") or {}
        cells = [html.escape(run.label) + (f"<br><code>{html.escape(run.directory)}</code>" if run.directory else ""),
                 html.escape(str(run.spec.get("searcher", "–"))),
                 f'<td class="num">{summary["trials"]}</td>', f'<td class="num">{summary["full_fidelity"]}</td>',
                 f'<td class="num">{summary["stopped"]}</td>', f'<td class="num">{_fmt(best.get(run.metric))}</td>',
                 f'<td class="num">{summary.get("best_trial", "–")}</td>']
        if any_optimum:
            cells.append(f'<td class="num">{_fmt(summary.get("regret"))}</td>')
        if any_test:
            cells.append(f'<td class="num">{_fmt(best.get(run.test_metric)) if run.test_metric else "–"}</td>')
        cells.append(f'<td class="arch">{_breakable(str(summary.get("best_architecture", "–")))}</td>')
        rows.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    parts = [f"<h1>{html.escape(title)}</h1>",
             '<h2>Runs</h2><div class="wide"><table><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
             + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>",
             "<h2>Progress</h2>" + _figure(plots["progress"], "runs compared",
                                           "Each run's best full-fidelity value (or regret) over its trials; "
                                           "ticks: trials stopped early.")]
    if "pareto" in plots:
        parts.append("<h2>Value against size</h2>" + _figure(plots["pareto"], "Pareto fronts compared",
                                                             "Each run's trials and Pareto front."))
    for run, summary in zip(runs, summaries):
        parts += [f'<p class="note">{html.escape(run.label)}: {html.escape(n)}</p>' for n in summary["notes"]]
    return _page(title, "\n".join(parts))
