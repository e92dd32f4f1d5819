"""Trials per second of a tabular search through ``tune.Tuner``, for every searcher, in one Ray session.

The protocol of the engine issue: NAS-Bench-201 CIFAR-10 answered from the
table (:class:`raynas.trainables.TabularTrainable`, one rung, no scheduler),
``max_concurrent_trials=4``, ``reuse_actors=True``, 150 trials per searcher,
one local Ray session for all of them (started once; its start is not timed).
A searcher's throughput is its trials divided by the wall-clock time of
``Tuner.fit``. With trials that answer at once, the driver's event loop is the
bottleneck, so this measures how long ``suggest`` and the result callbacks
hold it; real trials (minutes each) hide it.

Writes JSON: per searcher ``trials``, ``seconds``, ``trials_per_second``,
``ratio_to_random`` and the best objective found, plus the machine's load.

    python benchmarks/tune_throughput.py --out benchmarks_out/tune_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

DEFAULT_TABLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "benchmarks", "nb201", "nb201_cifar10.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=DEFAULT_TABLE, help="NB201 CSV (default ../shared/benchmarks/nb201/...)")
    parser.add_argument("--objective", default="cifar10valid_val_acc_200ep")
    parser.add_argument("--searchers", default="random,regevo,bonas,gpnas,nasbot",
                        help="comma-separated searcher names; random first (the reference)")
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks_out/tune_throughput.json")
    args = parser.parse_args(argv)

    from raynas.methods import check_methods

    names = check_methods([n.strip() for n in args.searchers.split(",") if n.strip()], compression_ok=False)
    if not os.path.exists(args.table):
        print(f"table {args.table} not found (the NB201 table lives in ../shared/benchmarks)", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import tune

    from raynas.benchmarks.tabular import TabularBenchmark
    from raynas.searchers import make_searcher
    from raynas.trainables import TabularTrainable

    bench = TabularBenchmark.from_csv(args.table, args.objective)
    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False, configure_logging=False)
    report = {"table": os.path.abspath(args.table), "objective": args.objective, "trials": args.trials,
              "concurrency": args.concurrency, "seed": args.seed, "load_before": os.getloadavg()[0],
              "searchers": {}}
    storage = tempfile.mkdtemp(prefix="raynas-throughput-")
    try:
        for name in names:
            searcher = make_searcher(name, bench.space, metric=bench.objective, mode=bench.mode, seed=args.seed)
            tuner = tune.Tuner(
                tune.with_parameters(TabularTrainable, benchmark=bench),
                param_space={"benchmark": "nb201"},
                tune_config=tune.TuneConfig(search_alg=searcher, metric=bench.objective, mode=bench.mode,
                                            num_samples=args.trials, max_concurrent_trials=args.concurrency,
                                            reuse_actors=True),
                run_config=tune.RunConfig(name=f"throughput-{name}", storage_path=storage, verbose=0),
            )
            start = time.perf_counter()
            results = tuner.fit()
            seconds = time.perf_counter() - start
            frame = results.get_dataframe()
            block = {"trials": len(frame), "seconds": seconds, "trials_per_second": len(frame) / seconds,
                     "best": float(frame[bench.objective].max()), "errors": len(results.errors)}
            report["searchers"][name] = block
            print(f"{name}: {block['trials']} trials in {seconds:.1f} s = {block['trials_per_second']:.2f} trials/s",
                  flush=True)
            write(report, args.out)  # after each searcher: a measurement cut short keeps what it has
    finally:
        ray.shutdown()
    print(f"wrote {os.path.abspath(args.out)}")
    return 0


def write(report: dict, path: str) -> None:
    ref = report["searchers"].get("random", {}).get("trials_per_second")
    for block in report["searchers"].values():
        block["ratio_to_random"] = block["trials_per_second"] / ref if ref else None
    report["load_after"] = os.getloadavg()[0]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(f"{path}.tmp", "w") as handle:
        json.dump(report, handle, indent=2)
    os.replace(f"{path}.tmp", path)


if __name__ == "__main__":
    sys.exit(main())
