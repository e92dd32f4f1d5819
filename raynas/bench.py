"""Sample-efficiency benchmark: drive searchers in-process on a tabular benchmark.

Each searcher is the Ray-free search method of that name
(:mod:`raynas.methods`), driven through ``suggest`` / ``complete``: the calls
its Ray Tune searcher makes for Tune, so the numbers are the Tune searcher's,
but neither Ray nor a Ray runtime is imported and thousands of queries take
seconds. With ``concurrency = N`` the driver keeps N suggestions pending and
completes them in a seeded random order, as asynchronous Ray workers would.

A *query* is one distinct architecture evaluated; *queries to optimum*
counts queries until an architecture with the table's optimal objective
value is evaluated. A run stops at the optimum once it has also passed the
last reporting point (``test_at``), since nothing after that is measured.
``test_at`` holds only the reporting points within ``max_queries``.

Each seed's *incumbent trace* (``traces`` in the JSON, one list per seed in
seed order) lists ``[queries, best objective so far, test metric of that
incumbent]`` at every improvement (the test metric ``null`` without one), so
regret curves (``optimum - best so far``) can be drawn at any budget: between
points, and after the last one up to ``max_queries``, the best stays where it
is. :func:`plot_bench` (``raynas bench --plot FILE.png``) draws their median
and quartiles per searcher.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from raynas.architecture import Architecture
from raynas.benchmarks.tabular import TabularBenchmark
from raynas.methods import check_methods, make_method
from raynas.pareto import Constraint
from raynas.search.base import ArchitectureSearch

#: Query counts at which the test metric of the best-by-objective architecture is reported.
TEST_AT: tuple[int, ...] = (50, 100, 150)


@dataclass
class RunRecord:
    """What one searcher did on one seed."""

    queries_to_optimum: int | None
    test_at: dict[int, float]
    suggest_seconds: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    queries: int = 0
    #: ``[queries, best objective so far, test metric of that incumbent (NaN without one)]`` at every improvement
    trace: list[list[float]] = field(default_factory=list)


def run_one(
    bench: TabularBenchmark,
    searcher_name: str,
    seed: int,
    max_queries: int,
    concurrency: int = 1,
    searcher_kwargs: dict | None = None,
    constraints: Sequence[Constraint] = (),
) -> RunRecord:
    """One search of ``searcher_name`` with ``seed`` on ``bench`` (see the module docstring).

    ``searcher_kwargs`` are options of the method (:func:`raynas.methods.make_method`).
    With ``constraints`` the searcher never suggests an architecture outside them and the
    optimum counted is the best one within them (:func:`feasible_optimum`).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    search = make_method(searcher_name, bench.space, mode=bench.mode, seed=seed, constraints=constraints,
                         **(searcher_kwargs or {}))
    optimum_value = feasible_optimum(bench, constraints)[1]
    record = RunRecord(queries_to_optimum=None, test_at={})
    best_value, best_test = float("nan"), float("nan")
    last_checkpoint = max(TEST_AT)
    queries = 0
    cpu_start = time.process_time()
    for arch, value in distinct_results(search, bench, f"{searcher_name}_{seed}", seed, max_queries, concurrency,
                                        record.suggest_seconds):
        queries += 1
        if bench.is_better(value, best_value):
            best_value = value
            best_test = bench.value(arch, bench.test_metric) if bench.test_metric else float("nan")
            record.trace.append([queries, best_value, best_test])
        if queries in TEST_AT:
            record.test_at[queries] = best_test
        if record.queries_to_optimum is None and value == optimum_value:
            record.queries_to_optimum = queries
        if record.queries_to_optimum is not None and queries >= last_checkpoint:
            break
    record.cpu_seconds = time.process_time() - cpu_start
    record.queries = queries
    for k in TEST_AT:  # a run that ended early keeps its final best
        record.test_at.setdefault(k, best_test)
    return record


