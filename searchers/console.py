"""One line per finished trial on the console of ``raynas search`` (Tune's own tables only with ``--verbose``).

Each line reads::

    [ 7/32] #6 |nor_conv_3x3~0|+|skip_co...v_1x1~1|none~2|  val_200=71.52 at 3/3  best 73.1  0:42 elapsed, ETA 2:51

``#6`` is the trial's suggestion index (its ``suggestion`` config key), then the
architecture as its space describes it (shortened to :data:`ARCH_WIDTH`
characters), the value with the fidelity it was reached at (``stopped at
1/3`` when the scheduler stopped it below the budget), the best full-budget
value so far, the time since the run started and an estimate of what is left.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

from ray import tune

from raynas.architecture import ArchitectureFormatError
from raynas.spaces.base import InvalidArchitectureError

logger = logging.getLogger(__name__)

#: Longest architecture text on a line; longer ones keep their start and end around "...".
ARCH_WIDTH = 60


def shorten(text: str, width: int = ARCH_WIDTH) -> str:
    """``text`` on one line, at most ``width`` characters: its start and end around ``...`` when longer."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    keep = width - 3
    head = (keep + 1) // 2
    return text[:head] + "..." + text[len(text) - (keep - head):]


def format_duration(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def trial_dirname(trial: Any) -> str:
    """A short trial directory name, ``TabularTrainable_0065db23``: Tune's default embeds the config,
    here the whole architecture JSON. Pass it as ``tune.TuneConfig(trial_dirname_creator=trial_dirname)``."""
    return f"{trial.trainable_name}_{trial.trial_id}"


class TrialLines(tune.Callback):
    """A Tune callback printing one line per finished (or failed) trial to stdout.

    ``space`` describes the architectures, ``metric``/``mode`` pick the value and the best,
    ``max_t`` is the full budget in ``training_iteration`` s, ``num_samples`` the trials of the run.
    """

    def __init__(self, space: Any, metric: str, mode: str, max_t: int, num_samples: int) -> None:
        self.space, self.metric, self.mode = space, metric, mode
        self.max_t, self.num_samples = max(int(max_t), 1), int(num_samples)
        self._start: float | None = None
        self._done = 0  # trials finished in this process (the rate for the ETA)
        self._seen: int | None = None  # trials finished before this process (a resumed run), on first use
        self._best: float | None = None

    def __getstate__(self) -> dict:  # pickled into tuner.pkl: a resumed run counts and times its own part
        return {**self.__dict__, "_start": None, "_done": 0, "_seen": None, "_best": None}

    def setup(self, **info) -> None:
        self._start = time.monotonic()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._catch_up(trials, trial)
        self._line(trial, trial.last_result or {}, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._catch_up(trials, trial)
        self._line(trial, trial.last_result or {}, failed=True)

    def _full(self, result: dict) -> float | None:
        """The value of a result at the full budget (``None`` below it or without a value)."""
        iteration = result.get("training_iteration")
        if isinstance(iteration, (int, float)) and iteration < self.max_t:
            return None
        return _number(result.get(self.metric))

    def _better(self, value: float) -> bool:
        return self._best is None or (value > self._best if self.mode == "max" else value < self._best)

    def _catch_up(self, trials, trial) -> None:
        """Once per process: count and take the best of the trials finished before it (a resumed run)."""
        if self._seen is not None:
            return
        self._seen = 0
        try:
            for other in trials or ():
                if other is trial or str(getattr(other, "status", "")) not in ("TERMINATED", "ERROR"):
                    continue
                self._seen += 1
                value = self._full(other.last_result or {})
                if value is not None and self._better(value):
                    self._best = value
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a line must never stop the run
            logger.debug("console: could not count the earlier trials (%s: %s)", type(exc).__name__, exc)

    def _describe(self, config: dict) -> str:
        try:
            from raynas.architecture import Architecture

            return shorten(self.space.describe(Architecture.from_config(config)))
        except (ArchitectureFormatError, InvalidArchitectureError, AttributeError, KeyError, ValueError):
            return "?"  # a config without a readable architecture of this space

    def _line(self, trial, result: dict, failed: bool) -> None:
        try:
            if self._start is None:
                self._start = time.monotonic()
            self._done += 1
            done = self._done + (self._seen or 0)
            config = getattr(trial, "config", None) or {}
            index = config.get("suggestion", "?")
            value = _number(result.get(self.metric))
            iteration = result.get("training_iteration")
            if failed or value is None:
                outcome = "failed" if failed else f"no {self.metric}"
            else:
                if isinstance(iteration, (int, float)) and iteration < self.max_t:
                    where = f"stopped at {int(iteration)}/{self.max_t}"
                else:
                    where = f"at {int(iteration) if isinstance(iteration, (int, float)) else '?'}/{self.max_t}"
                    if self._better(value):
                        self._best = value
                outcome = f"{self.metric}={value:.4g} {where}"
            best = f"best {self._best:.4g}" if self._best is not None else "best -"
            elapsed = time.monotonic() - self._start
            left = max(self.num_samples - done, 0)
            eta = format_duration(elapsed / self._done * left)
            width = len(str(self.num_samples))
            print(f"[{done:>{width}}/{self.num_samples}] #{index} {self._describe(config)}  {outcome}  "
                  f"{best}  {format_duration(elapsed)} elapsed, ETA {eta}", file=sys.stdout, flush=True)
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError) as exc:  # never stop the run
            logger.debug("console: no line for trial (%s: %s)", type(exc).__name__, exc)
