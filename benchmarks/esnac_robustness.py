"""ESNAC robustness: does a search with the default options ever abort on a numerical failure?

Usage (from the repository root)::

    nice .venv/bin/python benchmarks/esnac_robustness.py                       # 100 seeds x 30 suggestions
    nice .venv/bin/python benchmarks/esnac_robustness.py --seeds 20 --first-seed 1228 --suggestions 20

For each seed, :class:`raynas.search.esnac.ESNAC` with its default options
(``ESNAC(space, seed=seed)``) searches the compression space of a tiny
teacher (:func:`raynas.teachers.tiny_teacher`: a conv stem, a torchvision ``BasicBlock`` with
a downsample shortcut, two ``Linear`` layers, on 1x8x8 inputs). Each
suggestion is answered at once by a deterministic synthetic objective of the
architecture (:func:`synthetic_objective`) before the next one is asked for,
as a Tune run with one worker would. A seed *fails* when ``suggest`` raises:
in a Tune run that exception aborts ``Tuner.fit``.

Numerical trouble that ESNAC recovers from is logged as a warning (loggers
``raynas.search.esnac`` and ``raynas.bo``); the number of such warnings per seed is reported
(``fallbacks``) next to a digest of the suggestions, so two runs of the script
(before and after a change) can be compared seed by seed.

Writes ``benchmarks_out/esnac_robustness.json`` (``--out``): ``seeds``,
``suggestions``, ``failures``, ``failed_seeds`` (seed and exception text),
``seconds`` (wall time), ``fallbacks`` and ``per_seed``.

The figures are in the README (Results) and ``docs/measurements.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from raynas.teachers import tiny_teacher  # noqa: E402
from raynas.search.esnac import ESNAC  # noqa: E402
from raynas.spaces.compression import CompressionSpace  # noqa: E402

INPUT_SHAPE = (1, 8, 8)




def synthetic_objective(space: CompressionSpace, arch) -> float:
    """Deterministic and cheap: wide convolutions are good, batch norms cost (as ``tests/esnac``)."""
    d = space.descriptors(arch)
    return float(sum(np.log2(x.out_channels) for x in d if x.kind == "conv") - 2 * sum(x.kind == "bn" for x in d))


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_seed(space: CompressionSpace, seed: int, suggestions: int) -> dict[str, Any]:
    """One search of ``suggestions`` sequential suggest/complete rounds; the outcome, never an exception."""
    counter = _Counter()
    logger = logging.getLogger("raynas")  # ESNAC's own warnings and the engine's fit fallbacks (raynas.bo)
    logger.addHandler(counter)
    search = ESNAC(space, seed=seed)
    described: list[str] = []
    start = time.perf_counter()
    error = None
    try:
        for k in range(suggestions):
            arch = search.suggest(f"t{k}")
            described.append(space.describe(arch))
            search.complete(f"t{k}", synthetic_objective(space, arch))
    except Exception as exc:  # noqa: BLE001 - the benchmark records whatever aborts a search
        error = {"suggestion": len(described) + 1, "type": type(exc).__name__, "message": str(exc),
                 "where": traceback.format_exc(limit=-3)}
    finally:
        logger.removeHandler(counter)
    return {
        "seed": seed,
        "ok": error is None,
        "error": error,
        "completed": len(search.observations),
        "fallbacks": len(counter.messages),
        "fallback_messages": counter.messages,
        "digest": hashlib.sha256("\n".join(described).encode()).hexdigest()[:16],
        "best": max((o.value for o in search.observations), default=None),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=1228, help="first seed (1228: the range of the report)")
    parser.add_argument("--suggestions", type=int, default=30, help="suggestions per seed")
    parser.add_argument("--out", default=os.path.join("benchmarks_out", "esnac_robustness.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the whole process")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    space = CompressionSpace(tiny_teacher(), INPUT_SHAPE)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    start = time.perf_counter()
    per_seed = []
    for seed in seeds:
        result = run_seed(space, seed, args.suggestions)
        per_seed.append(result)
        status = "ok" if result["ok"] else f"FAILED at suggestion {result['error']['suggestion']}: " \
            f"{result['error']['type']}: {result['error']['message'].splitlines()[0]}"
        print(f"seed {seed}: {status} ({result['fallbacks']} fallbacks, {result['seconds']:.1f}s, "
              f"{result['digest']})", flush=True)
    seconds = time.perf_counter() - start
    failed = [{"seed": r["seed"], "suggestion": r["error"]["suggestion"],
               "exception": f"{r['error']['type']}: {r['error']['message']}"} for r in per_seed if not r["ok"]]
    report = {
        "benchmark": "esnac_robustness",
        "seeds": seeds,
        "suggestions": args.suggestions,
        "failures": len(failed),
        "failed_seeds": failed,
        "fallbacks": sum(r["fallbacks"] for r in per_seed),
        "seconds": round(seconds, 1),
        "torch": torch.__version__,
        "per_seed": per_seed,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"{len(failed)} of {len(seeds)} seeds failed ({report['fallbacks']} fallbacks logged), "
          f"{seconds:.0f}s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
