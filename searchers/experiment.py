"""Run, resume and reload a raynas search with Ray Tune (what ``raynas search`` / ``analyze`` do).

An experiment directory (``<storage>/<name>``) holds Tune's own state plus
``raynas.json``: the :class:`SearchSpec` that built it, so that ``--resume``
and ``raynas analyze`` rebuild exactly the same trainable, metric and mode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from raynas.analysis import format_summary, write_report
from raynas.benchmarks.tabular import TabularBenchmark
from raynas.registry import make_space
from raynas.searchers import make_searcher

SPEC_FILE = "raynas.json"
#: Data sets of real-training searches (``SearchSpec.dataset``).
DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "fake")


@dataclass
class SearchSpec:
    """Everything that defines a search; saved as ``raynas.json`` in the experiment directory.

    With ``benchmark`` set the trials answer from that table (its space, its
    ``objective`` column); otherwise they train the cell network of ``space``
    (``nb201`` or ``nb101``) on ``dataset`` and optimise ``val_acc``:
    ``digits`` (scikit-learn's, offline, CPU-sized; the default), ``cifar10``
    / ``cifar100`` (torchvision, from ``data_dir``; fetched only with
    ``download``) or ``fake`` (CIFAR-shaped FakeData).

    ``wait_for_gpus``: seconds to wait for nodes that can hold one trial's
    CPUs and GPUs (an autoscaling cluster adding GPU nodes) before failing;
    0 fails at once when no node can (Tune itself would wait forever).
    """

    searcher: str = "regevo"
    space: str = "nb201"
    benchmark: str | None = None
    objective: str | None = None
    test_metric: str | None = None
    fidelities: str | None = None
    objective_epochs: float | None = None
    mode: str = "max"
    num_samples: int = 32
    max_concurrent: int = 2
    scheduler: str = "asha"
    grace_period: int = 3
    reduction_factor: int = 3
    seed: int = 0
    storage: str = "raynas_results"
    name: str | None = None
    epochs: int | None = None
    seconds_per_epoch: float = 0.0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    wait_for_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.scheduler not in ("asha", "none"):
            raise ValueError(f"scheduler must be 'asha' or 'none', got {self.scheduler!r}")
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")
        if self.num_samples < 1 or self.max_concurrent < 1:
            raise ValueError("num_samples and max_concurrent must be >= 1")
        if self.benchmark is not None and not self.objective:
            raise ValueError("a benchmark search needs --objective (the column to optimise)")
        if self.benchmark is not None and not os.path.exists(self.benchmark):
            raise FileNotFoundError(f"benchmark table {self.benchmark!r} does not exist")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ValueError("cpus_per_trial must be > 0 and gpus_per_trial >= 0")
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ValueError(f"gpus_per_trial above 1 must be a whole number, got {self.gpus_per_trial}")
        if self.wait_for_gpus < 0:
            raise ValueError(f"wait_for_gpus must be >= 0 seconds, got {self.wait_for_gpus}")
        if self.searcher == "esnac":
            raise ValueError("the esnac searcher compresses a teacher network: use `raynas compress`, not `raynas search`")
        self.storage = absolute_location(self.storage)
        if self.benchmark is not None:
            self.benchmark = os.path.abspath(self.benchmark)
        if self.data_dir is not None:
            # Trials run in their own directories (and maybe on other nodes): never a relative path.
            self.data_dir = os.path.abspath(os.path.expanduser(self.data_dir))
        if self.name is None:
            source = self.dataset if self.benchmark is None else os.path.splitext(os.path.basename(self.benchmark))[0]
            self.name = f"{self.searcher}-{source}-{time.strftime('%Y%m%d-%H%M%S')}"

    @property
    def experiment_dir(self) -> str:
        return join_location(self.storage, str(self.name))

    def save(self) -> None:
        fs, path = filesystem(self.experiment_dir)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(posixpath.join(path, SPEC_FILE)) as out:
            out.write(json.dumps(dataclasses.asdict(self), indent=2).encode())

    @classmethod
    def load(cls, experiment_dir: str) -> "SearchSpec":
        import pyarrow.fs

        fs, path = filesystem(experiment_dir)
        spec_path = posixpath.join(path, SPEC_FILE)
        if fs.get_file_info(spec_path).type != pyarrow.fs.FileType.File:
            raise FileNotFoundError(
                f"{experiment_dir!r} is not a raynas experiment (no {SPEC_FILE}); "
                "pass the directory printed by 'raynas search'"
            )
        with fs.open_input_stream(spec_path) as handle:
            data = json.loads(handle.read().decode())
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        # The directory may have moved since (copied from a cluster, say): trust where it is now.
        location = experiment_dir.rstrip("/") if is_uri(experiment_dir) else os.path.abspath(experiment_dir)
        storage, _, name = location.rpartition("/") if is_uri(location) else (
            os.path.dirname(location), "", os.path.basename(location))
        data["storage"], data["name"] = storage, name
        return cls(**data)


def is_uri(location: str) -> bool:
    """``s3://bucket/x``, ``gs://...``, ``file:///...``: storage that Ray Tune reaches through pyarrow."""
    return "://" in str(location)


def absolute_location(location: str) -> str:
    """A URI as it is, a local path made absolute: a location Tune and other processes can use."""
    return str(location) if is_uri(location) else os.path.abspath(location)


def join_location(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_uri(base) else os.path.join(base, *parts)


def filesystem(location: str):
    """``(pyarrow FileSystem, path)`` of a local path or a URI (the file systems Ray Tune uses)."""
    import pyarrow.fs

    if is_uri(location):
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(location)


@dataclass
class Experiment:
    """The pieces Tune needs, built from a :class:`SearchSpec`."""

    trainable: Any
    param_space: dict[str, Any]
    metric: str
    mode: str
    max_t: int
    benchmark: TabularBenchmark | None


def build_experiment(spec: SearchSpec) -> Experiment:
    """The trainable (with resources), its constant config, metric, mode and epoch budget."""
    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    if spec.benchmark is not None:
        from raynas.trainables.tabular import TabularTrainable

        bench = TabularBenchmark.from_csv(
            spec.benchmark, spec.objective, space=spec.space, mode=spec.mode,  # type: ignore[arg-type]
            test_metric=spec.test_metric, fidelities=spec.fidelities,
            objective_epochs=spec.objective_epochs,
        )
        trainable = tune.with_parameters(
            TabularTrainable, benchmark=bench, seconds_per_epoch=spec.seconds_per_epoch
        )
        param_space = {"benchmark": os.path.basename(spec.benchmark)}
        return Experiment(
            tune.with_resources(trainable, resources), param_space, bench.objective, spec.mode,
            len(bench.fidelities), bench,
        )
    from raynas.models import MODEL_SIZE_KEYS

    if spec.space not in MODEL_SIZE_KEYS:
        raise ValueError(
            f"real training supports the spaces {sorted(MODEL_SIZE_KEYS)}, not {spec.space!r} "
            "(other spaces need --benchmark)"
        )
    if spec.dataset == "digits" and spec.space == "nb201":
        # The main job, exactly as before this trainable was generalised (same trial names, checkpoints).
        from raynas.trainables.digits import DIGITS_DEFAULTS, DigitsTrainable

        trainable: Any = DigitsTrainable
        param_space: dict[str, Any] = {k: v for k, v in DIGITS_DEFAULTS.items() if k != "arch"}
    else:
        from raynas.trainables.training import ImageTrainable, recipe_defaults

        trainable = ImageTrainable
        param_space = {"dataset": spec.dataset, "space": spec.space,
                       "epochs": recipe_defaults(spec.space, spec.dataset)["epochs"]}
        if spec.dataset in ("cifar10", "cifar100"):
            param_space.update(data_dir=spec.data_dir, download=spec.download)
    if spec.epochs is not None:
        param_space["epochs"] = spec.epochs
    param_space["seed"] = spec.seed
    return Experiment(
        tune.with_resources(trainable, resources), param_space, "val_acc", "max",
        int(param_space["epochs"]), None,
    )


def _describe_resources(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def check_cluster_resources(spec: SearchSpec, poll_s: float = 2.0) -> None:
    """Fail fast (ValueError) when no node of the Ray cluster can hold one trial.

    Tune would otherwise keep the trials pending forever. With
    ``spec.wait_for_gpus`` > 0 it first asks the autoscaler for such a node
    (``ray.autoscaler.sdk.request_resources``) and waits that many seconds.
    Call with Ray initialised.
    """
    need = {"CPU": float(spec.cpus_per_trial), "GPU": float(spec.gpus_per_trial)}
    need = {k: v for k, v in need.items() if v > 0}

    def feasible() -> bool:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        return any(all(res.get(k, 0.0) >= v - 1e-9 for k, v in need.items()) for res in nodes)

    if feasible():
        return
    deadline = time.monotonic() + spec.wait_for_gpus
    if spec.wait_for_gpus > 0:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[need])
        try:
            while time.monotonic() < deadline:
                time.sleep(poll_s)
                if feasible():
                    return
        finally:
            request_resources(bundles=[])  # Tune's own placement groups keep the nodes wanted from here on
    largest = max(
        (n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")),
        key=lambda r: (r.get("GPU", 0.0), r.get("CPU", 0.0)),
        default={},
    )
    what = f"{spec.gpus_per_trial:g} GPU and " if spec.gpus_per_trial else ""
    waited = f" (waited {spec.wait_for_gpus:g} s)" if spec.wait_for_gpus > 0 else ""
    hint = (
        "run on a cluster with GPU nodes (see cluster/README.md), drop --gpus-per-trial to train on CPUs, "
        "or on an autoscaling cluster pass --wait-for-gpus SECONDS"
        if spec.gpus_per_trial
        else "lower --cpus-per-trial or add nodes"
    )
    raise ValueError(
        f"each trial asks for {what}{spec.cpus_per_trial:g} CPU (--gpus-per-trial {spec.gpus_per_trial:g}, "
        f"--cpus-per-trial {spec.cpus_per_trial:g}), but no node of the Ray cluster has that{waited}: "
        f"the cluster has {_describe_resources(ray.cluster_resources())} in all, its largest node "
        f"{_describe_resources(largest)}. Tune would wait forever; {hint}."
    )


def check_data(spec: SearchSpec) -> None:
    """On local Ray, fail before starting Tune if a CIFAR data set is absent and --download is off.

    On a cluster (``RAY_ADDRESS`` set) the data live on the worker nodes, so
    the trials check for themselves (they fail in ``setup`` with the same message).
    """
    if spec.benchmark is not None or spec.dataset not in ("cifar10", "cifar100") or spec.download:
        return
    if os.environ.get("RAY_ADDRESS"):
        return
    from raynas.data.vision import check_dataset

    check_dataset(spec.dataset, spec.data_dir, download=False)


def trial_dirname(trial) -> str:
    """Short trial directory names (Tune's default embeds the whole architecture JSON)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def build_tuner(spec: SearchSpec, experiment: Experiment | None = None) -> tune.Tuner:
    """A fresh ``Tuner`` for ``spec`` (records ``raynas.json`` beside Tune's state)."""
    experiment = experiment or build_experiment(spec)
    space = experiment.benchmark.space if experiment.benchmark is not None else make_space(spec.space)
    searcher = make_searcher(spec.searcher, space, metric=experiment.metric, mode=experiment.mode, seed=spec.seed)
    if spec.scheduler == "asha" and experiment.max_t > 1:
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=experiment.max_t,
            grace_period=min(spec.grace_period, experiment.max_t),
            reduction_factor=spec.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    spec.save()
    return tune.Tuner(
        experiment.trainable,
        param_space=experiment.param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            metric=experiment.metric,
            mode=experiment.mode,
            num_samples=spec.num_samples,
            max_concurrent_trials=spec.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=spec.storage,
            # Tabular trials are instant: replaying them beats checkpointing. Real training keeps
            # the two newest checkpoints so ASHA pauses and retries resume mid-training.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=None if experiment.benchmark is not None else 2,
                checkpoint_frequency=0 if experiment.benchmark is not None else 1,
            ),
            failure_config=tune.FailureConfig(max_failures=1),
            verbose=1,
        ),
    )


def restore_tuner(experiment_dir: str) -> tuple[tune.Tuner, SearchSpec, Experiment]:
    """``Tuner.restore`` of an interrupted raynas experiment: the searcher continues from its saved state."""
    spec = SearchSpec.load(experiment_dir)
    if not tune.Tuner.can_restore(experiment_dir):
        raise FileNotFoundError(
            f"{experiment_dir!r} holds no Tune experiment state to resume (did it ever start?)"
        )
    experiment = build_experiment(spec)
    tuner = tune.Tuner.restore(
        experiment_dir,
        trainable=experiment.trainable,
        param_space=experiment.param_space,
        resume_unfinished=True,
        resume_errored=True,
    )
    return tuner, spec, experiment


def latest_experiment(storage: str) -> str:
    """The raynas experiment under ``storage`` (a path or URI) whose settings were written last."""
    import pyarrow.fs

    fs, root = filesystem(storage)
    if not is_uri(storage):
        storage = root
    specs = []
    if fs.get_file_info(root).type == pyarrow.fs.FileType.Directory:
        for entry in fs.get_file_info(pyarrow.fs.FileSelector(root)):
            if entry.type == pyarrow.fs.FileType.Directory:
                info = fs.get_file_info(posixpath.join(entry.path, SPEC_FILE))
                if info.type == pyarrow.fs.FileType.File:
                    specs.append((info.mtime_ns or 0, entry.base_name))
    if not specs:
        raise FileNotFoundError(f"no raynas experiment to resume under {storage!r}")
    return join_location(storage, max(specs)[1])


def init_ray(num_cpus: int | None = None) -> None:
    """Attach to the cluster in ``RAY_ADDRESS`` if set, else start a local Ray runtime."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)


def report(results: tune.ResultGrid, spec: SearchSpec, metric: str, mode: str) -> dict[str, object]:
    """Write ``results.csv`` and ``best_so_far.png`` into the experiment directory; return the summary."""
    frame = results.get_dataframe()
    title = f"{spec.searcher} on {spec.name}"
    if not is_uri(spec.experiment_dir):
        return write_report(frame, metric, mode, spec.experiment_dir, title=title)  # type: ignore[arg-type]
    return _report_to_uri(frame, metric, mode, spec.experiment_dir, title)


def _report_to_uri(frame, metric: str, mode: str, experiment_dir: str, title: str) -> dict[str, object]:
    """Write the report locally, then copy it next to Tune's files in remote storage."""
    import pyarrow.fs

    fs, path = filesystem(experiment_dir)
    with tempfile.TemporaryDirectory() as local:
        summary = write_report(frame, metric, mode, local, title=title)  # type: ignore[arg-type]
        pyarrow.fs.copy_files(local, path, destination_filesystem=fs)
    for key in ("results_csv", "plot"):
        if summary.get(key):
            summary[key] = join_location(experiment_dir, os.path.basename(str(summary[key])))
    return summary


def run_search(spec: SearchSpec, resume: bool = False, verbose: bool = True) -> tuple[tune.ResultGrid, dict]:
    """Run (or resume) a search and write its report. Returns the ResultGrid and the summary."""
    if resume:
        spec = SearchSpec.load(spec.experiment_dir)
    check_data(spec)
    init_ray()
    check_cluster_resources(spec)
    if resume:
        tuner, spec, experiment = restore_tuner(spec.experiment_dir)
    else:
        experiment = build_experiment(spec)
        tuner = build_tuner(spec, experiment)
    results = tuner.fit()
    summary = report(results, spec, experiment.metric, experiment.mode)
    summary["experiment_dir"] = spec.experiment_dir
    if verbose:
        print(f"\nexperiment: {spec.experiment_dir}")
        print(format_summary(summary, experiment.metric))
    return results, summary


def load_results(experiment_dir: str) -> tuple[tune.ResultGrid, SearchSpec, str, str]:
    """Reload a finished or interrupted experiment as a ``ResultGrid`` (no trainable needed)."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    experiment_dir = absolute_location(experiment_dir)
    spec = SearchSpec.load(experiment_dir)
    metric = spec.objective if spec.benchmark is not None else "val_acc"
    analysis = ExperimentAnalysis(experiment_dir, default_metric=metric, default_mode=spec.mode)
    return ResultGrid(analysis), spec, str(metric), spec.mode
