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
from typing import Any, Sequence

from raynas.benchmarks.tabular import BenchmarkError, TabularBenchmark
from raynas.cli_args import add_data_location_arguments
from raynas.compress import add_compress_parser  # imports neither torch nor Ray
from raynas.methods import COMPRESSION_ONLY, check_methods, ordinary_methods  # imports no method, no Ray

#: The searcher names usable on ordinary spaces, for help texts (from the registry, raynas.methods).
SEARCHER_NAMES = ", ".join(ordinary_methods()) + "".join(
    f"; {name} only through 'raynas compress'" for name in sorted(COMPRESSION_ONLY)
)


# --- --searcher-option key=value ------------------------------------------------------------------

_NO_DEFAULT = object()


def _option_signature(name: str) -> dict[str, tuple[Any, Any]]:
    """``option -> (type hint, default)`` of method ``name``, read from the same ``__init__`` chain as
    :func:`raynas.methods.method_options` (the first class that declares an option decides its type)."""
    import inspect
    import typing

    from raynas.methods import method_class, method_options

    cls = method_class(name)
    valid = method_options(name)
    found: dict[str, tuple[Any, Any]] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        try:
            hints = typing.get_type_hints(klass.__init__)
        except (NameError, TypeError, AttributeError):  # an unresolvable annotation: the default's type
            hints = {}
        for parameter in list(inspect.signature(klass.__init__).parameters.values())[1:]:
            if parameter.name in valid and parameter.name not in found:
                default = _NO_DEFAULT if parameter.default is parameter.empty else parameter.default
                found[parameter.name] = (hints.get(parameter.name, Any), default)
    return {key: found.get(key, (Any, _NO_DEFAULT)) for key in valid}


def _scalar_kinds(hint: Any, default: Any) -> list[Any]:
    """The command-line kinds a hint accepts, in the order tried: bool, int, float, ("literal", choices),
    str, None. Empty when nothing typed on a command line fits (sequences, objects)."""
    import types
    import typing

    if hint is Any:
        if default is _NO_DEFAULT or default is None:
            return [str]
        hint = type(default)
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return [("literal", typing.get_args(hint))]
    if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(hint, types.UnionType)):
        kinds: list[Any] = []
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            kinds.extend(k for k in _scalar_kinds(arg, _NO_DEFAULT) if k not in kinds)
        if kinds and type(None) in typing.get_args(hint):
            kinds.append(None)
        order = {bool: 0, int: 1, float: 2, str: 4, None: 5}
        return sorted(kinds, key=lambda k: order.get(k, 3) if not isinstance(k, tuple) else 3)
    if hint in (bool, int, float, str):
        return [hint]
    return []


def _describe_kinds(kinds: list[Any]) -> str:
    words = []
    for kind in kinds:
        if isinstance(kind, tuple):
            words.append("one of " + ", ".join(str(c) for c in kind[1]))
        else:
            words.append({bool: "true/false (or 1/0)", int: "an integer", float: "a number", str: "a string",
                          None: "none"}[kind])
    return " or ".join(words)


def _convert(kind: Any, text: str) -> Any:
    """``text`` as ``kind``; raises ValueError when it is not one."""
    if isinstance(kind, tuple):
        for choice in kind[1]:
            if text == str(choice) or (isinstance(choice, bool) and text.lower() == str(choice).lower()):
                return choice
        raise ValueError(text)
    if kind is None:
        if text.lower() in ("none", "null"):
            return None
        raise ValueError(text)
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(text)
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return text


