"""Several objectives (raynas.pareto, raynas.pareto_bench): fronts, hypervolume, EHVI, the methods, the bench."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from raynas.benchmarks.tabular import TabularBenchmark
from raynas.cli import main
from raynas.methods import make_method
from raynas.pareto import (
    ComputedObjective,
    crowding_distance,
    expected_hypervolume_improvement,
    hypervolume,
    nondominated_ranks,
    orient,
    parse_objectives,
    pareto_mask,
)
from raynas.pareto_bench import run_pareto_bench, split_objectives


@pytest.fixture(scope="module")
def table(synthetic_flops_csv):
    """The synthetic NB201 table with a ``flops`` column (tests/conftest.py)."""
    return synthetic_flops_csv


def test_hypervolume_of_a_hand_computed_example():
    # maximise accuracy, minimise FLOPs; reference (70, 100)
    values = torch.tensor([[90.0, 50.0], [85.0, 20.0], [80.0, 60.0], [60.0, 10.0]])
    Y = orient(values, ["max", "min"])
    assert pareto_mask(Y).tolist() == [True, True, False, True]
    # (90, 50) and (85, 20) above the reference: 20*50 + 15*80 - 15*50 = 1450; (60, 10) is below 70: outside
    assert hypervolume(Y, orient(torch.tensor([[70.0, 100.0]]), ["max", "min"])[0]) == pytest.approx(1450.0)
    assert hypervolume(Y[2:3], torch.tensor([95.0, -100.0])) == 0.0


def test_nondominated_sorting_and_crowding():
    Y = torch.tensor([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [1.5, 1.5], [0.5, 0.5]])
    assert nondominated_ranks(Y).tolist() == [0, 0, 0, 1, 2]
    crowding = crowding_distance(Y, nondominated_ranks(Y))
    assert math.isinf(crowding[0]) and math.isinf(crowding[2]) and crowding[1] == pytest.approx(2.0)


def test_ehvi_prefers_a_candidate_that_extends_the_front():
    observed = torch.tensor([[1.0, -5.0], [0.0, -1.0]])  # (learned, -cost)
    mean = torch.tensor([2.0, 0.5, -1.0])
    variance = torch.full((3,), 0.01)
    cost = torch.tensor([[-5.0], [-3.0], [-6.0]])  # the third is dominated in both objectives
    scores = expected_hypervolume_improvement(mean, variance, cost, observed)
    assert scores[0] > 0 and scores[1] > 0 and scores[2] == pytest.approx(0.0, abs=1e-6)
    # a cheaper candidate with the same predicted value gains more
    cheaper = expected_hypervolume_improvement(mean[1:2], variance[1:2], torch.tensor([[-2.0]]), observed)
    assert cheaper[0] > scores[1]


def test_objective_flags_are_checked():
    assert parse_objectives("acc:max, flops:min") == [("acc", "max"), ("flops", "min")]
    for bad in ("acc:max", "acc:up,flops:min", "acc:max,acc:min"):
        with pytest.raises(ValueError, match="--objectives"):
            parse_objectives(bad)
    with pytest.raises(ValueError, match="exactly one objective"):
        split_objectives([("a", "max"), ("b", "min")], ["a", "b"])
    with pytest.raises(ValueError, match=r"--computed \['c'\]"):
        split_objectives([("a", "max"), ("b", "min")], ["c"])
    with pytest.raises(ValueError, match="mode must be"):
        ComputedObjective("flops", "lower", len)


def test_the_computed_objective_is_never_modelled(table):
    bench = TabularBenchmark.from_csv(str(table), "val_200")
    calls = []

    def flops(arch):
        calls.append(arch)
        return bench.value(arch, "flops")

    search = make_method("gpnas", bench.space, mode="max", seed=0, max_explore=2,
                         computed_objectives=[ComputedObjective("flops", "min", flops)])
    for i in range(16):
        arch = search.suggest(f"t{i}")
        search.complete(f"t{i}", bench.value(arch), fidelity=1)
    search.suggest("t16")  # the model is brought up to date when a suggestion needs it
    assert search.model.gp.train_targets.dim() == 1  # one modelled output: the learned value
    assert search.model.gp.train_targets.shape[0] == 16
    assert len(set(calls)) > 16  # candidates' costs were computed (and cached: each once)
    assert len(calls) == len(set(calls))


def test_single_objective_methods_refuse_computed_objectives():
    from raynas.spaces import NB201Space

    with pytest.raises(ValueError, match="NASBOT optimises one objective.*random, regevo, gpnas or bonas"):
        make_method("nasbot", NB201Space(), computed_objectives=[ComputedObjective("flops", "min", len)])


def test_pareto_bench_on_a_table(table, tmp_path):
    bench = TabularBenchmark.from_csv(str(table), "val_200")
    report = run_pareto_bench(bench, ["random", "regevo"], [("val_200", "max"), ("flops", "min")], ["flops"],
                              None, seeds=2, max_queries=50, progress=False)
    assert report["reference"] == [min(bench.value(a) for a in bench.architectures),
                                   max(bench.value(a, "flops") for a in bench.architectures)]
    assert report["true_front"]["size"] >= 2 and report["true_front"]["hypervolume"] > 0
    for name in ("random", "regevo"):
        block = report["searchers"][name]
        assert set(block["hypervolume_ratio"]) == {"50"} and len(block["runs"]) == 2
        assert all(0 < r["hypervolume_ratio"]["50"] <= 1 + 1e-9 and r["queries"] == 50 for r in block["runs"])
    with pytest.raises(ValueError, match="not dominated by any architecture"):
        run_pareto_bench(bench, ["random"], [("val_200", "max"), ("flops", "min")], ["flops"], [1e9, 0.0],
                         seeds=1, max_queries=50, progress=False)
    # the CLI: one line per searcher and the JSON
    out = tmp_path / "pareto.json"
    assert main(["bench", "--table", str(table), "--objectives", "val_200:max,flops:min", "--computed", "flops",
                 "--searchers", "bonas", "--seeds", "1", "--max-queries", "50", "--out", str(out), "--quiet",
                 "--searcher-option", "pool_size=100"]) == 0
    saved = json.loads(out.read_text())
    assert saved["objectives"][1] == {"column": "flops", "mode": "min", "computed": True}
    assert 0 < saved["searchers"]["bonas"]["hypervolume_ratio"]["50"] <= 1 + 1e-9

def test_bench_flags_need_their_mode(table, capsys):
    assert main(["bench", "--table", str(table), "--objective", "val_200", "--computed", "flops"]) == 2
    assert "--computed applies only with --objectives" in capsys.readouterr().err
    assert main(["bench", "--table", str(table)]) == 2
    assert "needs --objective COL (or --objectives" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["random", "regevo", "gpnas", "bonas"])
def test_constraints_exclude_infeasible_suggestions(table, name):
    from raynas.bench import feasible_optimum, table_constraints

    bench = TabularBenchmark.from_csv(str(table), "val_200")
    constraints = table_constraints(bench, [("flops", "<=", 20.0)])
    options = {"pool_size": 100} if name == "bonas" else {"max_explore": 2} if name == "gpnas" else {}
    search = make_method(name, bench.space, mode="max", seed=0, constraints=constraints, **options)
    for i in range(14):
        arch = search.suggest(f"t{i}")
        assert bench.value(arch, "flops") <= 20.0, (name, i)
        search.complete(f"t{i}", bench.value(arch), fidelity=1)
    best, value = feasible_optimum(bench, constraints)
    assert bench.value(best, "flops") <= 20.0 and value < bench.optimum[1]  # the unconstrained optimum is dearer
    with pytest.raises(ValueError, match="satisfies the constraints"):
        feasible_optimum(bench, table_constraints(bench, [("flops", "<=", 1.0)]))


def test_constraint_flag_is_parsed_and_recorded(table, tmp_path):
    from raynas.pareto import parse_constraint

    assert parse_constraint("flops<=60") == ("flops", "<=", 60.0)
    assert parse_constraint(" params >= 1e5") == ("params", ">=", 1e5)
    with pytest.raises(ValueError, match="--constraint"):
        parse_constraint("flops<60")
    out = tmp_path / "constrained.json"
    assert main(["bench", "--table", str(table), "--objective", "val_200", "--constraint", "flops<=20",
                 "--searchers", "regevo", "--seeds", "1", "--max-queries", "30", "--out", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["constraints"] == [{"column": "flops", "upper": 20.0, "lower": None}]


def test_the_report_draws_the_tables_true_front(table, tmp_path):
    import pandas as pd

    from raynas.analysis import plot_pareto, prepare_run

    bench = TabularBenchmark.from_csv(str(table), "val_200")
    archs = bench.architectures[:30]
    frame = pd.DataFrame({
        "val_200": [bench.value(a) for a in archs], "flops": [bench.value(a, "flops") for a in archs],
        "training_iteration": 1, "config/arch": [a.to_json() for a in archs], "config/suggestion": range(30),
        "trial_id": [f"t{i}" for i in range(30)],
    })
    run = prepare_run(frame, "val_200", "max", benchmark=bench)
    costs, values = run.true_front("flops")
    assert (np.diff(costs) > 0).all() and (np.diff(values) > 0).all()  # a staircase: dearer only if better
    assert values[-1] == pytest.approx(bench.optimum[1])
    assert run.true_front("no_such_column") is None
    assert plot_pareto(run, ["flops"], tmp_path / "pareto.png") and (tmp_path / "pareto.png").stat().st_size > 0
