"""Multi-objective mode of ``raynas bench``: hypervolume against a table's true Pareto front.

    raynas bench --table ../shared/benchmarks/nb201/nb201_cifar10.csv \\
        --objectives cifar10valid_val_acc_200ep:max,flops_M_cifar10:min --computed flops_M_cifar10 \\
        --reference 70,222.86 --searchers random,regevo,gpnas,bonas --seeds 20 --out pareto.json

Protocol: each searcher proposes architectures one after another (or
``--concurrency`` at a time, results in a seeded random order, as in the
single-objective bench). The first objective not listed in ``--computed`` is
the *learned* one, the value a trial reports. The ``--computed`` columns are
known functions of the architecture, read from the table whenever a searcher
asks (:class:`~raynas.pareto.ComputedObjective`). After the first ``k``
distinct queries (k = 50, 100, 200 up to ``--max-queries``), the
**hypervolume ratio** is the hypervolume of their values divided by that of
the table's whole Pareto front, against the reference point (``--reference``,
in the objectives' own units; default: each objective's worst value in the
table). The JSON holds, per searcher, ``hypervolume_ratio``
(``{"50": mean, ...}``), the per-seed ratios, their standard errors and the
searcher's time; and, at the top, the reference point, the true front's size
and hypervolume.

This module does not import Ray.
"""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any, Mapping, Sequence

import torch

from raynas.architecture import Architecture
from raynas.bench import distinct_results
from raynas.benchmarks.tabular import TabularBenchmark
from raynas.methods import make_method
from raynas.pareto import ComputedObjective, hypervolume, orient, parse_objectives, pareto_mask

#: Query counts at which the hypervolume ratio is reported.
HV_AT: tuple[int, ...] = (50, 100, 200)


def split_objectives(objectives: Sequence[tuple[str, str]], computed: Sequence[str]) -> tuple[tuple[str, str],
                                                                                            list[tuple[str, str]]]:
    """The learned objective and the computed ones; exactly one objective may be learned."""
    unknown = sorted(set(computed) - {name for name, _ in objectives})
    if unknown:
        raise ValueError(f"--computed {unknown} are not among --objectives {[n for n, _ in objectives]}")
    learned = [o for o in objectives if o[0] not in computed]
    if len(learned) != 1:
        raise ValueError(
            f"a search learns exactly one objective (the trial's metric); the others must be --computed "
            f"(known functions of the architecture, e.g. FLOPs), got learned {[n for n, _ in learned]}")
    return learned[0], [o for o in objectives if o[0] in computed]


def learned_objective_of(objectives: str, computed: Sequence[str], objective: str | None = None) -> tuple[str, str]:
    """The learned column and mode of ``--objectives`` (with ``--computed``); an ``--objective`` given
    beside them must be that column."""
    (learned, mode), _ = split_objectives(parse_objectives(objectives), computed)
    if objective not in (None, learned):
        raise ValueError(f"--objective {objective!r} differs from the learned one of --objectives, "
                         f"{learned!r}: give only --objectives")
    return learned, mode


def computed_objectives(bench: TabularBenchmark, computed: Sequence[tuple[str, str]],
                        references: Mapping[str, float] | None = None) -> list[ComputedObjective]:
    """Each computed column of ``bench`` as an objective read from the table (with its reference, if given)."""
    for name, _ in computed:
        bench.value(bench.architectures[0], name)  # a missing column fails here, naming the table's columns
    return [ComputedObjective(name, mode, lambda arch, c=name: bench.value(arch, c), (references or {}).get(name))
            for name, mode in computed]


def objective_matrix(bench: TabularBenchmark, archs: Sequence[Architecture],
                     objectives: Sequence[tuple[str, str]]) -> torch.Tensor:
    """``len(archs) x m`` values of ``objectives``, oriented to maximisation."""
    rows = [[bench.value(a, name) for name, _ in objectives] for a in archs]
    values = torch.tensor(rows, dtype=torch.float64).reshape(len(archs), len(objectives))
    return orient(values, [mode for _, mode in objectives])


def run_pareto_one(bench: TabularBenchmark, name: str, seed: int, objectives: Sequence[tuple[str, str]],
                   computed: Sequence[str], reference: torch.Tensor, front_hv: float, max_queries: int,
                   concurrency: int = 1, options: Mapping[str, Any] | None = None,
                   reference_units: Sequence[float] | None = None) -> dict[str, Any]:
    """One search of ``name``: its hypervolume ratio after each of :data:`HV_AT` distinct queries.

    ``reference_units`` (the user's reference point, in the objectives' units) also bounds the
    computed objectives of the searchers' acquisition (:class:`~raynas.pareto.ComputedObjective`).
    """
    learned, known = split_objectives(objectives, computed)
    bounds = dict(zip([n for n, _ in objectives], reference_units)) if reference_units is not None else None
    search = make_method(name, bench.space, mode=learned[1], seed=seed,
                         computed_objectives=computed_objectives(bench, known, bounds), **dict(options or {}))
    suggest_seconds: list[float] = []
    evaluated = [arch for arch, _ in distinct_results(search, bench, f"{name}_{seed}", seed, max_queries,
                                                       concurrency, suggest_seconds, learned[0])]
    Y = objective_matrix(bench, evaluated, objectives)
    ratios = {str(k): hypervolume(Y[:k], reference) / front_hv for k in HV_AT if k <= max_queries}
    return {"seed": seed, "queries": len(evaluated), "hypervolume_ratio": ratios,
            "suggest_seconds": round(sum(suggest_seconds), 3)}


