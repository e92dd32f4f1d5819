"""``raynas bench``: the JSON it writes and the sample-efficiency bookkeeping behind it."""

import json

import pytest

from raynas.bench import TEST_AT, join_reports, run_bench, run_one
from raynas.benchmarks import TabularBenchmark
from raynas.cli import main


@pytest.fixture(scope="module")
def bench(synthetic_nb201_csv):
    return TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", test_metric="test_200")


def test_json_schema_and_values(bench, tmp_path):
    out = tmp_path / "bench.json"
    report = run_bench(bench, ["random", "regevo"], seeds=3, max_queries=400, concurrency=2, out=out, progress=False)
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(report))
    for key in ("table", "objective", "test_metric", "optimum", "seeds", "max_queries", "concurrency", "searchers"):
        assert key in on_disk
    assert on_disk["optimum"] == pytest.approx(bench.optimum[1])
    assert (on_disk["seeds"], on_disk["max_queries"], on_disk["concurrency"]) == (3, 400, 2)
    for name in ("random", "regevo"):
        block = on_disk["searchers"][name]
        assert len(block["queries_to_optimum"]) == 3
        found = [q for q in block["queries_to_optimum"] if q is not None]
        assert all(1 <= q <= 400 for q in found)
        assert block["found_fraction"] == pytest.approx(len(found) / 3)
        capped = [q if q is not None else 400 for q in block["queries_to_optimum"]]
        assert block["mean_queries_to_optimum"] == pytest.approx(sum(capped) / 3)
        assert set(block["test_at"]) == {str(k) for k in TEST_AT}
        assert block["test_at"]["150"] >= block["test_at"]["50"]  # best-by-objective only improves here
        assert 0 < block["suggest_seconds"]["p50"] <= block["suggest_seconds"]["p95"]
        assert block["searcher_cpu_seconds"] > 0
    # the synthetic objective is smooth: evolution beats random on it
    assert on_disk["searchers"]["regevo"]["mean_queries_to_optimum"] < on_disk["searchers"]["random"]["mean_queries_to_optimum"]


def test_seed_ranges_split_a_measurement(bench):
    """Seeds 0-2 in one call equal seeds 0 and 1-2 in two calls with ``first_seed``."""
    kwargs = dict(max_queries=300, concurrency=2, progress=False)
    whole = run_bench(bench, ["regevo"], seeds=3, **kwargs)["searchers"]["regevo"]
    head = run_bench(bench, ["regevo"], seeds=1, **kwargs)
    tail = run_bench(bench, ["regevo"], seeds=2, first_seed=1, **kwargs)
    assert tail["first_seed"] == 1
    parts = head["searchers"]["regevo"]["queries_to_optimum"] + tail["searchers"]["regevo"]["queries_to_optimum"]
    assert parts == whole["queries_to_optimum"]
    with pytest.raises(ValueError, match="first_seed"):
        run_bench(bench, ["regevo"], seeds=1, first_seed=-1, **kwargs)

    joined = join_reports([json.loads(json.dumps(tail)), head])  # any order, JSON or not
    assert (joined["seeds"], joined["first_seed"]) == (3, 0)
    block = joined["searchers"]["regevo"]
    for key in ("queries_to_optimum", "mean_queries_to_optimum", "median_queries_to_optimum", "found_fraction"):
        assert block[key] == pytest.approx(whole[key])
    for k, value in whole["test_at"].items():
        assert block["test_at"][k] == pytest.approx(value)
    with pytest.raises(ValueError, match="tile one range.*seed 1"):
        join_reports([head, {**tail, "first_seed": 2}])
    with pytest.raises(ValueError, match="'concurrency'"):
        join_reports([head, {**tail, "concurrency": 1}])


def test_join_bench_script(bench, tmp_path):
    """``benchmarks/join_bench.py`` writes the joined report, and names the problem when parts do not join."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "join_bench.py"
    kwargs = dict(max_queries=200, progress=False)
    run_bench(bench, ["regevo"], seeds=1, out=tmp_path / "a.json", **kwargs)
    run_bench(bench, ["regevo"], seeds=1, first_seed=1, out=tmp_path / "b.json", **kwargs)
    run_bench(bench, ["regevo"], seeds=1, first_seed=3, out=tmp_path / "c.json", **kwargs)
    ok = subprocess.run([sys.executable, str(script), str(tmp_path / "b.json"), str(tmp_path / "a.json"),
                         "--out", str(tmp_path / "ab.json")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "ab.json").read_text())["seeds"] == 2
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "a.json"), str(tmp_path / "c.json"),
                          "--out", str(tmp_path / "ac.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and "starting at seed 1" in bad.stderr
    assert not (tmp_path / "ac.json").exists()


def test_queries_count_distinct_architectures_until_the_optimum(bench):
    record = run_one(bench, "random", seed=0, max_queries=15625)
    assert record.queries_to_optimum is not None
    # the run stops at the optimum once past the last reporting point
    assert record.queries == max(record.queries_to_optimum, max(TEST_AT))
    # the test metric at k queries is that of the best-by-objective architecture so far: here val + 1
    assert all(v > 50 for v in record.test_at.values())


def test_partial_table_fails_loudly(tmp_path):
    """A table covering part of the space makes searchers propose cells it lacks: that must be an error."""
    from tests.conftest import synthetic_nb201_frame

    path = tmp_path / "small.csv"
    synthetic_nb201_frame(limit=60).to_csv(path, index=False)
    small = TabularBenchmark.from_csv(path, "val_200")
    with pytest.raises(KeyError, match="is not in benchmark"):
        run_one(small, "random", seed=0, max_queries=100)


def test_finite_space_is_exhausted_without_repeats(tmp_path):
    path = tmp_path / "pos.csv"
    rows = [{"a": a, "b": b, "acc": 10 * a + b} for a in range(3) for b in range(4)]
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    table = TabularBenchmark.from_csv(path, "acc", space="positional", position_columns=["a", "b"])
    for concurrency in (1, 3):
        record = run_one(table, "random", seed=1, max_queries=1000, concurrency=concurrency)
        assert record.queries == 12 and record.queries_to_optimum is not None


def test_cli_bench_writes_json_and_rejects_bad_input(synthetic_nb201_csv, tmp_path, capsys):
    out = tmp_path / "cli.json"
    code = main(["bench", "--table", str(synthetic_nb201_csv), "--objective", "val_200", "--test-metric", "test_200",
                 "--searchers", "regevo", "--seeds", "2", "--max-queries", "300", "--out", str(out), "--quiet"])
    assert code == 0 and json.loads(out.read_text())["searchers"]["regevo"]["queries_to_optimum"]
    assert "regevo: mean queries to optimum" in capsys.readouterr().out
    assert main(["bench", "--table", str(synthetic_nb201_csv), "--objective", "nope", "--out", str(out)]) == 2
    assert "column(s) ['nope'] not found" in capsys.readouterr().err
    assert main(["bench", "--table", str(synthetic_nb201_csv), "--objective", "val_200", "--searchers", "bogus",
                 "--out", str(out)]) == 2
    assert "unknown searcher(s) ['bogus']" in capsys.readouterr().err
