import math

import pandas as pd
import pytest

from raynas.analysis import best_row, format_summary, trial_table, write_report


def frame():
    return pd.DataFrame({
        "trial_id": ["c", "a", "b", "d"],
        "config/suggestion": [2, 0, 1, 3],
        "acc": [0.5, 0.7, float("nan"), 0.9],
        "arch_str": ["x", "y", "z", "w"],
        "timestamp": [3, 1, 2, 4],
    })


def test_trial_table_orders_by_suggestion_and_tracks_best():
    table = trial_table(frame(), "acc", "max")
    assert table["trial_id"].tolist() == ["a", "b", "c", "d"]
    assert table["trial"].tolist() == [1, 2, 3, 4]
    assert table["best_so_far"].tolist() == [0.7, 0.7, 0.7, 0.9]
    low = trial_table(frame(), "acc", "min")
    assert low["best_so_far"].tolist() == [0.7, 0.7, 0.5, 0.5]


def test_best_row_ignores_missing_values():
    table = trial_table(frame(), "acc")
    assert best_row(table, "acc")["trial_id"] == "d"
    empty = trial_table(frame().assign(acc=math.nan), "acc")
    assert best_row(empty, "acc") is None


def test_unknown_metric_is_named():
    with pytest.raises(KeyError, match="'loss' not in results"):
        trial_table(frame(), "loss")


def test_write_report_files_and_summary(tmp_path):
    summary = write_report(frame(), "acc", "max", tmp_path, title="t")
    assert (tmp_path / "results.csv").exists() and (tmp_path / "best_so_far.png").stat().st_size > 1000
    assert summary["trials"] == 4 and summary["with_metric"] == 3
    assert summary["best"]["acc"] == 0.9 and summary["best"]["arch_str"] == "w"
    text = format_summary(summary, "acc")
    assert "best acc: 0.9" in text and "best architecture: w" in text
    reread = pd.read_csv(tmp_path / "results.csv")
    assert reread["best_so_far"].iloc[-1] == 0.9