def distinct_results(search: ArchitectureSearch, bench: TabularBenchmark, label: str, seed: int, max_queries: int,
                     concurrency: int, suggest_seconds: list[float], column: str | None = None,
                     ) -> Iterator[tuple[Architecture, float]]:
    """Simulated asynchronous workers: ``(arch, value)`` of each *new* architecture as its result arrives.

    Up to ``concurrency`` suggestions are in flight; results come back in a random order seeded by
    ``seed`` (independent of the searcher), each answered from ``bench``'s ``column`` (default: the
    objective) at full fidelity, as a trial reports it. Repeats are told to the searcher but not
    yielded; at most ``max_queries`` distinct architectures. Each ``suggest``'s seconds are appended
    to ``suggest_seconds``.
    """
    order_rng = np.random.default_rng([seed, 7919])
    pending: list[tuple[str, Architecture]] = []
    evaluated: set[Architecture] = set()
    exhausted, number = False, 0
    while True:
        while not exhausted and len(pending) < concurrency and len(evaluated) + len(pending) < max_queries:
            trial_id = f"{label}_{number}"
            number += 1
            start = time.perf_counter()
            arch = search.suggest(trial_id)
            suggest_seconds.append(time.perf_counter() - start)
            if arch is None:  # a finite space is exhausted
                exhausted = True
                break
            pending.append((trial_id, arch))
        if not pending:
            return
        trial_id, arch = pending.pop(int(order_rng.integers(len(pending))))
        value = bench.value(arch, column)
        search.complete(trial_id, value, fidelity=1)
        if arch not in evaluated:
            evaluated.add(arch)
            yield arch, value


def _queries_summary(found: Sequence[int | None], max_queries: int) -> dict:
    """Per-seed queries to the optimum and their mean, median and found fraction (misses count as ``max_queries``)."""
    capped = [q if q is not None else max_queries for q in found]
    return {
        "queries_to_optimum": list(found),
        "mean_queries_to_optimum": float(np.mean(capped)),
        "median_queries_to_optimum": float(np.median(capped)),
        "found_fraction": float(np.mean([q is not None for q in found])),
    }


def reported_budgets(limit: float, budgets: Sequence[int] = TEST_AT) -> list[int]:
    """The reporting points (``budgets``: :data:`TEST_AT` queries, or :mod:`raynas.cost`'s epochs) a run
    limited to ``limit`` reports: none above it, ascending."""
    return sorted(int(b) for b in budgets if b <= limit)


def summarise(records: Sequence[RunRecord], max_queries: int) -> dict:
    """The per-searcher block of the bench JSON."""
    return {
        **_queries_summary([r.queries_to_optimum for r in records], max_queries),
        "test_at": {str(k): _nanmean([r.test_at[k] for r in records]) for k in reported_budgets(max_queries)},
        "traces": [[[int(q), float(best), _finite_or_none(test)] for q, best, test in r.trace] for r in records],
        **searcher_time(records),
    }


def searcher_time(records: Sequence[Any]) -> dict[str, Any]:
    """``suggest_seconds`` (p50, p95 of one call over all seeds) and ``searcher_cpu_seconds`` (mean per seed)
    of records with ``suggest_seconds`` and ``cpu_seconds`` (this module's and :mod:`raynas.cost`'s)."""
    suggest = np.concatenate([r.suggest_seconds for r in records]) if records else np.array([])
    return {
        "suggest_seconds": {
            "p50": float(np.percentile(suggest, 50)) if suggest.size else None,
            "p95": float(np.percentile(suggest, 95)) if suggest.size else None,
        },
        "searcher_cpu_seconds": float(np.mean([r.cpu_seconds for r in records])) if records else None,
    }


def check_run(searchers: Sequence[str], searcher_options: Mapping[str, Mapping[str, Any]] | None,
              seeds: int, first_seed: int) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The searcher names and their options, checked before any search runs (a benchmark's or a cost run's)."""
    searchers = check_methods(searchers)
    options = {name: dict(opts) for name, opts in (searcher_options or {}).items()}
    stray = sorted(set(options) - set(searchers))
    if stray:
        raise ValueError(f"searcher_options for {stray}, which are not among the searchers {searchers}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if first_seed < 0:
        raise ValueError(f"first_seed must be >= 0, got {first_seed}")
    return searchers, options


def report_header(bench: TabularBenchmark, constraints: Sequence[Constraint] = ()) -> dict[str, Any]:
    """What every benchmark report says about its table: source, objective, test metric, mode and optimum
    (the best architecture within ``constraints``, which the report lists)."""
    optimum_arch, optimum_value = feasible_optimum(bench, constraints)
    header = {
        "table": bench.source,
        "objective": bench.objective,
        "test_metric": bench.test_metric,
        "mode": bench.mode,
        "optimum": optimum_value,
        "optimum_arch": bench.space.describe(optimum_arch),
    }
    if constraints:
        header["constraints"] = [{"column": c.name, "upper": c.upper, "lower": c.lower} for c in constraints]
    return header


def table_constraints(bench: TabularBenchmark, specs: Sequence[tuple[str, str, float]]) -> list[Constraint]:
    """``(column, "<=" or ">=", bound)`` specs as constraints read from ``bench``'s columns."""
    out = []
    for column, op, bound in specs:
        bench.value(bench.architectures[0], column)  # a missing column fails here, naming the table's columns
        limits = {"upper": bound} if op == "<=" else {"lower": bound}
        out.append(Constraint(column, lambda arch, c=column: bench.value(arch, c), **limits))
    return out


