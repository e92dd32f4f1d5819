"""``suggest`` latency of the model-based searchers at a given number of observations, written as JSON.

Usage (from the repository root)::

    .venv/bin/python benchmarks/suggest_latency.py                          # nasbot, gpnas, bonas at 300
    .venv/bin/python benchmarks/suggest_latency.py --searchers bonas --observations 500 --calls 60

Each searcher is the Ray-free method of that name (:mod:`raynas.methods`;
Ray is not imported), driven through ``suggest`` / ``complete`` (the calls
its Ray Tune searcher makes) on the NAS-Bench-201 CIFAR-10 table (its own
suggestions, answered from the table) until ``--observations`` results are
in; then ``--calls`` further ``suggest`` + ``complete`` rounds are timed.
The calls span the periodic work (GP hyperparameter refits, BONAS's GCN retraining, which it
spreads over the next ``retrain_every`` suggestions), so their p95 is the
latency a Tune driver sees at that size. ``raynas bench`` reports the p95
over whole searches instead, most of whose calls come earlier.
Writes ``benchmarks_out/suggest_latency.json`` (``--out``) with the load
average before and after: timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

DEFAULT_TABLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "benchmarks", "nb201", "nb201_cifar10.csv")


def measure(bench, name: str, observations: int, calls: int, seed: int = 0) -> dict:
    from raynas.methods import make_method

    search = make_method(name, bench.space, mode=bench.mode, seed=seed)
    times = []
    for k in range(observations + calls):
        start = time.perf_counter()
        arch = search.suggest(f"t{k}")
        elapsed = time.perf_counter() - start
        if arch is None:
            raise ValueError(f"{name} exhausted the space after {k} suggestions")
        search.complete(f"t{k}", bench.value(arch), fidelity=1)
        if k >= observations:
            times.append(elapsed)
    return {"observations": observations, "calls": calls, "p50": float(np.percentile(times, 50)),
            "p95": float(np.percentile(times, 95)), "max": float(max(times))}


def main(argv: list[str] | None = None) -> int:
    from raynas.benchmarks.tabular import TabularBenchmark
    from raynas.methods import check_methods, ordinary_methods

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=DEFAULT_TABLE)
    parser.add_argument("--objective", default="cifar10valid_val_acc_200ep")
    parser.add_argument("--searchers", default="nasbot,gpnas,bonas",
                        help=f"comma-separated searcher names ({', '.join(ordinary_methods())}); default nasbot,gpnas,bonas")
    parser.add_argument("--observations", type=int, default=300)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--out", default=os.path.join("benchmarks_out", "suggest_latency.json"))
    args = parser.parse_args(argv)
    try:
        names = check_methods([n.strip() for n in args.searchers.split(",") if n.strip()], compression_ok=False)
    except ValueError as error:
        parser.error(str(error))
    if not os.path.exists(args.table):
        parser.error(f"benchmark table {args.table!r} not found (see ../shared/benchmarks/README)")
    bench = TabularBenchmark.from_csv(args.table, args.objective)
    report = {"table": os.path.abspath(args.table), "load_average_before": os.getloadavg(), "searchers": {}}
    for name in names:
        report["searchers"][name] = measure(bench, name, args.observations, args.calls)
        print(name, json.dumps(report["searchers"][name]), flush=True)
    report["load_average_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"wrote {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
