"""Cost benchmark: what a search costs in training epochs and simulated wall-clock on a cluster.

``raynas bench`` (:mod:`raynas.bench`) counts full evaluations. This module
simulates the cluster instead: ``W`` asynchronous workers, each training one
trial at a time, a trial reporting at every rung of the table's fidelity
schedule (``bench.fidelities``, cheapest first, the objective last) and an
early-stopping scheduler (ASHA, or none) deciding after every result whether
the trial goes on. It measures the *epochs* spent and the *simulated time*
until the table's optimum has been evaluated at full fidelity.

Like :mod:`raynas.bench` it imports neither Ray nor a Ray runtime: ASHA's rule
is re-implemented in :class:`AshaRule`, which the tests prove decision for
decision equal to Ray Tune's ``AsyncHyperBandScheduler``.

**The simulation** (:func:`run_cost`). Whenever a worker is free, the search
is asked for an architecture (``search.suggest``; ``None``: the space is
exhausted, no more trials start). A trial started at time ``s`` delivers its
rung ``k`` result at ``s + epochs_k * time_per_epoch``. Each result is passed
to ``search.report(trial_id, value, fidelity=k + 1)`` (the fidelity a Tune
trial reports: its ``training_iteration``), then to the scheduler; a trial
stopped there, or at its last rung, is completed
(``search.complete(trial_id, value, fidelity=k + 1)``) and frees its worker.
Results are processed in time order; results due at the same time in the
order their trials started (then by rung). Free workers are refilled once
all results due at that time have been processed, in worker order.

*Epochs* are counted as results are delivered: a rung result adds the epochs
since the trial's previous rung, so a trial stopped at rung ``k`` has cost
``epochs_k`` and a full evaluation the objective's epochs. Work in progress
on other workers is not counted until it delivers a result. *Time per epoch*
is 1 for every architecture by default; with ``speed_column`` it is the
architecture's value in that column divided by the column's mean over the
table (so the average architecture still takes 1 time unit per epoch and a
column of seconds per epoch, FLOPs or latency makes slow networks slow).

A run stops when ``max_epochs`` have been spent, when the space is exhausted
and every trial has finished, or (nothing after it is measured) once the
optimum was found at full fidelity and the largest reporting budget
(``budgets``, within ``max_epochs``) has been passed.

**Per seed** (:class:`CostRecord`): epochs and simulated time until an
architecture with the table's optimal objective value is evaluated at full
fidelity (``None`` if never); the test metric of the best full-fidelity
architecture at each budget of epochs (that of the results delivered within
the budget); the incumbent trace ``[epochs, best full-fidelity objective,
its test metric, simulated time]`` at every improvement; trials started,
stopped early and evaluated in full; suggest and CPU seconds.

Example::

    >>> from raynas.benchmarks import TabularBenchmark
    >>> from raynas.cost import run_cost, run_cost_bench
    >>> bench = TabularBenchmark.from_csv("nb201.csv", "val_200", test_metric="test_200",
    ...                                   fidelities="val_12:12", objective_epochs=200)  # doctest: +SKIP
    >>> record = run_cost(bench, "regevo", seed=0, workers=4, scheduler="asha")  # doctest: +SKIP
    >>> record.epochs_to_optimum, record.wallclock_to_optimum  # doctest: +SKIP
    >>> report = run_cost_bench(bench, ["random", "regevo"], seeds=10, workers=4,
    ...                         out="cost.json")  # doctest: +SKIP

On the command line: ``raynas bench --table nb201.csv --objective val_200
--fidelities val_12:12 --objective-epochs 200 --scheduler asha --workers 4``.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from raynas.architecture import Architecture
from raynas.schedule import ScheduleError, grace_iterations
from raynas.bench import (
    _finite_or_none, _jsonable, _nanmean, check_run, plot_regret, report_header, reported_budgets, searcher_time,
    write_json,
)
from raynas.benchmarks.tabular import TabularBenchmark, parse_fidelities
from raynas.methods import make_method

logger = logging.getLogger(__name__)

#: Epoch budgets at which the test metric of the best full-fidelity architecture is reported.
BUDGETS: tuple[int, ...] = (4000, 20000)
#: Default epoch budget of one run.
MAX_EPOCHS = 200_000
#: Scheduler decisions, spelled as Ray Tune's ``TrialScheduler.CONTINUE`` / ``TrialScheduler.STOP``.
CONTINUE, STOP = "CONTINUE", "STOP"
SCHEDULERS = ("none", "asha")


# ------------------------------------------------------------------------------------------- ASHA
class AshaRule:
    """Ray Tune's asynchronous successive halving (ASHA) decisions, without Ray.

    Mirrors ``AsyncHyperBandScheduler`` with one bracket (what ``ASHAScheduler``
    uses by default) of Ray 2.60.0,
    ``ray/tune/schedulers/async_hyperband.py`` (``AsyncHyperBandScheduler`` and
    ``_Bracket``), rule for rule:

    * milestones ``grace_period * reduction_factor ** k`` for ``k`` in
      ``range(int(log(max_t / grace_period) / log(reduction_factor) + 1))``;
    * a result is scored ``+value`` (``mode="max"``) or ``-value`` (``"min"``);
    * a result whose iteration is ``>= max_t`` is stopped outright (with
      ``stop_last_trials``, the default) and recorded nowhere;
    * otherwise, from the highest milestone down, the first milestone at or
      below the iteration that has no result of this trial yet decides: the
      trial stops if its score is below the cutoff, the
      ``(1 - 1 / reduction_factor) * 100``-th ``numpy.nanpercentile`` of the
      scores recorded there (no cutoff while none is), and its score is
      recorded there whatever the decision (a NaN score never stops and is
      ignored by later cutoffs). Without ``stop_last_trials``, a milestone the
      trial already passed ends the search for one (it continues);
    * :meth:`on_complete` (Ray's ``on_trial_complete``, called with the
      trial's last result when it ends) applies the same bookkeeping once
      more and may record that result at a milestone it has not reached yet.

    The iteration is what ``time_attr`` holds; for a tabular trial, whose
    ``training_iteration`` is its rung index + 1, ``max_t`` is the number of
    rungs and ``grace_period`` a rung number.

    Example::

        >>> rule = AshaRule(max_t=3, grace_period=1, reduction_factor=2, mode="max")
        >>> rule.milestones
        [2, 1]
        >>> rule.on_result("a", 1, 0.9), rule.on_result("b", 1, 0.5)
        ('CONTINUE', 'STOP')
        >>> rule.on_result("a", 3, 0.95)  # iteration >= max_t
        'STOP'
    """

    def __init__(
        self,
        max_t: int,
        grace_period: float = 1,
        reduction_factor: float = 4,
        mode: str = "max",
        stop_last_trials: bool = True,
    ) -> None:
        if not max_t > 0:
            raise ValueError(f"ASHA: max_t must be > 0, got {max_t!r}")
        if not grace_period > 0:
            raise ValueError(f"ASHA: grace_period must be > 0, got {grace_period!r}")
        if not max_t >= grace_period:
            raise ValueError(f"ASHA: grace_period ({grace_period!r}) must be <= max_t ({max_t!r})")
        if not reduction_factor > 1:
            raise ValueError(f"ASHA: reduction_factor must be > 1, got {reduction_factor!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"ASHA: mode must be 'max' or 'min', got {mode!r}")
        self.max_t = max_t
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        self.mode = mode
        self.stop_last_trials = stop_last_trials
        self._metric_op = 1.0 if mode == "max" else -1.0
        max_rungs = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
        #: ``(milestone, {trial id: score})``, highest milestone first, as Ray's ``_Bracket._rungs``
        self._rungs: list[tuple[float, dict[str, float]]] = [
            (grace_period * reduction_factor ** k, {}) for k in reversed(range(max_rungs))
        ]
        self.num_stopped = 0

    @property
    def milestones(self) -> list[float]:
        """The milestones, highest first (as Ray keeps them)."""
        return [milestone for milestone, _ in self._rungs]

    def recorded(self, milestone: float) -> dict[str, float]:
        """Scores recorded at ``milestone`` by trial id (``-value`` when minimising); a copy."""
        for m, rung in self._rungs:
            if m == milestone:
                return dict(rung)
        raise KeyError(f"no milestone {milestone!r}; the milestones are {self.milestones}")

    def cutoff(self, milestone: float) -> float | None:
        """The score a trial must reach at ``milestone`` not to be stopped (``None`` while none is recorded)."""
        for m, rung in self._rungs:
            if m == milestone:
                return self._cutoff(rung)
        raise KeyError(f"no milestone {milestone!r}; the milestones are {self.milestones}")

    def _cutoff(self, rung: dict[str, float]) -> Any:
        if not rung:
            return None
        return np.nanpercentile(list(rung.values()), (1 - 1 / self.reduction_factor) * 100)

    def on_result(self, trial_id: str, iteration: float, value: float) -> str:
        """The decision (:data:`CONTINUE` or :data:`STOP`) on ``trial_id``'s result ``value`` at ``iteration``."""
        if iteration >= self.max_t and self.stop_last_trials:
            action = STOP
        else:
            action = self._bracket(trial_id, iteration, self._metric_op * value)
        if action == STOP:
            self.num_stopped += 1
        return action

    def on_complete(self, trial_id: str, iteration: float, value: float) -> None:
        """The trial ended with this (its last) result; Ray's ``on_trial_complete``."""
        self._bracket(trial_id, iteration, self._metric_op * value)

    def _bracket(self, trial_id: str, cur_iter: float, cur_rew: float) -> str:
        action = CONTINUE
        for milestone, rung in self._rungs:
            if cur_iter >= milestone and trial_id in rung and not self.stop_last_trials:
                break
            if cur_iter < milestone or trial_id in rung:
                continue
            cutoff = self._cutoff(rung)
            if cutoff is not None and cur_rew < cutoff:
                action = STOP
            rung[trial_id] = cur_rew
            break
        return action


def check_asha(bench: TabularBenchmark, grace_period: int) -> None:
    """Raise :class:`~raynas.schedule.ScheduleError` unless ASHA with ``grace_period`` (a rung number,
    1-based like ``training_iteration``) can stop a trial of ``bench`` before its last rung."""
    epochs = [f.epochs for f in bench.fidelities]
    if len(epochs) > 1 and not 1 <= int(grace_period) <= len(epochs):
        raise ScheduleError(f"ASHA grace period rung {grace_period} is outside 1..{len(epochs)}, the rungs of "
                            f"{bench.source}")
    grace_iterations(epochs, epochs[int(grace_period) - 1] if len(epochs) > 1 else None)


# ------------------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class CostEvent:
    """One result delivered in a simulation."""

    time: float
    trial_id: str
    arch: Architecture
    rung: int  #: 0-based index into ``bench.fidelities``
    value: float
    epochs: float  #: epochs spent once this result is counted
    stopped: bool  #: the trial ended here (stopped by the scheduler or at its last rung)


@dataclass
class CostRecord:
    """What one searcher cost on one seed (see the module docstring)."""

    epochs_to_optimum: float | None = None
    wallclock_to_optimum: float | None = None
    test_at_epochs: dict[int, float] = field(default_factory=dict)
    #: ``[epochs, best full-fidelity objective, its test metric (NaN without one), simulated time]`` per improvement
    trace: list[list[float]] = field(default_factory=list)
    trials: int = 0  #: trials started (suggestions answered with an architecture)
    stopped_early: int = 0  #: trials the scheduler stopped before their last rung
    full_evaluations: int = 0  #: trials that reached the objective
    epochs: float = 0.0  #: epochs spent when the run ended
    wallclock: float = 0.0  #: simulated time when the run ended
    suggest_seconds: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    #: every result, in the order processed (not written to JSON)
    events: list[CostEvent] = field(default_factory=list, repr=False)


def time_per_epoch(bench: TabularBenchmark, speed_column: str | None) -> dict[Architecture, float] | None:
    """Each architecture's time per epoch: its ``speed_column`` value / the column's mean (``None``: all 1)."""
    if speed_column is None:
        return None
    if speed_column not in bench.frame.columns:
        raise ValueError(f"--speed-column {speed_column!r} is not a column of {bench.source}; "
                         f"it has {list(bench.frame.columns)}")
    import pandas as pd

    values = pd.to_numeric(bench.frame[speed_column], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if len(bad):
        raise ValueError(f"--speed-column {speed_column!r} must hold positive numbers; row(s) "
                         f"{', '.join(str(r + 2) for r in bad[:5])} (lines of {bench.source}) do not")
    mean = float(np.mean(values))
    return {arch: float(v) / mean for arch, v in zip(bench.architectures, values)}


def _check_settings(workers: int, max_epochs: float, scheduler: str) -> None:
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not max_epochs > 0:
        raise ValueError(f"max_epochs must be > 0, got {max_epochs}")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")


def run_cost(
    bench: TabularBenchmark,
    searcher_name: str,
    seed: int,
    workers: int,
    scheduler: str = "asha",
    grace_period: int = 1,
    reduction_factor: float = 3,
    max_epochs: float = MAX_EPOCHS,
    speed_column: str | None = None,
    searcher_kwargs: dict | None = None,
    budgets: Sequence[int] = BUDGETS,
) -> CostRecord:
    """Simulate one search of ``searcher_name`` with ``seed`` on ``workers`` workers (see the module docstring).

    ``scheduler`` is ``"asha"`` (:class:`AshaRule` with ``max_t`` = the number
    of rungs, ``grace_period`` a rung number, 1-based) or ``"none"`` (every
    trial runs to the objective). ``searcher_kwargs`` are options of the
    method (:func:`raynas.methods.make_method`).
    """
    _check_settings(workers, max_epochs, scheduler)
    rungs = bench.fidelities
    rule = None
    if scheduler == "asha":
        check_asha(bench, grace_period)
        rule = AshaRule(len(rungs), grace_period, reduction_factor, bench.mode)
    speeds = time_per_epoch(bench, speed_column)
    search = make_method(searcher_name, bench.space, mode=bench.mode, seed=seed, **(searcher_kwargs or {}))
    optimum_value = bench.optimum[1]
    budgets = reported_budgets(max_epochs, budgets)
    last_budget = budgets[-1] if budgets else 0
    record = CostRecord()
    best_value, best_test = float("nan"), float("nan")
    trials: list[tuple[str, Architecture, float, float]] = []  # trial id, arch, start time, time per epoch
    heap: list[tuple[float, int, int]] = []  # (time due, trial index, rung index)
    free = workers
    exhausted = False
    epochs = 0.0
    now = 0.0
    cpu_start = time.process_time()

    def start_trials(at: float) -> None:
        nonlocal free, exhausted
        while free > 0 and not exhausted:
            trial_id = f"{searcher_name}_{seed}_{len(trials)}"
            start = time.perf_counter()
            arch = search.suggest(trial_id)
            record.suggest_seconds.append(time.perf_counter() - start)
            if arch is None:  # a finite space is exhausted
                exhausted = True
                break
            speed = speeds[bench.architectures[bench.row(arch)]] if speeds is not None else 1.0
            trials.append((trial_id, arch, at, speed))
            heapq.heappush(heap, (at + rungs[0].epochs * speed, len(trials) - 1, 0))
            free -= 1

    start_trials(0.0)
    done = False
    while heap and not done:
        now = heap[0][0]
        while heap and heap[0][0] == now:
            _, index, k = heapq.heappop(heap)
            trial_id, arch, started, speed = trials[index]
            value = bench.value(arch, rungs[k].column)
            before = epochs
            epochs += rungs[k].epochs - (rungs[k - 1].epochs if k else 0.0)
            search.report(trial_id, value, fidelity=k + 1)
            last = k == len(rungs) - 1
            stop = last
            if rule is not None:
                stop = rule.on_result(trial_id, k + 1, value) == STOP or last
                if stop:
                    rule.on_complete(trial_id, k + 1, value)
            if stop:
                search.complete(trial_id, value, fidelity=k + 1)
                free += 1
                if not last:
                    record.stopped_early += 1
            else:
                heapq.heappush(heap, (started + rungs[k + 1].epochs * speed, index, k + 1))
            previous_test = best_test
            if last:
                record.full_evaluations += 1
                if bench.is_better(value, best_value):
                    best_value = value
                    best_test = bench.value(arch, bench.test_metric) if bench.test_metric else float("nan")
                    record.trace.append([epochs, best_value, best_test, now])
                if record.epochs_to_optimum is None and value == optimum_value:
                    record.epochs_to_optimum, record.wallclock_to_optimum = epochs, now
            for budget in budgets:  # the incumbent of the results delivered within each budget
                if before <= budget and budget not in record.test_at_epochs and epochs >= budget:
                    record.test_at_epochs[budget] = best_test if epochs == budget else previous_test
            record.events.append(CostEvent(now, trial_id, arch, k, value, epochs, stop))
            if epochs >= max_epochs:
                logger.debug("%s seed %s: the budget of %s epochs is spent", searcher_name, seed, max_epochs)
                done = True
                break
            if record.epochs_to_optimum is not None and epochs >= last_budget:
                done = True
                break
        if not done:
            start_trials(now)
    record.cpu_seconds = time.process_time() - cpu_start
    record.trials = len(trials)
    record.epochs, record.wallclock = epochs, now
    for budget in budgets:  # a run that ended early keeps its final best
        record.test_at_epochs.setdefault(budget, best_test)
    return record


# ---------------------------------------------------------------------------------------- reports
def _num(value: float | None) -> float | int | None:
    """``value`` for JSON and messages: an int when whole, ``None`` stays ``None``."""
    if value is None:
        return None
    value = float(value)
    return int(value) if value.is_integer() else value


def _epochs(value: float) -> str:
    return f"{_num(value)} epoch{'' if value == 1 else 's'}"


def summarise_cost(records: Sequence[CostRecord], max_epochs: float) -> dict:
    """The per-searcher block of the cost JSON.

    ``mean_epochs_to_optimum`` counts a miss as ``max_epochs``;
    ``mean_wallclock_to_optimum`` counts a miss as the simulated time at which
    that run ended. Trials, early stops and full evaluations are means per seed.
    """
    epochs = [r.epochs_to_optimum for r in records]
    clock = [r.wallclock_to_optimum for r in records]
    budgets = sorted({b for r in records for b in r.test_at_epochs})
    return {
        "epochs_to_optimum": [_num(e) for e in epochs],
        "wallclock_to_optimum": [_num(c) for c in clock],
        "mean_epochs_to_optimum": float(np.mean([e if e is not None else max_epochs for e in epochs])),
        "median_epochs_to_optimum": float(np.median([e if e is not None else max_epochs for e in epochs])),
        "mean_wallclock_to_optimum": float(np.mean([c if c is not None else r.wallclock
                                                    for c, r in zip(clock, records)])),
        "found_fraction": float(np.mean([e is not None for e in epochs])),
        "epochs_at_end": [_num(r.epochs) for r in records],
        "wallclock_at_end": [_num(r.wallclock) for r in records],
        "test_at_epochs": {str(b): _nanmean([r.test_at_epochs.get(b, float("nan")) for r in records])
                           for b in budgets},
        "traces": [[[_num(e), float(best), _finite_or_none(test), _num(t)] for e, best, test, t in r.trace]
                   for r in records],
        "trials": float(np.mean([r.trials for r in records])),
        "stopped_early": float(np.mean([r.stopped_early for r in records])),
        "full_evaluations": float(np.mean([r.full_evaluations for r in records])),
        **searcher_time(records),
    }


def run_cost_bench(
    bench: TabularBenchmark,
    searchers: Sequence[str],
    seeds: int,
    workers: int = 1,
    scheduler: str = "asha",
    grace_period: int = 1,
    reduction_factor: float = 3,
    max_epochs: float = MAX_EPOCHS,
    speed_column: str | None = None,
    budgets: Sequence[int] = BUDGETS,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    first_seed: int = 0,
    searcher_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict:
    """Cost of ``searchers`` on ``bench`` for seeds ``first_seed .. first_seed + seeds - 1`` (see :func:`run_cost`).

    Returns the report (and writes it as JSON to ``out`` after each searcher,
    so finished work is never lost): the table, objective, test metric, mode,
    optimum, the fidelities as ``[[column, epochs], ...]``, the scheduler's
    settings, workers, budgets and seeds, and ``"searchers": {name:
    summarise_cost(...)}``. ``searcher_options`` maps a searcher name to
    options of its method; unknown names fail before any search runs.
    """
    searchers, options = check_run(searchers, searcher_options, seeds, first_seed)
    _check_settings(workers, max_epochs, scheduler)
    if scheduler == "asha":
        check_asha(bench, grace_period)
    time_per_epoch(bench, speed_column)  # a bad column fails now
    settings: dict[str, Any] = {"name": scheduler}
    if scheduler == "asha":
        settings.update(
            grace_period=int(grace_period),
            grace_period_epochs=_num(bench.fidelities[int(grace_period) - 1].epochs),
            reduction_factor=_num(reduction_factor),
            max_t=len(bench.fidelities),
            time_attr="training_iteration",
            stop_last_trials=True,
            milestones=[_num(m) for m in reversed(AshaRule(len(bench.fidelities), grace_period,
                                                            reduction_factor).milestones)],
        )
    report: dict[str, Any] = {
        "kind": "cost",
        **report_header(bench),
        "fidelities": [[f.column, _num(f.epochs)] for f in bench.fidelities],
        "scheduler": settings,
        "workers": workers,
        "speed_column": speed_column,
        "max_epochs": _num(max_epochs),
        "budgets": reported_budgets(max_epochs, budgets),
        "seeds": seeds,
        "first_seed": first_seed,
        "searcher_options": {name: _jsonable(opts) for name, opts in options.items() if opts},
        "searchers": {},
    }
    for name in searchers:
        records = []
        for seed in range(first_seed, first_seed + seeds):
            records.append(run_cost(bench, name, seed, workers, scheduler, grace_period, reduction_factor,
                                    max_epochs, speed_column, options.get(name), budgets))
            if progress:
                r = records[-1]
                print(f"[cost] {name} seed {seed}: epochs_to_optimum={_num(r.epochs_to_optimum)} "
                      f"wallclock_to_optimum={_num(r.wallclock_to_optimum)} "
                      f"({r.trials} trials, {r.stopped_early} stopped early; {r.cpu_seconds:.1f} s)", flush=True)
        report["searchers"][name] = summarise_cost(records, max_epochs)
        if out is not None:
            write_json(report, out)
    return report


def cost_summary_line(name: str, block: dict) -> str:
    """One searcher's block of a cost report as one line of text."""
    p95 = block["suggest_seconds"].get("p95")
    tests = ", ".join(f"test@{b} {v:.4g}" if v is not None else f"test@{b} n/a"
                      for b, v in block["test_at_epochs"].items())
    return (f"{name}: mean epochs to optimum {block['mean_epochs_to_optimum']:.0f} "
            f"(median {block['median_epochs_to_optimum']:.0f}, found {block['found_fraction']:.0%}), "
            f"mean wallclock to optimum {block['mean_wallclock_to_optimum']:.1f}, "
            + (tests + ", " if tests else "")
            + f"{block['trials']:.1f} trials ({block['stopped_early']:.1f} stopped early), suggest p95 "
            + (f"{p95:.2e} s" if p95 is not None else "n/a"))


def plot_cost(report: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Median and quartile regret against epochs spent, per searcher of a cost report (log y); returns the path.

    Regret is ``optimum - best full-fidelity value so far`` (``best - optimum``
    when minimising), read off the report's incumbent ``traces``; regret 0 is
    drawn at a dotted floor line marked "optimum found". With a test metric, a
    second panel shows the incumbent's test metric. The x-axis runs from the
    objective's epochs (no full-fidelity value exists before) to the latest end
    of a run (at most ``max_epochs``), logarithmic when that spans two decades
    or more.
    """
    names = list(report["searchers"])
    first = float(report["fidelities"][-1][1]) if report.get("fidelities") else 1.0  # the first full evaluation
    ends = [e for name in names for e in report["searchers"][name].get("epochs_at_end", []) if e]
    right = float(min(max(ends + list(report.get("budgets", [])) + [first * 2]), report["max_epochs"]))
    log_x = right / first >= 100
    epochs = np.unique(np.geomspace(first, right, 400) if log_x else np.linspace(first, right, 400))
    scheduler = report.get("scheduler", {})
    how = scheduler.get("name", "none")
    if how == "asha":
        how = f"ASHA (grace {scheduler.get('grace_period_epochs')} epochs, rf {scheduler.get('reduction_factor')})"
    return plot_regret(
        report, epochs, path, log_x=log_x, xlabel="training epochs spent",
        ylabel=f"regret of {report['objective']} (full fidelity)",
        test_title="test metric of the best full-fidelity architecture so far",
        suptitle=f"{os.path.basename(str(report['table']))}: {report.get('seeds')} seeds, "
                 f"{report.get('workers')} workers, scheduler {how}",
    )


# -------------------------------------------------------------------------------------------- CLI
#: Options of the cost mode that only it reads, by ``args`` attribute (their defaults are ``None``).
_COST_ONLY = {"objective_epochs": "--objective-epochs", "max_epochs": "--max-epochs",
              "grace_period": "--grace-period", "reduction_factor": "--reduction-factor",
              "speed_column": "--speed-column"}


def _positive_number(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return int(value) if value.is_integer() else value


def add_cost_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the cost mode's options to the ``raynas bench`` parser (the rest are the bench's own)."""
    group = parser.add_argument_group(
        "cost mode",
        "--workers, --scheduler or --fidelities switch 'raynas bench' from counting queries to simulating a "
        "cluster: epochs and simulated time to the optimum with W asynchronous workers and an early-stopping "
        "scheduler (no Ray runtime; ASHA's rule is re-implemented)")
    group.add_argument("--fidelities", metavar="COL:EPOCHS,...",
                       help="lower-fidelity columns of --table and their training epochs, cheapest first "
                       "(the rungs ASHA compares; the objective is the last rung)")
    group.add_argument("--objective-epochs", type=_positive_number, metavar="N",
                       help="training epochs of the objective (the last rung); default the largest "
                       "--fidelities epochs + 1, or 1 without --fidelities (epochs then count full evaluations)")
    group.add_argument("--scheduler", choices=SCHEDULERS,
                       help="early stopping: asha (Ray Tune's ASHAScheduler rule) or none; default asha when "
                       "--fidelities gives lower-fidelity rungs, else none")
    group.add_argument("--workers", type=int, metavar="W",
                       help="simulated workers training trials at once (asynchronously); default 1")
    group.add_argument("--max-epochs", type=_positive_number, metavar="N",
                       help=f"training epochs per seed; a run that has not found the optimum by then counts "
                       f"as not found; default {MAX_EPOCHS}")
    group.add_argument("--grace-period", type=_positive_number, metavar="EPOCHS",
                       help="ASHA grace period in epochs: one of the rungs' epochs, below the objective's; "
                       "default the first rung")
    group.add_argument("--reduction-factor", type=_positive_number, metavar="RF",
                       help="ASHA reduction factor (> 1); default 3")
    group.add_argument("--speed-column", metavar="COL",
                       help="column of --table giving each architecture's training time per epoch, relative to "
                       "the column's mean (e.g. seconds per epoch, FLOPs, latency); default every architecture "
                       "trains at 1 time unit per epoch")


def cost_table_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TabularBenchmark.from_csv`` keywords the cost mode adds: the rungs (``--fidelities``) and
    the objective's epochs."""
    return {"fidelities": parse_fidelities(args.fidelities), "objective_epochs": args.objective_epochs}


def cost_mode_requested(args: argparse.Namespace) -> bool:
    """Whether ``args`` ask for the cost mode: ``--workers``, ``--scheduler`` or ``--fidelities`` given.

    Raises ValueError when cost-only options (``--max-epochs``, ``--grace-period``, ...) come without them.
    """
    requested = any(getattr(args, key, None) is not None for key in ("workers", "scheduler", "fidelities"))
    if not requested:
        given = [flag for key, flag in _COST_ONLY.items() if getattr(args, key, None) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} belong(s) to the cost mode; add --workers W, "
                             "--scheduler or --fidelities COL:EPOCHS,... to run it")
    return requested


def run_cost_from_args(args: argparse.Namespace, bench: TabularBenchmark, names: Sequence[str],
                       options: Mapping[str, Mapping[str, Any]]) -> dict:
    """``raynas bench`` in the cost mode: validate, run, print, write ``--out`` and ``--plot``.

    ``bench`` is the table loaded with ``--fidelities`` and ``--objective-epochs``
    (:func:`cost_table_options`), ``names`` the checked searcher names and
    ``options`` the parsed ``--searcher-option`` values (each checked to build on
    the table), as ``cmd_bench`` has them. Returns the report.
    """
    if getattr(args, "concurrency", 1) != 1:
        raise ValueError("--concurrency counts queries; in the cost mode the simulated workers are --workers W")
    if getattr(args, "max_queries", 1000) != 1000:
        raise ValueError("--max-queries counts queries; in the cost mode the budget is --max-epochs N")
    workers = 1 if args.workers is None else args.workers
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    scheduler = args.scheduler or ("asha" if len(bench.fidelities) > 1 else "none")
    reduction_factor = 3 if args.reduction_factor is None else args.reduction_factor
    grace = 1
    if scheduler == "asha":
        if reduction_factor <= 1:
            raise ValueError(f"--reduction-factor must be > 1, got {reduction_factor}")
        grace = grace_iterations([f.epochs for f in bench.fidelities], args.grace_period)
    elif args.grace_period is not None or args.reduction_factor is not None:
        raise ValueError("--grace-period and --reduction-factor set ASHA; they do nothing with --scheduler none "
                         "(the default without --fidelities)")
    max_epochs = MAX_EPOCHS if args.max_epochs is None else args.max_epochs
    report = run_cost_bench(
        bench, names, args.seeds, workers, scheduler, grace, reduction_factor, max_epochs, args.speed_column,
        out=args.out, progress=not args.quiet, first_seed=args.first_seed, searcher_options=options,
    )
    for name, block in report["searchers"].items():
        print(cost_summary_line(name, block))
    if args.out:
        print(f"wrote {os.path.abspath(args.out)}")
    if getattr(args, "plot", None):
        print(f"wrote {os.path.abspath(plot_cost(report, args.plot))}")
    return report


__all__ = [
    "BUDGETS",
    "CONTINUE",
    "STOP",
    "AshaRule",
    "CostEvent",
    "CostRecord",
    "add_cost_arguments",
    "check_asha",
    "cost_mode_requested",
    "cost_table_options",
    "cost_summary_line",
    "plot_cost",
    "run_cost",
    "run_cost_bench",
    "run_cost_from_args",
    "summarise_cost",
    "time_per_epoch",
]
