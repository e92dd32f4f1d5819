import pandas as pd
import pytest

from raynas.architecture import Architecture
from raynas.benchmarks import BenchmarkError, TabularBenchmark, UnknownArchitectureError, parse_fidelities
from raynas.spaces import NB201Space
from raynas.spaces.positional import PositionalSpace
from tests.conftest import synthetic_nb201_frame


def test_load_by_arch_str_and_lookup(synthetic_nb201_csv):
    bench = TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", test_metric="test_200", fidelities="val_12:12",
                                      objective_epochs=200)
    assert len(bench) == 15625 and isinstance(bench.space, NB201Space)
    arch, value = bench.optimum
    assert arch.ops == ("nor_conv_3x3",) * 6
    assert bench.value(arch, "test_200") == pytest.approx(value + 1)
    assert [(f.column, f.epochs) for f in bench.fidelities] == [("val_12", 12.0), ("val_200", 200.0)]
    assert set(bench.metrics(arch)) == {"val_200", "test_200", "val_12"}


def test_load_by_edge_columns_matches_arch_str(tmp_path):
    frame = synthetic_nb201_frame(limit=200).drop(columns=["arch_str"])
    path = tmp_path / "edges.csv"
    frame.to_csv(path, index=False)
    bench = TabularBenchmark.from_csv(path, "val_200")
    full = synthetic_nb201_frame(limit=200)
    space = NB201Space()
    for k in (0, 57, 199):
        assert bench.value(space.parse(full.arch_str[k])) == pytest.approx(full.val_200[k])


def test_min_mode_optimum(tmp_path):
    frame = synthetic_nb201_frame(limit=50)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    bench = TabularBenchmark.from_csv(path, "val_200", mode="min")
    assert bench.optimum[1] == pytest.approx(frame.val_200.min())
    assert bench.is_better(1.0, 2.0) and not bench.is_better(2.0, 1.0)


def test_positional_table(tmp_path):
    frame = pd.DataFrame({"k": [3, 3, 5, 5], "se": ["on", "off", "on", "off"], "acc": [0.1, 0.2, 0.3, 0.25]})
    path = tmp_path / "pos.csv"
    frame.to_csv(path, index=False)
    bench = TabularBenchmark.from_csv(path, "acc", space="positional", position_columns=["k", "se"])
    assert isinstance(bench.space, PositionalSpace)
    assert bench.space.describe(bench.optimum[0]) == "k=5,se=on"
    assert bench.value(bench.space.make(["3", "off"])) == 0.2


def test_errors_name_the_problem(tmp_path, synthetic_nb201_csv):
    with pytest.raises(BenchmarkError, match="does not exist"):
        TabularBenchmark.from_csv(tmp_path / "missing.csv", "val_200")
    with pytest.raises(BenchmarkError, match=r"column\(s\) \['val_999'\] not found"):
        TabularBenchmark.from_csv(synthetic_nb201_csv, "val_999")
    with pytest.raises(BenchmarkError, match=r"column\(s\) \['nope'\] not found"):
        TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200", test_metric="nope")
    bench = TabularBenchmark.from_csv(synthetic_nb201_csv, "val_200")
    with pytest.raises(UnknownArchitectureError, match="is not in benchmark"):
        bench.value(Architecture("nb201", ("none",) * 5 + ("bogus",)))

    frame = synthetic_nb201_frame(limit=5)
    frame.loc[3, "arch_str"] = "|nor_conv_3x3~0|+|garbage"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(BenchmarkError, match="line 5: malformed architecture"):
        TabularBenchmark.from_csv(bad, "val_200")

    frame = synthetic_nb201_frame(limit=5)
    frame["val_200"] = frame["val_200"].astype(object)
    frame.loc[2, "val_200"] = "n/a"
    bad = tmp_path / "nan.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(BenchmarkError, match="'val_200' has 1 non-numeric or missing value.*line\\(s\\) 4"):
        TabularBenchmark.from_csv(bad, "val_200")

    frame = synthetic_nb201_frame(limit=5)
    frame = pd.concat([frame, frame.iloc[[1]]])
    bad = tmp_path / "dup.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(BenchmarkError, match="appears twice"):
        TabularBenchmark.from_csv(bad, "val_200")

    no_arch = tmp_path / "noarch.csv"
    synthetic_nb201_frame(limit=5)[["val_200"]].to_csv(no_arch, index=False)
    with pytest.raises(BenchmarkError, match="needs an 'arch_str' column"):
        TabularBenchmark.from_csv(no_arch, "val_200")


def test_parse_fidelities():
    assert [(f.column, f.epochs) for f in parse_fidelities("a:12, b:50")] == [("a", 12.0), ("b", 50.0)]
    assert [(f.column, f.epochs) for f in parse_fidelities(["a", "b"])] == [("a", 1.0), ("b", 2.0)]
    with pytest.raises(BenchmarkError, match="not a number"):
        parse_fidelities("a:twelve")


def test_real_nb201_table_facts(nb201_table_path):
    """Facts stated in shared/benchmarks/README.md about the real table."""
    bench = TabularBenchmark.from_csv(nb201_table_path, "cifar10valid_val_acc_200ep",
                                      test_metric="cifar10_test_acc_200ep")
    arch, value = bench.optimum
    assert len(bench) == 15625
    assert value == pytest.approx(91.57)
    assert (bench.frame["cifar10valid_val_acc_200ep"] == value).sum() == 1
    assert bench.space.describe(arch) == (
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    )
    assert bench.value(arch, "cifar10_test_acc_200ep") == pytest.approx(94.30, abs=0.01)
    assert bench.frame["cifar10_test_acc_200ep"].max() == pytest.approx(94.37, abs=0.01)
    # the op_e.. columns describe the same cells as arch_str
    edges = TabularBenchmark.from_csv(nb201_table_path, "cifar10valid_val_acc_200ep", position_columns=[
        "op_e01", "op_e02", "op_e12", "op_e03", "op_e13", "op_e23"])
    assert edges.architectures == bench.architectures