def feasible_optimum(bench: TabularBenchmark, constraints: Sequence[Constraint] = ()) -> tuple[Architecture, float]:
    """The best architecture of ``bench`` (by its objective and mode) that satisfies every constraint."""
    if not constraints:
        return bench.optimum
    feasible = [a for a in bench.architectures if all(c.satisfied(a) for c in constraints)]
    if not feasible:
        raise ValueError(f"no architecture of {bench.source} satisfies the constraints "
                         f"{[(c.name, c.lower, c.upper) for c in constraints]}")
    best = feasible[0]
    for arch in feasible[1:]:
        if bench.is_better(bench.value(arch), bench.value(best)):
            best = arch
    return best, bench.value(best)


def run_bench(
    bench: TabularBenchmark,
    searchers: Sequence[str],
    seeds: int,
    max_queries: int,
    concurrency: int = 1,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    first_seed: int = 0,
    searcher_options: Mapping[str, Mapping[str, Any]] | None = None,
    constraints: Sequence[tuple[str, str, float]] = (),
) -> dict:
    """Benchmark ``searchers`` on ``bench`` for seeds ``first_seed .. first_seed + seeds - 1``.

    Optionally writes JSON to ``out``. Disjoint ``first_seed`` ranges split one
    measurement over several processes or machines; the per-seed lists in
    each JSON (in seed order) concatenate to the whole run.

    ``searcher_cpu_seconds`` is the mean per seed of the process CPU time of
    one run (suggestions, result handling and the driver's table look-ups).

    ``searcher_options`` maps a searcher name to options of its method
    (:func:`raynas.methods.make_method`, e.g. ``{"bonas": {"pool_size": 100}}``);
    the report records them under ``searcher_options``. Unknown names fail
    before any search runs. ``constraints`` (``(column, "<=" or ">=", bound)``)
    bound columns known before training; the optimum is then the best cell within them.
    """
    if max_queries < 1:
        raise ValueError(f"max_queries must be >= 1, got {max_queries}")
    searchers, options = check_run(searchers, searcher_options, seeds, first_seed)
    bounds = table_constraints(bench, constraints)
    report = {
        **report_header(bench, bounds),
        "seeds": seeds,
        "first_seed": first_seed,
        "max_queries": max_queries,
        "concurrency": concurrency,
        "searcher_options": {name: _jsonable(opts) for name, opts in options.items() if opts},
        "searchers": {},
    }
    for name in searchers:
        records = []
        for seed in range(first_seed, first_seed + seeds):
            records.append(run_one(bench, name, seed, max_queries, concurrency, options.get(name), bounds))
            if progress:
                r = records[-1]
                print(f"[bench] {name} seed {seed}: queries_to_optimum={r.queries_to_optimum} "
                      f"({r.cpu_seconds:.1f} s)", flush=True)
        report["searchers"][name] = summarise(records, max_queries)
        if out is not None:  # write after each searcher so finished work is never lost
            write_json(report, out)
    return report


#: Report fields that must agree for reports to be joined.
_JOIN_KEYS = ("table", "objective", "test_metric", "mode", "optimum", "max_queries", "concurrency")


