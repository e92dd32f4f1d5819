"""Answer Tune trials from a tabular benchmark, one fidelity rung per ``step()``.

Usage::

    trainable = tune.with_parameters(TabularTrainable, benchmark=bench, seconds_per_epoch=0.0)

``tune.with_parameters`` puts the table into Ray's object store once instead
of pickling it into every trial.

**Metric key across rungs.** ASHA (and any scheduler) compares one metric key
at every rung, so each ``step()`` reports the value of the *current* rung's
column under the name of the benchmark's **objective** column. The column that
value came from is reported as ``"fidelity"`` and its training budget as
``"epochs"``. Only the last rung's result holds the true objective value;
earlier results hold the lower-fidelity proxy under the same key.

**Every other number of the row.** Beside the objective, each result carries
the row's other numeric columns under their own names (parameters, FLOPs, an
index, ...: :attr:`TabularBenchmark.numeric_columns`), so they reach Tune's
results, ``results.csv`` and ``raynas analyze`` (value against params / FLOPs).
Metric columns are held back until the trial has "trained" for them: a
fidelity column appears from its own rung on, the test metric only with the
last rung. Columns that would clash with a key Tune or this trainable sets
(``training_iteration``, ``done``, ``epochs``, ...) are not copied; the
objective key and ``training_iteration``, which ASHA compares, are untouched.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray import tune
from ray.tune.result import (
    AUTO_RESULT_KEYS, DONE, EXPERIMENT_TAG, RESULT_DUPLICATE, SHOULD_CHECKPOINT, TRIAL_ID, TRIAL_INFO,
)

from raynas.architecture import Architecture
from raynas.benchmarks.tabular import TabularBenchmark

#: Result keys a table column never overwrites: Tune's own, and those :class:`TabularTrainable` sets itself.
RESERVED_KEYS: frozenset[str] = frozenset(AUTO_RESULT_KEYS) | {
    DONE, TRIAL_ID, EXPERIMENT_TAG, SHOULD_CHECKPOINT, RESULT_DUPLICATE, TRIAL_INFO, "experiment_id", "date",
    "fidelity", "epochs", "arch_str",
}


class TabularTrainable(tune.Trainable):
    """One trial = one architecture looked up in a :class:`TabularBenchmark`.

    Step ``k`` (0-based) answers ``benchmark.fidelities[k]``; the last step
    answers the objective, adds the test metric (under its own column name)
    when the benchmark has one, and sets ``done=True``. Every step also
    reports the row's other numeric columns (see the module doc).
    """

    def setup(
        self,
        config: dict[str, Any],
        benchmark: TabularBenchmark | None = None,
        seconds_per_epoch: float = 0.0,
    ) -> None:
        """Read the architecture; raise if it is not in the table (before any step runs)."""
        if benchmark is None:
            raise ValueError(
                "TabularTrainable needs a benchmark: use "
                "tune.with_parameters(TabularTrainable, benchmark=<TabularBenchmark>)"
            )
        if not isinstance(benchmark, TabularBenchmark):
            raise TypeError(
                f"TabularTrainable: benchmark must be a TabularBenchmark, got {type(benchmark).__name__}"
            )
        try:
            seconds = float(seconds_per_epoch)
        except (TypeError, ValueError):
            raise ValueError(
                f"TabularTrainable: seconds_per_epoch must be a number, got {seconds_per_epoch!r}"
            ) from None
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"TabularTrainable: seconds_per_epoch must be finite and >= 0, got {seconds_per_epoch!r}"
            )
        self.benchmark = benchmark
        self.seconds_per_epoch = seconds
        self._plan_columns()
        self._read_config(config)

    def _plan_columns(self) -> None:
        """Which numeric columns go into every result, and which only from a given rung on (once per actor)."""
        bench = self.benchmark
        rung_of = {rung.column: k for k, rung in enumerate(bench.fidelities)}
        test_metric = bench.test_metric if bench.test_metric != bench.objective else None
        self._static_columns: list[str] = []
        #: per rung k: the metric columns first reported at rung k (a fidelity's own column; the test metric last)
        self._new_columns: list[list[str]] = [[] for _ in bench.fidelities]
        for column in bench.numeric_columns:
            if column in RESERVED_KEYS or column == bench.objective:
                continue
            if column in rung_of:
                self._new_columns[rung_of[column]].append(column)
            elif column == test_metric:
                self._new_columns[-1].append(column)
            else:
                self._static_columns.append(column)
        if test_metric and test_metric not in bench.numeric_columns:  # numbers stored as text, say
            self._new_columns[-1].append(test_metric)

    def _read_config(self, config: dict[str, Any]) -> None:
        """Parse and look up the architecture (UnknownArchitectureError if it is not a row)."""
        arch = Architecture.from_config(config)
        self.benchmark.space.validate(arch)
        row = self.benchmark.numeric_row(arch)  # raises UnknownArchitectureError naming the architecture
        self.arch = arch
        self.arch_str = self.benchmark.space.describe(arch)
        self._row = row
        self._static = {column: row[column] for column in self._static_columns}
        self._rung = 0

    @property
    def rung(self) -> int:
        """Index of the next rung ``step()`` will answer."""
        return self._rung

    def step(self) -> dict[str, Any]:
        """Answer the next rung; the value goes under the objective's name (see the module doc)."""
        rungs = self.benchmark.fidelities
        if self._rung >= len(rungs):
            raise RuntimeError(
                f"TabularTrainable: all {len(rungs)} rung(s) of {self.arch_str} were already reported"
            )
        rung = rungs[self._rung]
        previous_epochs = rungs[self._rung - 1].epochs if self._rung > 0 else 0.0
        if self.seconds_per_epoch > 0:
            time.sleep(self.seconds_per_epoch * max(0.0, rung.epochs - previous_epochs))
        result: dict[str, Any] = dict(self._static)
        for new_columns in self._new_columns[: self._rung + 1]:  # metric columns of the rungs reached so far
            for column in new_columns:
                value = self._row.get(column)
                result[column] = value if value is not None else self.benchmark.value(self.arch, column)
        result[self.benchmark.objective] = self.benchmark.value(self.arch, rung.column)
        result["fidelity"] = rung.column
        result["epochs"] = rung.epochs
        result["arch_str"] = self.arch_str
        self._rung += 1
        if self._rung == len(rungs):
            result["done"] = True
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, int]:
        """The only state is the next rung's index."""
        return {"rung": self._rung}

    def load_checkpoint(self, checkpoint: dict[str, int]) -> None:
        """Resume at the saved rung."""
        if not isinstance(checkpoint, dict) or "rung" not in checkpoint:
            raise ValueError(f"TabularTrainable: checkpoint must be a dict with a 'rung' entry, got {checkpoint!r}")
        rung = checkpoint["rung"]
        if isinstance(rung, bool) or not isinstance(rung, int) or not 0 <= rung <= len(self.benchmark.fidelities):
            raise ValueError(
                f"TabularTrainable: checkpoint rung {rung!r} is outside 0..{len(self.benchmark.fidelities)}"
            )
        self._rung = rung

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Reuse this actor for another architecture (cheap; avoids a new worker per trial)."""
        self._read_config(new_config)
        self.config = new_config
        return True