def run_pareto_bench(bench: TabularBenchmark, names: Sequence[str], objectives: Sequence[tuple[str, str]],
                     computed: Sequence[str], reference: Sequence[float] | None, seeds: int, max_queries: int,
                     concurrency: int = 1, first_seed: int = 0,
                     options: Mapping[str, Mapping[str, Any]] | None = None, progress: bool = True
                     ) -> dict[str, Any]:
    """Every searcher of ``names`` on ``seeds`` seeds; the report described in the module docstring."""
    split_objectives(objectives, computed)  # fails before any search starts
    modes = [m for _, m in objectives]
    table = objective_matrix(bench, bench.architectures, objectives)  # every cell, maximised
    # default reference: each objective's worst value in the table (oriented back to its own units)
    ref_units = list(reference) if reference is not None else orient(table.min(dim=0).values, modes).tolist()
    if len(ref_units) != len(objectives):
        raise ValueError(f"--reference has {len(ref_units)} values for {len(objectives)} objectives")
    ref = orient(torch.tensor([ref_units], dtype=torch.float64), modes)[0]
    size, front_hv = int(pareto_mask(table).sum()), hypervolume(table, ref)
    if front_hv <= 0:
        raise ValueError(f"--reference {ref_units} is not dominated by any architecture of the table: "
                         "every hypervolume would be 0; choose a worse reference point")
    report: dict[str, Any] = {
        "table": bench.source, "objectives": [{"column": n, "mode": m, "computed": n in computed}
                                              for n, m in objectives],
        "reference": ref_units, "true_front": {"size": size, "hypervolume": front_hv},
        "seeds": seeds, "first_seed": first_seed, "max_queries": max_queries, "concurrency": concurrency,
        "searchers": {},
    }
    for name in names:
        runs = []
        for seed in range(first_seed, first_seed + seeds):
            runs.append(run_pareto_one(bench, name, seed, objectives, computed, ref, front_hv, max_queries,
                                       concurrency, (options or {}).get(name), ref_units))
            if progress:
                print(f"{name} seed {seed}: " + ", ".join(f"{k}: {v:.4f}" for k, v in
                                                       runs[-1]["hypervolume_ratio"].items()), flush=True)
        block: dict[str, Any] = {"hypervolume_ratio": {}, "hypervolume_ratio_se": {}, "runs": runs,
                                 "options": dict((options or {}).get(name, {})),
                                 "suggest_seconds_mean": statistics.fmean(r["suggest_seconds"] for r in runs)}
        for k in runs[0]["hypervolume_ratio"]:
            values = [r["hypervolume_ratio"][k] for r in runs]
            block["hypervolume_ratio"][k] = statistics.fmean(values)
            block["hypervolume_ratio_se"][k] = (statistics.stdev(values) / math.sqrt(len(values))
                                                if len(values) > 1 else None)
        report["searchers"][name] = block
    return report


# ---------------------------------------------------------------------- CLI glue
def add_pareto_arguments(parser: argparse.ArgumentParser) -> None:
    """``raynas bench``'s multi-objective flags."""
    parser.add_argument("--objectives", metavar="COL:max|min,...",
                        help="several objectives (multi-objective mode): hypervolume against the table's "
                             "Pareto front after 50/100/200 queries instead of queries to the optimum")
    parser.add_argument("--computed", metavar="COL,...", default="",
                        help="with --objectives: the columns known before training (parameters, FLOPs): "
                             "computed from the table, never modelled; all objectives but one must be")
    parser.add_argument("--constraint", metavar="COL<=V", action="append", default=[],
                        help="a bound on a column known before training (e.g. flops_M_cifar10<=60; repeatable): "
                             "searchers never suggest a cell outside it, and the optimum counted is the best "
                             "cell within it")
    parser.add_argument("--reference", metavar="V,V,...",
                        help="with --objectives: the hypervolume's reference point, one value per objective "
                             "in its own units (default: each objective's worst value in the table)")


def pareto_mode_requested(args: argparse.Namespace) -> bool:
    if getattr(args, "objectives", None):
        if getattr(args, "constraint", None):
            raise ValueError("--constraint applies to a single --objective for now, not with --objectives")
        return True
    for flag in ("computed", "reference"):
        if getattr(args, flag, None):
            raise ValueError(f"--{flag} applies only with --objectives")
    return False


def run_pareto_from_args(args: argparse.Namespace, names: Sequence[str], options: Mapping[str, Mapping[str, Any]],
                         position_columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the flags, load the table, run, write ``--out`` and print one line per searcher."""
    import json
    import os

    objectives = parse_objectives(args.objectives)
    computed = [c.strip() for c in args.computed.split(",") if c.strip()]
    (learned, mode), _ = split_objectives(objectives, computed)
    reference = None
    if args.reference:
        try:
            reference = [float(v) for v in args.reference.split(",")]
        except ValueError:
            raise ValueError(f"--reference: expected comma-separated numbers, got {args.reference!r}") from None
    bench = TabularBenchmark.from_csv(args.table, learned, space=args.space, mode=mode,
                                      position_columns=position_columns)
    report = run_pareto_bench(bench, names, objectives, computed, reference, args.seeds, args.max_queries,
                              args.concurrency, args.first_seed, options, progress=not args.quiet)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    for name, block in report["searchers"].items():
        print(f"{name}: hypervolume ratio " + ", ".join(
            f"{k}: {v:.4f}" for k, v in block["hypervolume_ratio"].items()))
    print(f"wrote {os.path.abspath(args.out)}")
    return report


__all__ = ["HV_AT", "add_pareto_arguments", "learned_objective_of", "pareto_mode_requested", "run_pareto_bench", "run_pareto_from_args",
           "run_pareto_one", "split_objectives"]
