"""The ``raynas`` command line: ``search``, ``analyze`` and ``bench``.

Ray is imported only by the commands that need it, so ``raynas bench`` and
``--help`` start fast and the core stays importable without Ray.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Sequence

from raynas.benchmarks.tabular import BenchmarkError
from raynas.cli_args import add_data_location_arguments
from raynas.compress import add_compress_parser  # imports neither torch nor Ray
from raynas.methods import COMPRESSION_ONLY, check_methods, ordinary_methods  # imports no method, no Ray

#: The searcher names usable on ordinary spaces, for help texts (from the registry, raynas.methods).
SEARCHER_NAMES = ", ".join(ordinary_methods()) + "".join(
    f"; {name} only through 'raynas compress'" for name in sorted(COMPRESSION_ONLY)
)


def _search_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="run an architecture search with Ray Tune (local Ray, or the cluster in RAY_ADDRESS)",
        description="Run an architecture search with Ray Tune. Without --benchmark, trials train the "
        "network of --space (nb201, nb101, macro_cnn, macro_mlp, mobilenet) on --dataset: scikit-learn's digits by default (offline, "
        "CPU), or CIFAR-10/100 from --data-dir (fetched only with --download), on GPUs with "
        "--gpus-per-trial; with --benchmark, they answer from the table.",
    )
    p.add_argument("--searcher", default="regevo", help=f"searcher name ({SEARCHER_NAMES}); default regevo")
    p.add_argument("--space", default="nb201",
                   help="search space name; default nb201 (real training: nb201, nb101, macro_cnn, macro_mlp, mobilenet)")
    p.add_argument("--benchmark", metavar="CSV", help="tabular benchmark CSV to answer trials from")
    p.add_argument("--objective", metavar="COL", help="objective column of --benchmark")
    p.add_argument("--test-metric", metavar="COL", help="test metric column of --benchmark (reported only)")
    p.add_argument("--fidelities", metavar="COL:EPOCHS,...",
                   help="lower-fidelity columns of --benchmark, cheapest first (rungs for ASHA)")
    p.add_argument("--objective-epochs", type=float, help="epochs the objective column stands for")
    p.add_argument("--mode", choices=("max", "min"), default="max")
    p.add_argument("--num-samples", type=int, default=32, help="trials (architectures) to run; default 32")
    p.add_argument("--max-concurrent", type=int, default=2, help="trials running at once; default 2")
    p.add_argument("--scheduler", choices=("asha", "none"), default="asha")
    p.add_argument("--grace-period", type=int, default=3, help="ASHA grace period in epochs; default 3")
    p.add_argument("--reduction-factor", type=int, default=3, help="ASHA reduction factor; default 3")
    p.add_argument("--epochs", type=int,
                   help="training epochs per trial (real training); default 10 on digits, on CIFAR the "
                   "published budget (nb201: 200, nb101: 108)")
    p.add_argument("--dataset", choices=("digits", "cifar10", "cifar100", "fake"), default="digits",
                   help="images to train on without --benchmark; default digits (offline); "
                   "fake: CIFAR-shaped random images (tests, throughput)")
    add_data_location_arguments(p)
    p.add_argument("--seconds-per-epoch", type=float, default=0.0,
                   help="simulated training time per epoch for benchmark trials")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial, fractions allowed (0.5: two trials share a GPU); default 0. "
                   "Fails at once when no node has them")
    p.add_argument("--wait-for-gpus", type=float, default=0.0, metavar="SECONDS",
                   help="on an autoscaling cluster, wait this long for nodes with the trial's GPUs/CPUs "
                   "before failing; default 0")
    p.add_argument("--storage", default="raynas_results",
                   help="where experiments are kept: a directory (on a cluster, mounted on every node) "
                   "or a URI Ray Tune writes to (s3://bucket/path, gs://..., file:///...)")
    p.add_argument("--name", help="experiment name (default: searcher, source and time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="resume the experiment --name (or the latest one under --storage)")


def _analyze_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="reload experiments, print their summaries, write tables, plots and report.html",
        description="Reload finished or interrupted experiments. Each DIR gets results.csv, best_so_far.png "
        "(regret against the table's optimum for tabular runs), pareto.png (value against params/FLOPs), "
        "best_arch.png and a self-contained report.html. With several DIRs, comparison.html and "
        "comparison.png overlay the runs (in --out).",
    )
    p.add_argument("directories", nargs="+", metavar="DIR", help="experiment directory printed by 'raynas search'")
    p.add_argument("--out", metavar="DIR",
                   help="where the comparison of several runs goes; default the first DIR")


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="sample efficiency of searchers on a tabular benchmark (no Ray runtime)")
    p.add_argument("--table", required=True, metavar="CSV")
    p.add_argument("--objective", required=True, metavar="COL")
    p.add_argument("--test-metric", metavar="COL")
    p.add_argument("--space", default="nb201", help="space of the table's rows; default nb201")
    p.add_argument("--mode", choices=("max", "min"), default="max")
    p.add_argument("--searchers", default="random,regevo",
                   help=f"comma-separated searcher names ({SEARCHER_NAMES}); default random,regevo")
    p.add_argument("--seeds", type=int, default=10, help="number of seeds; default 10")
    p.add_argument("--first-seed", type=int, default=0,
                   help="first seed (default 0): disjoint ranges split a measurement over processes")
    p.add_argument("--max-queries", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--out", default="bench.json", metavar="FILE.json")
    p.add_argument("--quiet", action="store_true", help="no per-seed progress lines")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw median/quartile regret curves of all searchers (log scale) into FILE.png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raynas", description="Bayesian-optimisation NAS on Ray Tune")
    sub = parser.add_subparsers(dest="command", required=True)
    _search_parser(sub)
    _analyze_parser(sub)
    _bench_parser(sub)
    add_compress_parser(sub)
    return parser


#: The signal that stopped the run ("SIGTERM" once raynas' handler ran), for the exit status.
_STOP_SIGNAL: dict[str, str | None] = {"name": None}
#: Exit statuses of an interrupted run (the shell's 128 + signal number).
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
#: Exit status when every trial failed or none reported the metric.
EXIT_NO_RESULTS = 1


def _stop_gracefully_on_sigterm(command: str = "search") -> None:
    """Treat SIGTERM like Ctrl+C: Tune stops the trials and snapshots experiment and searcher.

    ``ray job stop`` and Kubernetes stop a driver with SIGTERM (then SIGKILL
    after a grace period: ``RAY_JOB_STOP_WAIT_TIME_S``, a pod's
    ``terminationGracePeriodSeconds``), so a stopped search can be resumed
    with ``--resume`` without losing or repeating finished trials. Installed
    after ``ray.init`` (Ray's own SIGTERM handler would otherwise end the
    driver at once); hands over to Tune's graceful-stop handler (SIGUSR1's), or
    raises KeyboardInterrupt before Tune runs. A second SIGTERM kills. The run
    then exits with status 143. ``command``: ``search`` or ``compress``, for the messages.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _STOP_SIGNAL["name"] = "SIGTERM"
        print(f"raynas {command}: SIGTERM received, stopping the {command} run and saving its state",
              file=sys.stderr, flush=True)
        tune_handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if callable(tune_handler):
            tune_handler(signal.SIGUSR1, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)