def join_reports(reports: Sequence[dict]) -> dict:
    """One report from reports of the same measurement over consecutive seed ranges.

    The reports (``run_bench`` results or their JSON, ``first_seed`` set so
    that their ranges tile one range) must agree on the table, objective,
    metric, mode, budget, concurrency, searchers and searcher options. Per-seed lists are
    concatenated in seed order and the statistics recomputed from them; test
    accuracies and CPU seconds are seed-weighted means of the parts.
    Percentiles do not join: ``suggest_seconds`` holds the largest of the
    parts' percentiles, an indication only.
    """
    if not reports:
        raise ValueError("join_reports needs at least one report")
    parts = sorted(reports, key=lambda r: r.get("first_seed", 0))
    head = parts[0]
    def signature(report: dict) -> dict:
        return {**{key: report[key] for key in _JOIN_KEYS}, "searchers": sorted(report["searchers"]),
                "searcher_options": report.get("searcher_options", {})}

    expected = signature(head)
    for part in parts[1:]:
        for key, value in signature(part).items():
            if value != expected[key]:
                raise ValueError(f"cannot join reports that differ in {key!r}: {expected[key]!r} vs {value!r}")
    next_seed = head.get("first_seed", 0)
    for part in parts:
        start = part.get("first_seed", 0)
        if start != next_seed:
            raise ValueError(
                f"seed ranges must tile one range: expected a report starting at seed {next_seed}, "
                f"got one starting at {start}"
            )
        next_seed = start + part["seeds"]
    joined = {key: head[key] for key in head if key != "searchers"}
    joined["seeds"] = next_seed - head.get("first_seed", 0)
    joined["first_seed"] = head.get("first_seed", 0)
    joined["searchers"] = {}
    for name in head["searchers"]:
        blocks = [part["searchers"][name] for part in parts]
        weights = [part["seeds"] for part in parts]
        found = [q for block in blocks for q in block["queries_to_optimum"]]
        test_at = {}
        for k in blocks[0]["test_at"]:
            pairs = [(b["test_at"][k], w) for b, w in zip(blocks, weights) if b["test_at"].get(k) is not None]
            test_at[k] = sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None
        suggest = {}
        for q in ("p50", "p95"):
            values = [b["suggest_seconds"][q] for b in blocks if b["suggest_seconds"].get(q) is not None]
            suggest[q] = max(values) if values else None
        joined["searchers"][name] = {
            **_queries_summary(found, head["max_queries"]),
            "test_at": test_at,
            "suggest_seconds": suggest,
            "searcher_cpu_seconds": sum(b["searcher_cpu_seconds"] * w for b, w in zip(blocks, weights)) / sum(weights),
        }
        if all("traces" in block for block in blocks):  # parts written before traces existed have none
            joined["searchers"][name]["traces"] = [trace for block in blocks for trace in block["traces"]]
    return joined


def summary_line(name: str, block: dict) -> str:
    """One searcher's block of a report as one line of text."""
    p95 = block["suggest_seconds"].get("p95")
    test_at = block["test_at"]
    # test@100 as always; a budget below 100 reports its largest reporting point instead
    at = "100" if "100" in test_at or not test_at else max(test_at, key=int)
    return (f"{name}: mean queries to optimum {block['mean_queries_to_optimum']:.2f} "
            f"(median {block['median_queries_to_optimum']:.1f}, found {block['found_fraction']:.0%}), "
            f"test@{at} {test_at.get(at)}, suggest p95 "
            + (f"{p95:.2e} s" if p95 is not None else "n/a"))


