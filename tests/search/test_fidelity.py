"""Trials stopped early reach the model labelled with their fidelity, calibrated onto the full one."""

from __future__ import annotations

import numpy as np
import pytest

from raynas.benchmarks import TabularBenchmark
from raynas.bo.fidelity import MIN_PAIRS, apply_rung_map, fit_rung_maps
from raynas.search.gpnas import GPNAS


def test_rung_maps_fit_a_line_shift_with_few_pairs_and_leave_unpaired_rungs_alone():
    rng = np.random.default_rng(0)
    x = rng.uniform(60, 80, size=12)
    rows = [{1.0: float(v), 3.0: 5.0 + 1.2 * float(v)} for v in x]
    maps = fit_rung_maps(rows + [{2.0: 70.0}], top=3.0)
    assert maps[1.0] == pytest.approx((5.0, 1.2))
    assert 2.0 not in maps and apply_rung_map(maps, 2.0, 70.0) == 70.0  # never seen at both: as it is
    few = fit_rung_maps(rows[: MIN_PAIRS - 1], top=3.0)
    gaps = [r[3.0] - r[1.0] for r in rows[: MIN_PAIRS - 1]]
    assert few[1.0] == pytest.approx((np.mean(gaps), 1.0))
    backwards = [{1.0: float(v), 3.0: 100.0 - float(v)} for v in x]  # a negative slope is not a calibration
    assert fit_rung_maps(backwards, top=3.0)[1.0][1] == 1.0


def _drive(search, bench, n):
    """n trials: each reports its 12-epoch value (rung 1); two in three stop there, the rest report rung 2."""
    stopped = []
    for k in range(n):
        trial = f"t{k}"
        arch = search.suggest(trial)
        low = bench.value(arch, "val_12")
        search.report(trial, low, 1)
        if k % 3:
            search.complete(trial, low, fidelity=1)
            stopped.append(arch)
        else:
            search.report(trial, bench.value(arch), 2)
            search.complete(trial, bench.value(arch), fidelity=2)
    return stopped


@pytest.fixture(scope="module")
def bench(synthetic_nb201_csv):
    return TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", fidelities="val_12:12", objective_epochs=200)


def test_stopped_trials_reach_the_model_calibrated_used_raw_or_dropped(bench):
    """The synthetic table's 12-epoch column is the objective minus 10 (plus a cosine of at most 1)."""
    errors = {}
    for how in ("calibrate", "use", "drop"):
        search = GPNAS(bench.space, mode="max", seed=3, num_initial=30, low_fidelity=how)
        stopped = _drive(search, bench, 30)
        data = search.model_data()
        assert [search.rung_values[a][1.0] for a in stopped] == [bench.value(a, "val_12") for a in stopped]
        if how == "drop":
            assert len(data) == 10 and data.full.all()
            continue
        assert len(data) == 30 and (~data.full).sum() == 20
        assert data.fidelity == [1.0 if a in stopped else 2.0 for a in data.archs]
        truth = np.array([bench.value(a) for a in stopped])
        values = np.array([data.values[data.archs.index(a)] for a in stopped])
        errors[how] = np.abs(values - truth).mean()
        predicted, _ = search.predict(stopped)
        errors[how + " predicted"] = np.abs(predicted - truth).mean()
    assert errors["calibrate"] < 1.0 and errors["use"] > 8.0
    assert errors["calibrate predicted"] < 2.0 and errors["use predicted"] > 6.0


def test_rung_values_survive_save_and_restore(bench):
    search = GPNAS(bench.space, mode="max", seed=1, num_initial=12)
    _drive(search, bench, 12)
    restored = GPNAS(bench.space, mode="max", seed=1, num_initial=12)
    restored.load_state_dict(search.state_dict())
    assert restored.rung_values == search.rung_values
    np.testing.assert_array_equal(restored.model_data().values, search.model_data().values)


def test_low_fidelity_is_validated(bench):
    with pytest.raises(ValueError, match="low_fidelity must be 'calibrate', 'use' or 'drop', got 'ignore'"):
        GPNAS(bench.space, low_fidelity="ignore")