def _interrupted_status() -> int:
    return EXIT_SIGTERM if _STOP_SIGNAL["name"] == "SIGTERM" else EXIT_SIGINT


def _run_outcome(command: str) -> int | None:
    """The exit status (with its message) of the run that just ended, from ``experiment.LAST_RUN``:
    ``None`` when it finished (or never ran), 130/143 when interrupted (the resume command printed),
    1 when no trial reported the metric (the first trial's error printed once)."""
    experiment = sys.modules.get("raynas.searchers.experiment")
    outcome = getattr(experiment, "LAST_RUN", None)
    if outcome is None or outcome.status == "finished":
        return None
    if outcome.status == "interrupted":
        what = "SIGTERM" if _STOP_SIGNAL["name"] == "SIGTERM" else "SIGINT"
        print(f"raynas {command}: interrupted ({what}); the state of {outcome.spec.experiment_dir} is saved, "
              f"{outcome.summary.get('trials', '?')} trials so far. Continue it with:\n  "
              f"{experiment.resume_command(outcome.spec)}", file=sys.stderr, flush=True)
        return _interrupted_status()
    detail = f"; the first trial's error:\n{outcome.first_error}" if outcome.first_error else ""
    print(f"raynas {command}: error: no trial reported {outcome.metric!r} (every trial failed or reported "
          f"no value; error.txt in each trial directory of {outcome.spec.experiment_dir}){detail}",
          file=sys.stderr, flush=True)
    return EXIT_NO_RESULTS


def _validate_search_args(args: argparse.Namespace) -> None:
    """What a new ``raynas search`` can get wrong, checked before Ray is even imported (about a second):
    the searcher name, the space, and for a tabular search the whole table (its objective, test and
    fidelity columns, numeric values, rows and architectures). Raises ValueError naming the problem."""
    check_methods([args.searcher], compression_ok=False)
    if args.benchmark is None:
        from raynas.registry import make_space

        make_space(args.space)
        return
    if not args.objective:
        raise ValueError("a benchmark search needs --objective (the column to optimise)")
    from raynas.benchmarks.tabular import TabularBenchmark

    TabularBenchmark.from_csv(args.benchmark, args.objective, space=args.space, mode=args.mode,
                              test_metric=args.test_metric, fidelities=args.fidelities,
                              objective_epochs=args.objective_epochs)


