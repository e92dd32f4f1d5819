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


def test_cli_bench_checks_searcher_names_before_loading_the_table(tmp_path, capsys):
    """Names come from the registry (raynas.methods) and are checked first: no table is read for a typo."""
    missing = tmp_path / "missing.csv"
    assert main(["bench", "--table", str(missing), "--objective", "val_200", "--searchers", "random, bogus",
                 "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "unknown searcher(s) ['bogus']; choose from random, regevo, nasbot, gpnas, bonas, esnac" in err
    assert "does not exist" not in err
    assert main(["bench", "--table", str(missing), "--objective", "val_200", "--searchers", "esnac",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert "['esnac'] search only a teacher's compression space" in capsys.readouterr().err
    assert main(["bench", "--table", str(missing), "--objective", "val_200", "--searchers", "random"]) == 2
    assert "does not exist" in capsys.readouterr().err  # a known name goes on to the table


def test_searcher_options_reach_the_method_and_the_report(bench):
    kwargs = dict(seeds=1, max_queries=40, progress=False)
    report = run_bench(bench, ["regevo", "random"], searcher_options={"regevo": {"population_size": 4}}, **kwargs)
    assert report["searcher_options"] == {"regevo": {"population_size": 4}}
    assert run_bench(bench, ["random"], **kwargs)["searcher_options"] == {}
    with pytest.raises(ValueError, match="cannot join reports that differ in 'searcher_options'"):
        join_reports([report, run_bench(bench, ["regevo", "random"], first_seed=1, **kwargs)])
    with pytest.raises(TypeError, match=r"RegularizedEvolution \(search method 'regevo'\) got unknown option\(s\) "
                                        r"\['pool'\]; its options are: population_size, sample_size"):
        run_one(bench, "regevo", seed=0, max_queries=10, searcher_kwargs={"pool": 4})
    with pytest.raises(ValueError, match=r"searcher_options for \['bonas'\]"):
        run_bench(bench, ["random"], searcher_options={"bonas": {}}, **kwargs)
    with pytest.raises(ValueError, match=r"unknown searcher\(s\) \['bogus'\]; choose from random, regevo"):
        run_bench(bench, ["random", "bogus"], **kwargs)


def test_bench_never_imports_ray(synthetic_nb201_csv):
    """``raynas bench`` drives the Ray-free methods: after a run, no ``ray`` module is loaded."""
    import subprocess
    import sys
    from pathlib import Path

    code = """if True:
        import json, sys
        from raynas.bench import run_bench
        from raynas.benchmarks import TabularBenchmark

        bench = TabularBenchmark.from_csv(sys.argv[1], "val_200", test_metric="test_200")
        small_bonas = {"num_initial": 5, "pool_size": 30, "epochs": 20, "warm_steps": 10, "retrain_every": 5}
        report = run_bench(bench, ["random", "bonas"], seeds=1, max_queries=15, progress=False,
                           searcher_options={"bonas": small_bonas})
        print(json.dumps({
            "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")),
            "raynas_searchers": "raynas.searchers" in sys.modules,
            "queries": {name: block["mean_queries_to_optimum"] for name, block in report["searchers"].items()},
        }))
    """
    done = subprocess.run([sys.executable, "-c", code, str(synthetic_nb201_csv)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["ray"] == [], f"raynas bench imported Ray: {seen['ray'][:10]}"
    assert seen["raynas_searchers"] is False
    assert set(seen["queries"]) == {"random", "bonas"}


def _tune_searcher_run(bench, name, seed, max_queries, concurrency, options):
    """The bench loop as it was before raynas.methods: through the Ray Tune ``Searcher`` API."""
    import numpy as np
    from ray.tune.search import Searcher

    from raynas.architecture import Architecture
    from raynas.searchers import make_searcher

    searcher = make_searcher(name, bench.space, metric=bench.objective, mode=bench.mode, seed=seed, **options)
    order_rng = np.random.default_rng([seed, 7919])
    pending, evaluated, test_at, found = [], set(), {}, None
    best_value, best_test, trial_number, exhausted = float("nan"), float("nan"), 0, False
    while True:
        while not exhausted and len(pending) < concurrency and len(evaluated) + len(pending) < max_queries:
            trial_id = f"{name}_{seed}_{trial_number}"
            trial_number += 1
            config = searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                exhausted = True
                break
            pending.append((trial_id, Architecture.from_config(config)))
        if not pending:
            break
        trial_id, arch = pending.pop(int(order_rng.integers(len(pending))))
        value = bench.value(arch)
        searcher.on_trial_complete(trial_id, result={bench.objective: value, "training_iteration": 1})
        if arch in evaluated:
            continue
        evaluated.add(arch)
        if bench.is_better(value, best_value):
            best_value, best_test = value, bench.value(arch, bench.test_metric)
        if len(evaluated) in TEST_AT:
            test_at[len(evaluated)] = best_test
        if found is None and value == bench.optimum[1]:
            found = len(evaluated)
        if found is not None and len(evaluated) >= max(TEST_AT):
            break
    for k in TEST_AT:
        test_at.setdefault(k, best_test)
    return found, test_at, len(evaluated)


@pytest.mark.parametrize("name, max_queries, options", [
    ("random", 200, {}),
    ("regevo", 400, {}),
    ("bonas", 25, {"num_initial": 5, "pool_size": 50, "epochs": 30, "warm_steps": 10, "retrain_every": 5}),
])
def test_bench_numbers_equal_those_of_the_tune_searchers_on_the_real_table(nb201_table_path, name, max_queries,
                                                                           options):
    """Driving the Ray-free method gives exactly what driving its Ray Tune searcher gave (seeds 0-1, 1 and 4 in flight)."""
    real = TabularBenchmark.from_csv(nb201_table_path, "cifar10valid_val_acc_200ep",
                                     test_metric="cifar10_test_acc_200ep")
    for seed in (0, 1):
        for concurrency in (1, 4):
            record = run_one(real, name, seed, max_queries, concurrency, options)
            got = (record.queries_to_optimum, record.test_at, record.queries)
            assert got == _tune_searcher_run(real, name, seed, max_queries, concurrency, options), (seed, concurrency)


# ------------------------------------------------------------- incumbent traces, budgets, regret plot
def test_traces_record_every_improvement(bench):
    import numpy as np

    from raynas.bench import regret_curves

    report = run_bench(bench, ["random", "regevo"], seeds=3, max_queries=400, concurrency=2, progress=False)
    report = json.loads(json.dumps(report))  # as written to disk
    for name, block in report["searchers"].items():
        assert len(block["traces"]) == 3
        for trace, found in zip(block["traces"], block["queries_to_optimum"]):
            queries = [q for q, _, _ in trace]
            best = [b for _, b, _ in trace]
            assert queries[0] == 1 and queries == sorted(set(queries)) and all(q <= 400 for q in queries)
            assert best == sorted(set(best))  # strictly better at every point (maximising)
            assert all(test == pytest.approx(value + 1.0) for _, value, test in trace)  # synthetic: test = val + 1
            if found is not None:
                assert trace[-1][:2] == [found, pytest.approx(report["optimum"])]
        curves = regret_curves(report, name, [1, 50, 400])
        assert curves.shape == (3, 3) and (curves >= 0).all()
        assert (np.diff(curves, axis=1) <= 0).all()  # regret never grows
        for row, found in zip(curves, block["queries_to_optimum"]):
            assert (row[-1] == 0) == (found is not None)


def test_test_at_only_within_the_budget(bench):
    report = run_bench(bench, ["regevo"], seeds=2, max_queries=80, progress=False)
    block = report["searchers"]["regevo"]
    assert set(block["test_at"]) == {"50"}  # 100 and 150 would only repeat the best after 80 queries
    from raynas.bench import summary_line

    assert "test@50 " in summary_line("regevo", block)
    full = run_bench(bench, ["regevo"], seeds=2, max_queries=150, progress=False)
    assert set(full["searchers"]["regevo"]["test_at"]) == {"50", "100", "150"}


def test_join_reports_concatenates_traces(bench):
    kwargs = dict(max_queries=200, concurrency=2, progress=False)
    whole = run_bench(bench, ["random"], seeds=3, **kwargs)["searchers"]["random"]["traces"]
    head = run_bench(bench, ["random"], seeds=1, **kwargs)
    tail = run_bench(bench, ["random"], seeds=2, first_seed=1, **kwargs)
    joined = join_reports([json.loads(json.dumps(tail)), json.loads(json.dumps(head))])
    assert joined["searchers"]["random"]["traces"] == json.loads(json.dumps(whole))
    old = json.loads(json.dumps(head))
    del old["searchers"]["random"]["traces"]  # a part written before traces existed
    assert "traces" not in join_reports([old, tail])["searchers"]["random"]


def test_cli_bench_plot(synthetic_nb201_csv, tmp_path, capsys):
    out, plot = tmp_path / "b.json", tmp_path / "plots" / "regret.png"
    code = main(["bench", "--table", str(synthetic_nb201_csv), "--objective", "val_200", "--test-metric", "test_200",
                 "--searchers", "random,regevo", "--seeds", "3", "--max-queries", "300", "--out", str(out),
                 "--quiet", "--plot", str(plot)])
    assert code == 0 and plot.stat().st_size > 20_000
    assert f"wrote {plot}" in capsys.readouterr().out
    from PIL import Image

    with Image.open(plot) as image:
        assert image.size[0] > 1000  # regret and test-metric panels side by side


def test_plot_bench_minimising_and_without_test_metric(tmp_path):
    """Regret of a minimised objective is best - optimum; a report without a test metric has one panel."""
    import pandas as pd

    from raynas.bench import plot_bench, regret_curves

    rows = [{"a": a, "b": b, "loss": 10 * a + b + 1} for a in range(4) for b in range(5)]
    path = tmp_path / "pos.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    table = TabularBenchmark.from_csv(path, "loss", space="positional", position_columns=["a", "b"], mode="min")
    report = run_bench(table, ["random"], seeds=4, max_queries=20, progress=False)
    curves = regret_curves(report, "random", range(1, 21))
    assert (curves >= 0).all() and (curves[:, -1] == 0).all()  # the whole space: every seed finds the optimum
    from PIL import Image

    with Image.open(plot_bench(report, tmp_path / "min.png")) as image:
        assert image.size[0] < 1000
