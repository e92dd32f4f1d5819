"""Join ``raynas bench`` JSON files of one measurement split over seed ranges (``--first-seed``).

Usage (from the repository root)::

    .venv/bin/raynas bench ... --seeds 40 --out part0.json
    .venv/bin/raynas bench ... --seeds 60 --first-seed 40 --out part1.json
    .venv/bin/python benchmarks/join_bench.py part0.json part1.json --out joined.json

See :func:`raynas.bench.join_reports` for what is recomputed and what is not.
"""

from __future__ import annotations

import argparse
import json
import sys

from raynas.bench import join_reports, summary_line, write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", metavar="PART.json")
    parser.add_argument("--out", required=True, metavar="FILE.json")
    args = parser.parse_args(argv)
    reports = []
    for path in args.parts:
        with open(path) as handle:
            reports.append(json.load(handle))
    try:
        joined = join_reports(reports)
    except ValueError as error:
        print(f"join_bench: {error}", file=sys.stderr)
        return 2
    write_json(joined, args.out)
    print(f"{joined['seeds']} seeds from seed {joined['first_seed']}")
    for name, block in joined["searchers"].items():
        print(summary_line(name, block))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