def cmd_search(args: argparse.Namespace) -> int:
    if not args.resume:
        _validate_search_args(args)  # errors within seconds, before Ray (and its import)
    from raynas.searchers.experiment import (
        SearchSpec, absolute_location, check_data, init_ray, join_location, latest_experiment, run_search,
        validate_spec,
    )

    if args.resume:
        if args.name:
            directory = join_location(absolute_location(args.storage), args.name)
        else:
            directory = latest_experiment(args.storage)
        spec = SearchSpec.load(directory)
        print(f"resuming {directory}")
    else:
        spec = SearchSpec(
            searcher=args.searcher, space=args.space, benchmark=args.benchmark, objective=args.objective,
            test_metric=args.test_metric, fidelities=args.fidelities, objective_epochs=args.objective_epochs,
            mode=args.mode, num_samples=args.num_samples, max_concurrent=args.max_concurrent,
            scheduler=args.scheduler, grace_period=args.grace_period, reduction_factor=args.reduction_factor,
            seed=args.seed, storage=args.storage, name=args.name, epochs=args.epochs,
            seconds_per_epoch=args.seconds_per_epoch, cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial, dataset=args.dataset, data_dir=args.data_dir,
            download=args.download, wait_for_gpus=args.wait_for_gpus,
        )
    if args.resume:
        validate_spec(spec)  # the table may have changed since: fail before Ray starts
    check_data(spec)  # before starting Ray: a missing data set fails in a second
    init_ray(log_to_driver=spec.benchmark is None)  # tabular workers print only noise (errors: error.txt)
    _stop_gracefully_on_sigterm("search")
    run_search(spec, resume=args.resume)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile

    from raynas.analysis import format_summary, prepare_run, write_comparison, write_run_report
    from raynas.searchers.experiment import filesystem, is_uri, join_location, load_results

    def write_at(location: str, write):
        """``write(local_dir)`` into ``location``: directly, or through a local copy for remote storage."""
        if not is_uri(location):
            return write(location)
        import pyarrow.fs

        fs, path = filesystem(location)
        with tempfile.TemporaryDirectory() as local:
            written = write(local)
            pyarrow.fs.copy_files(local, path, destination_filesystem=fs)
        for key in ("results_csv", "plot", "report"):
            if written.get(key):
                written[key] = join_location(location, os.path.basename(str(written[key])))
        return written

    runs = []
    for directory in args.directories:
        results, spec, metric, mode = load_results(directory)
        title = f"{spec.searcher} on {spec.name}"
        run = prepare_run(results.get_dataframe(), metric, mode,  # type: ignore[arg-type]
                          spec=dataclasses.asdict(spec), label=title, directory=spec.experiment_dir)
        summary = write_at(spec.experiment_dir,
                           lambda local, run=run, title=title: write_run_report(run, local, title))
        print(f"experiment: {spec.experiment_dir}")
        print(format_summary(summary, metric))
        runs.append(run)
    if len(runs) > 1:
        out = args.out or runs[0].directory
        compared = write_at(out, lambda local: write_comparison(runs, local))
        location = compared["report"] if not is_uri(out) else join_location(out, "comparison.html")
        print(f"comparison of {len(runs)} runs: {location}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from raynas.bench import run_bench, summary_line
    from raynas.benchmarks.tabular import TabularBenchmark

    # names first: a typo fails in a moment, before the table is loaded (tables are ordinary spaces)
    names = check_methods([n.strip() for n in args.searchers.split(",") if n.strip()], compression_ok=False)
    if not names:
        raise ValueError(f"--searchers names no searcher; choose from {', '.join(ordinary_methods())}")
    bench = TabularBenchmark.from_csv(
        args.table, args.objective, space=args.space, mode=args.mode, test_metric=args.test_metric
    )
    report = run_bench(bench, names, args.seeds, args.max_queries, args.concurrency, args.out,
                       progress=not args.quiet, first_seed=args.first_seed)
    for name, block in report["searchers"].items():
        print(summary_line(name, block))
    print(f"wrote {os.path.abspath(args.out)}")
    if args.plot:
        from raynas.bench import plot_bench

        print(f"wrote {os.path.abspath(plot_bench(report, args.plot))}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from raynas.compress import cmd_compress as run_compress

    # SIGTERM (ray job stop, Kubernetes) stops a compress run gracefully too, so --resume continues it.
    return run_compress(args, on_ray_started=lambda: _stop_gracefully_on_sigterm("compress"))


COMMANDS = {"search": cmd_search, "analyze": cmd_analyze, "bench": cmd_bench, "compress": cmd_compress}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _STOP_SIGNAL["name"] = None
    experiment = sys.modules.get("raynas.searchers.experiment")
    if experiment is not None:
        experiment.LAST_RUN = None  # an earlier run in this process says nothing about this one
    try:
        status = COMMANDS[args.command](args)
    except KeyboardInterrupt:  # a signal before Tune took over (Ray starting, say), or a second one
        what = "SIGTERM" if _STOP_SIGNAL["name"] == "SIGTERM" else "SIGINT"
        print(f"raynas {args.command}: interrupted ({what})", file=sys.stderr, flush=True)
        return _interrupted_status()
    except (BenchmarkError, FileNotFoundError, ValueError, KeyError) as exc:
        # a run that ended without results makes `compress` fail afterwards: say why, once
        outcome = _run_outcome(args.command) if args.command in ("search", "compress") else None
        if outcome is not None:
            return outcome
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"raynas {args.command}: error: {message}", file=sys.stderr)
        return 2
    if args.command in ("search", "compress"):
        return _run_outcome(args.command) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
