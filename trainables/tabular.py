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
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray import tune

from raynas.architecture import Architecture
from raynas.benchmarks.tabular import TabularBenchmark


class TabularTrainable(tune.Trainable):
    """One trial = one architecture looked up in a :class:`TabularBenchmark`.

    Step ``k`` (0-based) answers ``benchmark.fidelities[k]``; the last step
    answers the objective, adds the test metric (under its own column name)
    when the benchmark has one, and sets ``done=True``.
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
        self._read_config(config)

    def _read_config(self, config: dict[str, Any]) -> None:
        """Parse and look up the architecture (UnknownArchitectureError if it is not a row)."""
        arch = Architecture.from_config(config)
        self.benchmark.space.validate(arch)
        self.benchmark.row(arch)  # raises UnknownArchitectureError naming the architecture
        self.arch = arch
        self.arch_str = self.benchmark.space.describe(arch)
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
        result: dict[str, Any] = {
            self.benchmark.objective: self.benchmark.value(self.arch, rung.column),
            "fidelity": rung.column,
            "epochs": rung.epochs,
            "arch_str": self.arch_str,
        }
        self._rung += 1
        if self._rung == len(rungs):
            test_metric = self.benchmark.test_metric
            if test_metric and test_metric != self.benchmark.objective:
                result[test_metric] = self.benchmark.value(self.arch, test_metric)
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
