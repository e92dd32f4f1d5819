"""Search NAS-Bench-201 (CIFAR-10) with BONAS through Ray Tune, answered by the table, with ASHA.

    .venv/bin/python examples/nb201_tabular_search.py [path/to/nb201_cifar10.csv]

Trials answer the 12-epoch column first and the 200-epoch column second, so
ASHA stops poor cells after their cheap rung. This is the README's "Python
API" example: Tune prints nothing but errors (``verbose=0``), trial folders
are named ``TabularTrainable_<id>`` (:func:`raynas.searchers.trial_dirname`)
and the result is printed as the cell's official string.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from raynas.benchmarks import TabularBenchmark
from raynas.searchers import make_searcher, trial_dirname
from raynas.trainables import TabularTrainable

DEFAULT_TABLE = Path(__file__).resolve().parents[1].parent / "shared/benchmarks/nb201/nb201_cifar10.csv"


def main(table: str, num_samples: int = 100, storage: str | None = None) -> tune.ResultGrid:
    bench = TabularBenchmark.from_csv(
        table,
        objective="cifar10valid_val_acc_200ep",
        test_metric="cifar10_test_acc_200ep",
        fidelities="cifar10valid_val_acc_12ep:12",
        objective_epochs=200,
    )
    searcher = make_searcher("bonas", bench.space, seed=0)
    tuner = tune.Tuner(
        tune.with_parameters(TabularTrainable, benchmark=bench),
        param_space={"benchmark": "nb201"},  # non-empty, so Tune hands metric/mode to the searcher
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            metric=bench.objective,  # metric and mode here: ASHA needs them too
            mode="max",
            num_samples=num_samples,
            max_concurrent_trials=4,
            scheduler=ASHAScheduler(max_t=len(bench.fidelities), grace_period=1, reduction_factor=3),
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,  # TabularTrainable_<id>, not the architecture JSON
        ),
        run_config=tune.RunConfig(verbose=0, storage_path=storage),
    )
    results = tuner.fit()
    full = results.get_dataframe().query("training_iteration == 2")  # the trials ASHA let reach 200 epochs
    best = full.loc[full[bench.objective].idxmax()]
    print(f"{len(full)} of {len(results)} trials reached 200 epochs; best cell: {best['arch_str']}")
    print(f"validation accuracy {best[bench.objective]:.2f}, test accuracy {best[bench.test_metric]:.2f} "
          f"(the table's best: {bench.optimum[1]:.2f})")
    return results


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_TABLE))
