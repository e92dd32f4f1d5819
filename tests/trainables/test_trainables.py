"""Tabular and digits Trainables: in-process (Ray 2.60 allows constructing a Trainable
without a cluster) for behaviour, and small ``tune.Tuner`` runs for the Ray wiring."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from ray import tune

from raynas.architecture import Architecture
from raynas.benchmarks import TabularBenchmark, UnknownArchitectureError
from raynas.benchmarks.tabular import Fidelity
from raynas.spaces import InvalidArchitectureError, NB201Space
from raynas.trainables import DIGITS_DEFAULTS, DigitsTrainable, TabularTrainable

SPACE = NB201Space()
ARCHS = [
    SPACE.make(["nor_conv_3x3"] * 6),
    SPACE.make(["skip_connect"] * 6),
    SPACE.make(["none"] * 6),
    SPACE.make(["nor_conv_1x1", "avg_pool_3x3", "none", "skip_connect", "nor_conv_3x3", "none"]),
]
SMALL_CELL = SPACE.make(["nor_conv_1x1", "skip_connect", "none", "skip_connect", "none", "nor_conv_1x1"])
SMALL = {"channels": 4, "cells_per_stage": 1, "epochs": 4, "batch_size": 64, "lr": 0.05, "seed": 0,
         "val_fraction": 0.2}  # 80 % of the images to train on: these tests check learning, not the main job


@pytest.fixture(autouse=True)
def _isolate_in_process_trainables(tmp_path, monkeypatch):
    """In-process Trainables make a log dir under ~/ray_results (keep it in tmp_path instead),
    and DigitsTrainable pins torch to one thread (undo that for the tests that follow)."""
    monkeypatch.setattr("ray.tune.trainable.trainable.DEFAULT_STORAGE_PATH", str(tmp_path / "ray_results"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bench() -> TabularBenchmark:
    """Four NB201 archs; rungs val_12 (12 ep) -> val_100 (100 ep) -> objective val_200 (200 ep)."""
    frame = pd.DataFrame(
        {
            "arch_str": [SPACE.describe(a) for a in ARCHS],
            "val_12": [60.0, 40.0, 10.0, 50.0],
            "val_100": [85.0, 70.0, 10.0, 75.0],
            "val_200": [91.0, 80.0, 10.0, 83.0],
            "test_200": [90.5, 79.0, 10.0, 82.0],
        }
    )
    return TabularBenchmark(
        frame, SPACE, ARCHS, "val_200", test_metric="test_200",
        fidelities=[Fidelity("val_100", 100), Fidelity("val_12", 12)], objective_epochs=200,
    )


def local_tabular(bench: TabularBenchmark, seconds_per_epoch: float = 0.0) -> type[TabularTrainable]:
    """What ``tune.with_parameters`` does, without the object store: bind the setup kwargs."""

    class Local(TabularTrainable):
        def setup(self, config):
            super().setup(config, benchmark=bench, seconds_per_epoch=seconds_per_epoch)

    return Local


def run_all(trainable) -> list[dict]:
    results = []
    while not results or not results[-1]["done"]:
        results.append(trainable.train())
    return results


# ------------------------------------------------------------------ tabular
def test_tabular_reports_rungs_in_order(bench):
    trainable = local_tabular(bench)(config={**ARCHS[0].to_config(), "unrelated": 1})
    results = run_all(trainable)
    assert [r["fidelity"] for r in results] == ["val_12", "val_100", "val_200"]
    assert [r["epochs"] for r in results] == [12, 100, 200]
    # every rung is reported under the objective's name (what ASHA compares)
    assert [r["val_200"] for r in results] == [60.0, 85.0, 91.0]
    assert [r["done"] for r in results] == [False, False, True]
    assert [r["training_iteration"] for r in results] == [1, 2, 3]
    assert "test_200" not in results[0] and "test_200" not in results[1]
    assert results[-1]["test_200"] == 90.5
    assert all(r["arch_str"] == SPACE.describe(ARCHS[0]) for r in results)
    with pytest.raises(RuntimeError, match="already reported"):
        trainable.step()
    trainable.stop()


def test_tabular_simulated_training_time(bench):
    trainable = local_tabular(bench, seconds_per_epoch=0.001)(config=ARCHS[1].to_config())
    times = [r["time_this_iter_s"] for r in run_all(trainable)]
    # sleeps scale with the epochs *added* by each rung: 12, 88, 100
    for took, epochs in zip(times, (12, 88, 100)):
        assert took >= 0.001 * epochs * 0.9


def test_tabular_unknown_and_invalid_architectures(bench):
    unknown = SPACE.make(["avg_pool_3x3"] * 6)
    with pytest.raises(UnknownArchitectureError, match=r"avg_pool_3x3~0.*is not in benchmark"):
        local_tabular(bench)(config=unknown.to_config())
    with pytest.raises(InvalidArchitectureError, match="conv_7x7"):
        local_tabular(bench)(config={"arch": '{"space":"nb201","ops":["conv_7x7","none","none","none","none","none"]}'})
    with pytest.raises(ValueError, match="no 'arch' entry"):
        local_tabular(bench)(config={"lr": 0.1})
    with pytest.raises(ValueError, match="with_parameters"):
        TabularTrainable(config=ARCHS[0].to_config())
    with pytest.raises(ValueError, match="seconds_per_epoch"):
        local_tabular(bench, seconds_per_epoch=-1)(config=ARCHS[0].to_config())


def test_tabular_checkpoint_and_reset(bench, tmp_path):
    cls = local_tabular(bench)
    first = cls(config=ARCHS[3].to_config())
    first.train()
    assert first.save_checkpoint(str(tmp_path)) == {"rung": 1}
    saved = first.save()  # Tune's own path: the dict is pickled into a checkpoint directory
    second = cls(config=ARCHS[3].to_config())
    second.restore(saved)
    assert [r["val_200"] for r in run_all(second)] == [75.0, 83.0]
    third = cls(config=ARCHS[3].to_config())
    third.load_checkpoint({"rung": 2})
    assert third.train()["val_200"] == 83.0
    with pytest.raises(ValueError, match="rung"):
        third.load_checkpoint({"rung": 7})
    # actor reuse: a new architecture starts again at the first rung
    assert first.reset_config(ARCHS[1].to_config()) is True
    assert first.rung == 0
    assert [r["val_200"] for r in (first.step(), first.step())] == [40.0, 70.0]
    with pytest.raises(UnknownArchitectureError):
        first.reset_config(SPACE.make(["avg_pool_3x3"] * 6).to_config())


def test_tabular_under_tune_with_actor_reuse(ray_session, bench, tmp_path):
    unknown = SPACE.make(["avg_pool_3x3"] * 6)
    tuner = tune.Tuner(
        tune.with_parameters(TabularTrainable, benchmark=bench, seconds_per_epoch=0.0),
        param_space={"arch": tune.grid_search([a.to_json() for a in ARCHS] + [unknown.to_json()])},
        tune_config=tune.TuneConfig(metric="val_200", mode="max", reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="tabular", storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert len(results.errors) == 1 and "is not in benchmark" in str(results.errors[0])
    finished = [r for r in results if r.error is None]
    assert len(finished) == 4
    for result in finished:
        arch = Architecture.from_config(result.config)
        assert result.metrics["training_iteration"] == 3
        assert result.metrics["val_200"] == bench.value(arch)
        assert result.metrics["test_200"] == bench.value(arch, "test_200")
    assert results.get_best_result().config["arch"] == ARCHS[0].to_json()
    assert len({r.metrics["pid"] for r in finished}) == 1  # one actor served every trial (reset_config)


# ------------------------------------------------------------------- digits
def digits(arch: Architecture = SMALL_CELL, **overrides) -> DigitsTrainable:
    return DigitsTrainable(config={**arch.to_config(), **SMALL, **overrides})


def test_digits_defaults_are_exported():
    assert set(DIGITS_DEFAULTS) == {"channels", "cells_per_stage", "epochs", "lr", "batch_size", "val_fraction",
                                   "weight_decay", "seed"}


def test_digits_learns_and_reports(tmp_path):
    trainable = digits()
    results = run_all(trainable)
    assert [r["epoch"] for r in results] == [1, 2, 3, 4]
    assert [r["done"] for r in results] == [False, False, False, True]
    accs = [r["val_acc"] for r in results]
    assert all(0.0 <= a <= 100.0 for a in accs)
    assert accs[-1] > accs[0] and accs[-1] >= 85.0, accs
    assert results[-1]["train_loss"] < results[0]["train_loss"]
    assert all(math.isfinite(r["val_loss"]) for r in results)
    assert results[-1]["params"] == results[0]["params"] > 0
    assert results[-1]["arch_str"] == SPACE.describe(SMALL_CELL)


def test_digits_checkpoint_resumes_identically(tmp_path):
    reference = digits()
    uninterrupted = [reference.step() for _ in range(4)]

    first = digits()
    first.step(), first.step()
    assert first.save_checkpoint(str(tmp_path)) is None
    resumed = digits()
    resumed.load_checkpoint(str(tmp_path))
    assert resumed.epoch == 2
    after = [resumed.step() for _ in range(2)]
    for got, want in zip(after, uninterrupted[2:]):
        assert got["epoch"] == want["epoch"]
        for key in ("val_acc", "train_loss", "val_loss"):
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
    assert after[-1]["done"]

    other = digits(SPACE.make(["skip_connect"] * 6))
    with pytest.raises(ValueError, match="checkpoint .* is for architecture"):
        other.load_checkpoint(str(tmp_path))


def test_digits_reset_config_restarts(tmp_path):
    trainable = digits()
    trainable.step()
    other = SPACE.make(["skip_connect"] * 6)
    new_config = {**other.to_config(), **SMALL, "epochs": 2}
    assert trainable.reset_config(new_config) is True
    assert trainable.epoch == 0
    first = trainable.step()
    fresh = DigitsTrainable(config=new_config).step()
    assert first["epoch"] == 1 and first["arch_str"] == SPACE.describe(other)
    assert first["val_acc"] == pytest.approx(fresh["val_acc"]) and first["train_loss"] == pytest.approx(fresh["train_loss"])
    assert trainable.step()["done"] is True


def test_digits_bad_config_is_named():
    bad = '{"space":"nb201","ops":["nor_conv_5x5","none","none","none","none","none"]}'
    with pytest.raises(InvalidArchitectureError, match="nor_conv_5x5"):
        DigitsTrainable(config={"arch": bad})
    with pytest.raises(InvalidArchitectureError, match="'arch'"):
        DigitsTrainable(config={"epochs": 3})
    with pytest.raises(ValueError, match="epochs"):
        digits(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        digits(lr=float("nan"))
    with pytest.raises(ValueError, match=r"config\['cuda_graphs'\] must be true, false or null.*'yes'"):
        digits(cuda_graphs="yes")


def test_cuda_graphs_are_a_cuda_feature_and_reported():
    """Asked for on the CPU, CUDA graphs are off and every result says so (as AMP is)."""
    trainable = digits(cuda_graphs=True, epochs=1)
    assert trainable.device.type == "cpu" and not trainable.graphs_wanted
    result = trainable.step()
    assert result["cuda_graphs"] is False and result["amp"] is False


def test_digits_under_tune_with_checkpoint_and_reuse(ray_session, tmp_path):
    archs = [SMALL_CELL, SPACE.make(["skip_connect"] * 6)]
    tuner = tune.Tuner(
        DigitsTrainable,
        param_space={**SMALL, "epochs": 2, "arch": tune.grid_search([a.to_json() for a in archs])},
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            name="digits", storage_path=str(tmp_path), verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
        ),
    )
    results = tuner.fit()
    assert not results.errors
    assert len({r.metrics["pid"] for r in results}) == 1  # the second trial reused the actor
    for result in results:
        assert result.metrics["epoch"] == 2 and result.metrics["val_acc"] > 10.0
        assert result.checkpoint is not None
        with result.checkpoint.as_directory() as directory:
            restored = DigitsTrainable(config=result.config)
            restored.load_checkpoint(directory)
            assert restored.epoch == 2


# ------------------------------------------------------- tabular: every numeric column of the row
@pytest.fixture(scope="module")
def wide_bench() -> TabularBenchmark:
    """The four archs with the columns a real table has besides its metrics (and two that clash with Tune's keys)."""
    frame = pd.DataFrame(
        {
            "index": [10, 11, 12, 13],
            "arch_str": [SPACE.describe(a) for a in ARCHS],
            "val_12": [60.0, 40.0, 10.0, 50.0],
            "val_200": [91.0, 80.0, 10.0, 83.0],
            "test_12": [59.0, 41.0, 10.0, 49.0],
            "test_200": [90.5, 79.0, 10.0, 82.0],
            "params_M": [1.5, 0.1, 0.0, 0.7],
            "flops_M": [200.0, 20.0, 1.0, 90.0],
            "training_iteration": [7, 7, 7, 7],  # a table column named like Tune's keys is not copied
            "done": [1, 1, 1, 1],
            "note": ["a", "b", "c", "d"],  # text: not a number, not reported
            "flag": [True, False, True, False],  # booleans are not numeric columns
        }
    )
    return TabularBenchmark(frame, SPACE, ARCHS, "val_200", test_metric="test_200",
                            fidelities=[Fidelity("val_12", 12)], objective_epochs=200)


def test_numeric_columns_and_row(wide_bench):
    assert wide_bench.numeric_columns == ["index", "val_12", "val_200", "test_12", "test_200", "params_M",
                                          "flops_M", "training_iteration", "done"]
    row = wide_bench.numeric_row(ARCHS[3])
    assert row["index"] == 13 and isinstance(row["index"], int)
    assert row["params_M"] == 0.7 and isinstance(row["params_M"], float) and row["val_200"] == 83.0
    with pytest.raises(UnknownArchitectureError):
        wide_bench.numeric_row(SPACE.make(["avg_pool_3x3"] * 6))


def test_tabular_reports_every_numeric_column(wide_bench):
    """Params, FLOPs, ... at every rung; a fidelity column from its rung on; the test metric only at the end."""
    results = run_all(local_tabular(wide_bench)(config=ARCHS[0].to_config()))
    first, last = results
    # what ASHA compares is untouched: the objective key holds each rung's value, iterations count rungs
    assert [r["val_200"] for r in results] == [60.0, 91.0]
    assert [r["training_iteration"] for r in results] == [1, 2]
    assert [r["done"] for r in results] == [False, True]
    for result in results:
        assert (result["index"], result["params_M"], result["flops_M"], result["test_12"]) == (10, 1.5, 200.0, 59.0)
        assert result["val_12"] == 60.0
        assert "note" not in result and "flag" not in result
    assert "test_200" not in first and last["test_200"] == 90.5
    assert first["fidelity"] == "val_12" and last["fidelity"] == "val_200"


def test_tabular_every_column_through_checkpoint_and_reset(wide_bench):
    cls = local_tabular(wide_bench)
    trainable = cls(config=ARCHS[0].to_config())
    trainable.step()
    assert trainable.reset_config(ARCHS[3].to_config()) is True
    first = trainable.step()
    assert (first["params_M"], first["index"], first["val_12"], first["val_200"]) == (0.7, 13, 50.0, 50.0)
    resumed = cls(config=ARCHS[1].to_config())
    resumed.load_checkpoint({"rung": 1})
    last = resumed.step()
    assert (last["val_12"], last["val_200"], last["test_200"], last["params_M"]) == (40.0, 80.0, 79.0, 0.1)


def test_tabular_steps_stay_fast(nb201_table_path):
    """Thousands of tabular trials a second: reporting every column must not slow a trial down."""
    import time

    real = TabularBenchmark.from_csv(nb201_table_path, "cifar10valid_val_acc_200ep",
                                     test_metric="cifar10_test_acc_200ep",
                                     fidelities="cifar10valid_val_acc_12ep:12", objective_epochs=200)
    trainable = local_tabular(real)(config=real.architectures[0].to_config())
    configs = [a.to_config() for a in real.architectures[:2000]]
    start = time.perf_counter()
    for config in configs:
        trainable.reset_config(config)
        trainable.step()
        result = trainable.step()
    took = time.perf_counter() - start
    assert {"params_M_cifar10", "flops_M_cifar10", "nb201_index", "cifar10_test_acc_200ep"} <= set(result)
    assert took < 2.0, f"2000 tabular trials took {took:.2f} s"