def convert_searcher_option(name: str, key: str, text: str, *, reserved: dict[str, str] | None = None) -> Any:
    """The value of option ``key`` of searcher ``name`` typed from its method's signature.

    Raises ValueError: an unknown key (listing the valid ones), a reserved one (``reserved[key]`` says
    which flag sets it), a value that is not of the option's type (naming key and expected type).
    """
    signature = _option_signature(name)
    if reserved and key in reserved:
        raise ValueError(f"--searcher-option {key}: {reserved[key]}")
    if key not in signature:
        valid = ", ".join(k for k in signature if not (reserved and k in reserved))
        raise ValueError(f"--searcher-option: {name} has no option {key!r}; its options are: {valid}")
    hint, default = signature[key]
    kinds = _scalar_kinds(hint, default)
    if not kinds:
        raise ValueError(f"--searcher-option {key}: {name}'s option {key} ({hint}) cannot be given on the command line")
    for kind in kinds:
        try:
            return _convert(kind, text)
        except ValueError:
            continue
    raise ValueError(f"--searcher-option {key}={text}: {name}'s option {key} expects {_describe_kinds(kinds)}")


def parse_searcher_options(items: Sequence[str] | None, searchers: Sequence[str], *,
                           reserved: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """``--searcher-option`` values (``key=value`` for every searcher, ``name.key=value`` for one) as
    ``{searcher: {key: typed value}}`` (searchers without options left out). Imports no Ray."""
    shared: list[tuple[str, str]] = []
    own: dict[str, list[tuple[str, str]]] = {}
    for item in items or ():
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ValueError(f"--searcher-option {item!r}: expected key=value (or searcher.key=value)")
        target, dot, key = key.rpartition(".")
        if dot:
            if target not in searchers:
                raise ValueError(f"--searcher-option {item!r}: {target!r} is not among the searchers "
                                 f"({', '.join(searchers)})")
            own.setdefault(target, []).append((key, text))
        else:
            shared.append((key, text))
    options: dict[str, dict[str, Any]] = {}
    for name in searchers:
        values: dict[str, Any] = {}
        for key, text in shared:
            try:
                values[key] = convert_searcher_option(name, key, text, reserved=reserved)
            except ValueError as error:
                hint = f" (name.{key}=VALUE sets it for one searcher)" if len(searchers) > 1 else ""
                raise ValueError(f"{error}{hint}") from None
        for key, text in own.get(name, ()):
            values[key] = convert_searcher_option(name, key, text, reserved=reserved)
        if values:
            options[name] = values
    return options


def check_searcher_builds(name: str, space: Any, mode: str, options: dict[str, Any]) -> None:
    """Build method ``name`` with ``options`` once (no Ray), so that a value it refuses (a fixed option,
    an out-of-range number) fails now, not in the middle of a run."""
    if not options:
        return
    from raynas.methods import make_method

    try:
        make_method(name, space, mode=mode, seed=0, **options)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise ValueError(f"--searcher-option for {name}: {error}") from None


def parse_position_columns(text: str | None, space: str, flag: str = "--space") -> list[str] | None:
    """``--position-columns COL,COL,...`` as a list; required by (and only allowed with) ``--space positional``."""
    columns = [c.strip() for c in (text or "").split(",") if c.strip()] or None
    if space == "positional" and not columns:
        raise ValueError(f"{flag} positional needs --position-columns COL,COL,... (the table's columns that hold "
                         "one choice per position, in order)")
    if columns and space != "positional":
        raise ValueError(f"--position-columns applies to {flag} positional only, not {flag} {space}")
    if columns and len(set(columns)) != len(columns):
        raise ValueError(f"--position-columns names a column twice: {','.join(columns)}")
    return columns


#: Options that flags of their own set.
SEARCH_RESERVED = {"seed": "set by --seed"}
BENCH_RESERVED = {"seed": "set by --seeds/--first-seed"}


def _search_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="run an architecture search with Ray Tune (local Ray, or the cluster in RAY_ADDRESS)",
        description="Run an architecture search with Ray Tune. Without --benchmark, trials train the "
        "network of --space (nb201, nb101, macro_cnn, macro_mlp, mobilenet) on --dataset: scikit-learn's digits by default (offline, "
        "CPU), or CIFAR-10/100 from --data-dir (fetched only with --download), on GPUs with "
        "--gpus-per-trial; with --benchmark, they answer from the table.",
    )
    p.add_argument("--searcher", default="bonas", help=f"searcher name ({SEARCHER_NAMES}); default bonas")
    p.add_argument("--searcher-option", action="append", metavar="KEY=VALUE", dest="searcher_option",
                   help="an option of the searcher's method (repeatable), typed from its signature, e.g. "
                   "pool_size=50 or warm_start=true; saved in raynas.json, so --resume keeps it")
    p.add_argument("--space", default="nb201",
                   help="search space name; default nb201 (real training: nb201, nb101, macro_cnn, macro_mlp, mobilenet)")
    p.add_argument("--benchmark", metavar="CSV", help="tabular benchmark CSV to answer trials from")
    p.add_argument("--objective", metavar="COL", help="objective column of --benchmark")
    p.add_argument("--test-metric", metavar="COL", help="test metric column of --benchmark (reported only)")
    p.add_argument("--position-columns", metavar="COL,COL,...",
                   help="with --benchmark and --space positional: the table's columns holding one choice per "
                   "position, in order (the choices are read from the table); saved for --resume")
    p.add_argument("--fidelities", metavar="COL:EPOCHS,...",
                   help="lower-fidelity columns of --benchmark, cheapest first (rungs for ASHA)")
    p.add_argument("--objective-epochs", type=float, help="epochs the objective column stands for")
    p.add_argument("--mode", choices=("max", "min"), default="max",
                   help="whether --objective is maximised or minimised (tabular searches; real training "
                   "always maximises val_acc); default max")
    p.add_argument("--objectives", metavar="COL:max|min,...",
                   help="with --benchmark: several objectives, one learned (the trials' metric) and the rest "
                   "--computed (gpnas, bonas: expected hypervolume improvement; regevo: NSGA-II selection)")
    p.add_argument("--computed", metavar="COL,...",
                   help="with --objectives: columns known before training (FLOPs, parameters), never modelled")
    p.add_argument("--reference", metavar="V,V,...",
                   help="with --objectives: the worst value of each objective still worth anything "
                   "(the hypervolume's reference point); default: inferred from the results")
    p.add_argument("--constraint", metavar="COL<=V", action="append", default=[],
                   help="with --benchmark: a bound on a column known before training (repeatable, e.g. "
                   "flops_M_cifar10<=60); no cell outside it is suggested")
    p.add_argument("--num-samples", type=int, default=32, help="trials (architectures) to run; default 32")
    p.add_argument("--max-concurrent", type=int, default=2, help="trials running at once; default 2")
    p.add_argument("--scheduler", choices=("asha", "none"), default="asha",
                   help="asha: stop weak trials early at the rungs (--grace-period, --reduction-factor; "
                   "tabular: the --fidelities columns); none: every trial runs its full budget; default asha")
    p.add_argument("--grace-period", type=float,
                   help="ASHA grace period in epochs, one of the rungs (a table: the epochs of a --fidelities "
                   "column); default: a table's first rung, a third of the epochs of real training")
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
    p.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help="CPUs Ray reserves per trial, fractions allowed (trials at once: at most CPUs / this "
                   "and --max-concurrent); default 1")
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
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the searcher and of the trials' training (same seed, same suggestions); default 0")
    p.add_argument("--resume", action="store_true",
                   help="resume the experiment --name (or the latest one under --storage)")
    p.add_argument("--verbose", action="store_true",
                   help="also print Tune's own status tables (by default one line per finished trial: its "
                   "architecture, value and fidelity, best so far, elapsed time and ETA); a resumed run "
                   "prints as it did before")


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
    p.add_argument("--table", required=True, metavar="CSV",
                   help="the tabular benchmark: one row per architecture, its values in columns")
    p.add_argument("--objective", metavar="COL",
                   help="column the searchers optimise (queries to its optimum are counted)")
    p.add_argument("--test-metric", metavar="COL",
                   help="column reported for the best-by-objective architecture (test_at), never optimised")
    p.add_argument("--space", default="nb201",
                   help="space of the table's rows: nb201 (default), nb101, ... or positional "
                   "(needs --position-columns)")
    p.add_argument("--position-columns", metavar="COL,COL,...",
                   help="with --space positional: the table's columns holding one choice per position, in order "
                   "(the choices are read from the table)")
    p.add_argument("--mode", choices=("max", "min"), default="max",
                   help="whether --objective is maximised or minimised; default max")
    p.add_argument("--searchers", default="random,regevo",
                   help=f"comma-separated searcher names ({SEARCHER_NAMES}); default random,regevo")
    p.add_argument("--searcher-option", action="append", metavar="[NAME.]KEY=VALUE", dest="searcher_option",
                   help="an option of the searchers' methods (repeatable), typed from their signatures: "
                   "KEY=VALUE for every searcher of --searchers, NAME.KEY=VALUE for one (bonas.pool_size=50)")
    p.add_argument("--seeds", type=int, default=10, help="number of seeds; default 10")
    p.add_argument("--first-seed", type=int, default=0,
                   help="first seed (default 0): disjoint ranges split a measurement over processes")
    p.add_argument("--max-queries", type=int, default=1000,
                   help="budget of distinct architectures per seed; a run that has not found the optimum by "
                   "then counts as not found; default 1000")
    p.add_argument("--concurrency", type=int, default=1,
                   help="suggestions outstanding at once (simulated parallel trials, completed in random "
                   "order); default 1")
    p.add_argument("--out", default="bench.json", metavar="FILE.json",
                   help="where the JSON report goes (rewritten after each searcher); default bench.json")
    p.add_argument("--quiet", action="store_true", help="no per-seed progress lines")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw median/quartile regret curves of all searchers (log scale) into FILE.png")
    from raynas.cost import add_cost_arguments  # Ray-free, like raynas.bench
    from raynas.pareto_bench import add_pareto_arguments

    add_cost_arguments(p)
    add_pareto_arguments(p)


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


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _numbers(text: str | None, flag: str) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def _validate_search_args(args: argparse.Namespace) -> TabularBenchmark | None:
    """What a new ``raynas search`` can get wrong, checked before Ray is even imported (about a second):
    the searcher name, the space, and for a tabular search the whole table (its objective, test and
    fidelity columns, numeric values, rows and architectures). Raises ValueError naming the problem;
    returns the loaded table (``None`` without --benchmark)."""
    check_methods([args.searcher], compression_ok=False)
    if args.benchmark is None and args.position_columns:
        raise ValueError("--position-columns names columns of a --benchmark table (with --space positional)")
    args.position_columns = parse_position_columns(args.position_columns, args.space) if args.benchmark else None
    args.searcher_kwargs = parse_searcher_options(args.searcher_option, [args.searcher],
                                                  reserved=SEARCH_RESERVED).get(args.searcher, {})
    if args.objectives:  # several objectives: the learned one comes from --objectives
        from raynas.pareto_bench import learned_objective_of

        args.objective, args.mode = learned_objective_of(args.objectives, _names(args.computed), args.objective)
    bench = None
    if args.benchmark is None:
        from raynas.registry import make_space

        space = make_space(args.space)
    else:
        if not args.objective:
            raise ValueError("a benchmark search needs --objective (the column to optimise)")
        bench = TabularBenchmark.from_csv(args.benchmark, args.objective, space=args.space, mode=args.mode,
                                          test_metric=args.test_metric, fidelities=args.fidelities,
                                          objective_epochs=args.objective_epochs,
                                          position_columns=args.position_columns)
        space = bench.space
    check_searcher_builds(args.searcher, space, args.mode, args.searcher_kwargs)
    return bench


