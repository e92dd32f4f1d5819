"""Search NAS-Bench-201 (CIFAR-10) with regularized evolution through Ray Tune, answered by the table.

    .venv/bin/python examples/nb201_tabular_search.py [path/to/nb201_cifar10.csv]

Trials answer the 12-epoch column first and the 200-epoch column second, so
ASHA stops poor cells after their cheap rung.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from raynas.benchmarks import TabularBenchmark
from raynas.searchers import RegularizedEvolutionSearcher
from raynas.trainables import TabularTrainable

DEFAULT_TABLE = Path(__file__).resolve().parents[1].parent / "shared/benchmarks/nb201/nb201_cifar10.csv"


def main(table: str) -> None:
    bench = TabularBenchmark.from_csv(
        table,
        objective="cifar10valid_val_acc_200ep",
        test_metric="cifar10_test_acc_200ep",
        fidelities="cifar10valid_val_acc_12ep:12",
        objective_epochs=200,
    )
    searcher = RegularizedEvolutionSearcher(bench.space, seed=0)
    tuner = tune.Tuner(
        tune.with_parameters(TabularTrainable, benchmark=bench),
        param_space={"benchmark": "nb201"},  # non-empty, so Tune hands metric/mode to the searcher
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            metric=bench.objective,
            mode="max",
            num_samples=100,
            max_concurrent_trials=4,
            scheduler=ASHAScheduler(max_t=len(bench.fidelities), grace_period=1, reduction_factor=2),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(verbose=0),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print("best cell:", best.metrics["arch_str"])
    print("validation accuracy:", best.metrics[bench.objective])
    print("test accuracy:", bench.value(bench.space.parse(best.metrics["arch_str"]), bench.test_metric))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_TABLE))