def write_json(report: dict, path: str | os.PathLike) -> None:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(report, handle, indent=2)
    os.replace(tmp, path)


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` for the JSON report: values JSON cannot hold are replaced by their ``repr``."""
    out = {}
    for key, value in options.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        out[key] = value
    return out


def _step_lookup(trace: Sequence[Sequence[Any]], column: int, queries: np.ndarray) -> np.ndarray:
    """Entry ``column`` of the last trace point at or before each of ``queries`` (NaN before the first)."""
    out = np.full(len(queries), np.nan)
    if not trace:
        return out
    at = np.array([point[0] for point in trace], dtype=float)
    values = np.array([np.nan if point[column] is None else point[column] for point in trace], dtype=float)
    index = np.searchsorted(at, queries, side="right") - 1
    seen = index >= 0
    out[seen] = values[index[seen]]
    return out


def regret_curves(report: Mapping[str, Any], name: str, queries: Sequence[int] | np.ndarray) -> np.ndarray:
    """Regret (``optimum - best so far``; ``best - optimum`` when minimising) of every seed of searcher ``name``.

    One row per seed (in seed order), one column per entry of ``queries``; NaN
    before a seed's first query. Read off the report's ``traces``: the best
    carries forward between improvements and after the last one.
    """
    block = report["searchers"][name]
    if "traces" not in block:
        raise ValueError(f"the report's {name!r} block has no incumbent traces (written by an older raynas bench)")
    sign = 1.0 if report.get("mode", "max") == "max" else -1.0
    queries = np.asarray(queries, dtype=float)
    best = np.array([_step_lookup(trace, 1, queries) for trace in block["traces"]]).reshape(-1, len(queries))
    return sign * (float(report["optimum"]) - best)


def incumbent_test_curves(report: Mapping[str, Any], name: str,
                          queries: Sequence[int] | np.ndarray) -> np.ndarray:
    """Test metric of each seed's incumbent after ``queries`` queries (rows: seeds); NaN where unknown."""
    traces = report["searchers"][name].get("traces", [])
    queries = np.asarray(queries, dtype=float)
    return np.array([_step_lookup(trace, 2, queries) for trace in traces]).reshape(-1, len(queries))


def _quartiles(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """25th, 50th and 75th percentiles over seeds (rows), ignoring NaN; NaN where no seed has a value."""
    out = []
    for p in (25, 50, 75):
        column = np.full(curves.shape[1], np.nan)
        seen = np.isfinite(curves).any(axis=0) if curves.size else np.zeros(curves.shape[1], bool)
        if seen.any():
            column[seen] = np.nanpercentile(curves[:, seen], p, axis=0)
        out.append(column)
    return out[0], out[1], out[2]


def plot_bench(report: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Median and quartile regret curves of every searcher of a bench report (log y-axis); returns the path.

    Regret is ``optimum - best so far`` (``best - optimum`` when minimising),
    from the report's incumbent ``traces``. Regret 0 (the optimum found) has
    no place on a log axis: it is drawn at a dotted floor line marked
    "optimum found". With a test metric, a second panel shows the median and
    quartiles of the incumbent's test metric. The x-axis is logarithmic from
    1,000 queries on.
    """
    max_queries = int(report["max_queries"])
    log_x = max_queries >= 1000
    if log_x:
        queries = np.unique(np.geomspace(1, max_queries, 400).round().astype(int))
    else:
        queries = np.arange(1, max_queries + 1)
    return plot_regret(
        report, queries, path, log_x=log_x, xlabel="queries (distinct architectures evaluated)",
        ylabel=f"regret of {report['objective']}", test_title="test metric of the best-by-objective architecture so far",
        suptitle=f"{os.path.basename(str(report['table']))}: {report.get('seeds')} seeds, "
                 f"concurrency {report.get('concurrency')}",
    )


def plot_regret(report: Mapping[str, Any], x: np.ndarray, path: str | os.PathLike, *, log_x: bool, xlabel: str,
                ylabel: str, test_title: str, suptitle: str) -> str:
    """The figure of :func:`plot_bench` and :func:`raynas.cost.plot_cost`: regret at ``x`` (queries or
    epochs, read off the traces' first column) and, with a test metric, the incumbent's test metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["searchers"])
    regrets = {name: regret_curves(report, name, x) for name in names}
    positive = np.concatenate([r[np.isfinite(r) & (r > 0)] for r in regrets.values()] + [np.array([])])
    floor = float(10 ** (np.floor(np.log10(positive.min())) - 1)) if positive.size else 1e-3
    tests = {name: incumbent_test_curves(report, name, x) for name in names}
    with_test = bool(report.get("test_metric")) and any(np.isfinite(t).any() for t in tests.values())
    fig, axes = plt.subplots(1, 2 if with_test else 1, figsize=(12.5 if with_test else 7, 4.8), dpi=120,
                             squeeze=False)
    ax = axes[0, 0]
    for k, name in enumerate(names):
        q1, median, q3 = _quartiles(np.maximum(regrets[name], floor))
        color = f"C{k % 10}"
        seeds = len(report["searchers"][name]["traces"])
        ax.plot(x, median, color=color, lw=2, label=f"{name} (median, {seeds} seeds)")
        ax.fill_between(x, q1, q3, color=color, alpha=0.2, lw=0)
    ax.axhline(floor, color="0.4", ls=":", lw=1)
    ax.annotate("optimum found (regret 0)", (0.01, floor), xycoords=("axes fraction", "data"),
                xytext=(0, 2), textcoords="offset points", va="bottom", fontsize=8, color="0.3")
    ax.set_yscale("log")
    ax.set_title(f"regret = optimum ({report['optimum']:g}) − best so far; bands: quartiles", fontsize=10)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper right")
    panels = [ax]
    if with_test:
        ax = axes[0, 1]
        for k, name in enumerate(names):
            if not np.isfinite(tests[name]).any():
                continue
            q1, median, q3 = _quartiles(tests[name])
            color = f"C{k % 10}"
            ax.plot(x, median, color=color, lw=2, label=name)
            ax.fill_between(x, q1, q3, color=color, alpha=0.2, lw=0)
        ax.set_ylabel(str(report["test_metric"]))
        ax.set_title(test_title, fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        panels.append(ax)
    for ax in panels:
        if log_x:
            ax.set_xscale("log")
        ax.set_xlim(float(x[0]), float(x[-1]))
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _nanmean(values: Sequence[float]) -> float | None:
    array = np.asarray(values, dtype=float)
    return float(np.nanmean(array)) if np.isfinite(array).any() else None