def cmd_search(args: argparse.Namespace) -> int:
    if args.resume and args.searcher_option:
        raise ValueError("--searcher-option cannot change a resumed search: it keeps the options saved in "
                         "its raynas.json (searcher_kwargs)")
    if args.resume and (args.objectives or args.computed or args.reference or args.constraint):
        raise ValueError("--objectives, --computed, --reference and --constraint cannot change a resumed search: "
                         "it keeps those saved in its raynas.json")
    if args.resume and args.position_columns:
        raise ValueError("--position-columns cannot change a resumed search: it keeps the columns saved in "
                         "its raynas.json")
    bench = None if args.resume else _validate_search_args(args)  # errors within seconds, before Ray's import
    from raynas.searchers.experiment import (
        SearchSpec, absolute_location, asha_grace, check_data, init_ray, join_location, latest_experiment,
        rung_epochs, run_search, validate_spec,
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
            download=args.download, wait_for_gpus=args.wait_for_gpus, searcher_kwargs=args.searcher_kwargs,
            position_columns=args.position_columns, objectives=args.objectives, computed=_names(args.computed),
            reference=_numbers(args.reference, "--reference"), constraints=list(args.constraint),
        )
        # ASHA's grace period against the rungs (a table's fidelities, or the epochs), before Ray starts
        asha_grace(spec, rung_epochs(spec, bench), warn=False)  # the run itself warns, once
    if args.resume:
        validate_spec(spec)  # the table may have changed since: fail before Ray starts
    check_data(spec)  # before starting Ray: a missing data set fails in a second
    # tabular workers print only noise (errors: error.txt); without --verbose, Ray's INFO lines neither
    init_ray(log_to_driver=spec.benchmark is None, log_level=None if args.verbose else "WARNING")
    _stop_gracefully_on_sigterm("search")
    # one line per finished trial; Tune's own status tables only with --verbose
    if not args.verbose:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's new output prints its configuration box even at verbose=0
        # short trials checkpoint every epoch: Tune's advice to snapshot less often is noise to a user
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    run_search(spec, resume=args.resume, console=True, tune_verbose=1 if args.verbose else 0)
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

    # names first: a typo fails in a moment, before the table is loaded (tables are ordinary spaces)
    names = check_methods([n.strip() for n in args.searchers.split(",") if n.strip()], compression_ok=False)
    if not names:
        raise ValueError(f"--searchers names no searcher; choose from {', '.join(ordinary_methods())}")
    options = parse_searcher_options(args.searcher_option, names, reserved=BENCH_RESERVED)
    from raynas.cost import cost_mode_requested, cost_table_options, run_cost_from_args
    from raynas.pareto import parse_constraint
    from raynas.pareto_bench import pareto_mode_requested, run_pareto_from_args

    if pareto_mode_requested(args):  # several objectives: hypervolume against the table's Pareto front
        if args.objective:
            raise ValueError("--objective names one objective; with --objectives, list them all there")
        run_pareto_from_args(args, names, options, parse_position_columns(args.position_columns, args.space))
        return 0
    if not args.objective:
        raise ValueError("raynas bench needs --objective COL (or --objectives COL:max,COL:min,... for several)")
    cost_mode = cost_mode_requested(args)  # the simulated cluster: epochs and wall-clock under early stopping
    constraints = [parse_constraint(text) for text in args.constraint]
    if constraints and cost_mode:
        raise ValueError("--constraint does not apply to the cost mode (--scheduler/--workers) yet")
    bench = TabularBenchmark.from_csv(
        args.table, args.objective, space=args.space, mode=args.mode, test_metric=args.test_metric,
        position_columns=parse_position_columns(args.position_columns, args.space),
        **(cost_table_options(args) if cost_mode else {}),
    )
    for name, values in options.items():
        check_searcher_builds(name, bench.space, args.mode, values)
    if cost_mode:
        run_cost_from_args(args, bench, names, options)
        return 0
    report = run_bench(bench, names, args.seeds, args.max_queries, args.concurrency, args.out,
                       progress=not args.quiet, first_seed=args.first_seed, searcher_options=options,
                       constraints=constraints)
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
