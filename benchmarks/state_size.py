"""How the searcher state scales: pickled size and the time of one ``save`` at 100, 1,000 and 5,000 observations.

For each searcher (random, regevo, bonas, gpnas, nasbot) a fresh ``RaynasSearcher`` on NAS-Bench-201 is fed
N distinct architectures with synthetic values through ``search.add_evaluated`` (no model is fitted: the
size is that of the state Tune snapshots; fitted hyperparameters add a few numbers). One ``save`` is what
Tune does at every experiment snapshot: ``get_state`` (the search's ``state_dict``: every observation as
architecture JSON, value, trial id and fidelity; failed and pending trials; RNG states; the method's extra
state: regevo's population, GP-NAS/NASBOT hyperparameters, BONAS's trained GCN as a torch blob) pickled and
written atomically to one file. With ``--bonas-blob`` the BONAS predictor is also fitted once on 100
observations, so that its blob (the same size whatever N) is measured and included.

    .venv/bin/python benchmarks/state_size.py --out benchmarks_out/state_size.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import tempfile
import time

import numpy as np

SEARCHERS = ("random", "regevo", "bonas", "gpnas", "nasbot")
SIZES = (100, 1000, 5000)


def synthetic_value(arch, rng: np.random.Generator) -> float:
    """A value with some structure (convolutions help) and noise; only its presence matters here."""
    return float(50.0 + sum(3.0 if "conv" in op else 1.0 for op in arch.ops) + rng.normal())


def measure(name: str, n: int, archs, rng: np.random.Generator, repeats: int, blob: bytes | None) -> dict:
    from raynas.searchers import make_searcher
    from raynas.spaces import NB201Space

    searcher = make_searcher(name, NB201Space(), metric="acc", mode="max", seed=0)
    start = time.perf_counter()
    for arch in archs[:n]:
        searcher.search.add_evaluated(arch, synthetic_value(arch, rng), fidelity=200.0)
    feed_s = time.perf_counter() - start
    if blob is not None and name == "bonas":
        searcher.search.predictor.load_bytes(blob)  # a trained GCN, as a BONAS search holds after its first fit
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "searcher-state.pkl")
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            searcher.save(path)
            times.append(time.perf_counter() - start)
        size = os.path.getsize(path)
        start = time.perf_counter()
        fresh = make_searcher(name, NB201Space(), metric="acc", mode="max", seed=0)
        fresh.restore(path)
        restore_s = time.perf_counter() - start
    state = searcher.get_state()
    extra = pickle.dumps(state["search"]["extra"])
    observations = pickle.dumps(state["search"]["observations"])
    return {
        "observations": n, "bytes": size, "bytes_per_observation": round(size / n, 1),
        "observations_bytes": len(observations), "extra_state_bytes": len(extra),
        "save_s_median": float(np.median(times)), "save_s_max": float(np.max(times)),
        "restore_s": restore_s, "feed_s": feed_s,
    }


def bonas_blob(archs, rng: np.random.Generator) -> bytes:
    from raynas.spaces import NB201Space
    from raynas.surrogates.bonas import BONASPredictor

    sample = archs[:100]
    predictor = BONASPredictor(NB201Space()).fit(sample, [synthetic_value(a, rng) for a in sample])
    return predictor.to_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searchers", default=",".join(SEARCHERS))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeats", type=int, default=3, help="saves timed per point; default 3")
    parser.add_argument("--bonas-blob", action="store_true", help="fit BONAS's GCN once to include its blob")
    parser.add_argument("--out", default="state_size.json", metavar="FILE.json")
    args = parser.parse_args(argv)
    from raynas.spaces import NB201Space

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    archs = list(NB201Space().enumerate())
    np.random.default_rng(0).shuffle(archs)
    if max(sizes) > len(archs):
        raise SystemExit(f"at most {len(archs)} distinct NB201 architectures")
    blob = bonas_blob(archs, np.random.default_rng(1)) if args.bonas_blob else None
    report: dict = {"python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
                    "bonas_blob_bytes": None if blob is None else len(blob), "searchers": {}}
    for name in [s.strip() for s in args.searchers.split(",") if s.strip()]:
        rows = []
        for n in sizes:
            row = measure(name, n, archs, np.random.default_rng(n), args.repeats, blob)
            rows.append(row)
            print(f"{name:7s} n={n:5d}  {row['bytes'] / 1024:9.1f} KiB  save {row['save_s_median'] * 1e3:8.2f} ms  "
                  f"restore {row['restore_s'] * 1e3:8.1f} ms  (feeding {row['feed_s']:.1f} s)", flush=True)
        report["searchers"][name] = rows
        with open(args.out, "w") as handle:  # after each searcher: a partial run still leaves numbers
            json.dump(report, handle, indent=2)
    print(f"wrote {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
