"""ASHA's grace period in epochs, mapped onto the rungs a trial actually reports (Ray-free).

A trial reports once per *rung*: every epoch when it really trains, once per
fidelity column of a tabular benchmark (``--fidelities col:12`` then the
objective at ``--objective-epochs 200``). Ray Tune's ASHA counts in
``training_iteration``, the number of results so far, so a grace period given
in epochs must become the index of the rung with that many epochs. A grace
period at or beyond the last rung leaves ASHA nothing to decide: that is an
error here, not the silent clamp it would otherwise be.

Example::

    >>> grace_iterations([12.0, 200.0], None)        # a table: the first rung
    1
    >>> grace_iterations([12.0, 200.0], 12)
    1
    >>> grace_iterations([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], None)   # real training: a third of the epochs
    2
    >>> grace_iterations([12.0, 200.0], 3)
    Traceback (most recent call last):
    ...
    raynas.schedule.ScheduleError: ASHA grace period 3 epochs is not a rung of this search; its rungs are at 12, 200 epochs: pass --grace-period 12 (or --scheduler none)
"""

from __future__ import annotations

from typing import Sequence


class ScheduleError(ValueError):
    """An early-stopping schedule that does not fit the search's rungs."""


def _fmt(value: float) -> str:
    return f"{value:g}"


def grace_iterations(rung_epochs: Sequence[float], grace_period: float | None) -> int:
    """ASHA's ``grace_period`` in ``training_iteration`` units for a grace period in epochs.

    Args:
        rung_epochs: the epochs at each result a trial reports, increasing
            (real training: ``1, 2, ..., epochs``; a table: its fidelities' epochs).
        grace_period: epochs before ASHA may stop a trial; ``None``: the first
            rung when the rungs are a table's fidelities, else a third of the
            epochs (at least one), where learning curves start to rank cells.

    Raises:
        ScheduleError: the grace period is not one of the rungs, or it leaves no
            rung before the last at which a trial could be stopped.
    """
    rungs = [float(r) for r in rung_epochs]
    if len(rungs) < 2:
        raise ScheduleError(
            f"ASHA can never stop a trial here: trials report once (at {_fmt(rungs[0]) if rungs else '?'} epochs). "
            "Give a tabular search lower-fidelity rungs (--fidelities COL:EPOCHS) or use --scheduler none"
        )
    consecutive = rungs == [float(k) for k in range(1, len(rungs) + 1)]
    if grace_period is None:
        return max(1, len(rungs) // 3) if consecutive else 1
    grace = float(grace_period)
    if grace >= rungs[-1]:
        raise ScheduleError(
            f"ASHA grace period {_fmt(grace)} epochs can never stop a trial: trials end at {_fmt(rungs[-1])} "
            f"epochs; pass --grace-period below {_fmt(rungs[-1])} (rungs at "
            f"{', '.join(_fmt(r) for r in rungs[:-1])}) or --scheduler none"
        )
    if grace not in rungs:
        raise ScheduleError(
            f"ASHA grace period {_fmt(grace)} epochs is not a rung of this search; its rungs are at "
            f"{', '.join(_fmt(r) for r in rungs)} epochs: pass --grace-period {_fmt(rungs[0])} (or --scheduler none)"
        )
    return rungs.index(grace) + 1
