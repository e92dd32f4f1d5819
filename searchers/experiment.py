"""Run, resume and reload a raynas experiment with Ray Tune (what ``raynas search`` / ``compress`` /
``analyze`` do).

An experiment directory (``<storage>/<name>``) holds Tune's own state plus
``raynas.json``: the :class:`SearchSpec` that built it, so that ``--resume``
and ``raynas analyze`` rebuild exactly the same trainable, metric and mode.
A compression run (``raynas compress``) is a :class:`CompressSpec` (``"kind":
"compress"`` in ``raynas.json``) and also keeps the teacher it compresses, as a
``state_dict`` in ``teacher.pt``: resuming loads that file instead of training
the teacher again, so every student of a run is distilled from the same teacher.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import posixpath
import tempfile
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from raynas.analysis import SPEC_FILE, format_summary, write_report
from raynas.benchmarks.tabular import TabularBenchmark
from raynas.registry import make_space
from raynas.search.base import SearchStateError
from raynas.searchers import make_searcher
from raynas.searchers.console import trial_dirname

logger = logging.getLogger("raynas")

#: The teacher of a compression run (a ``state_dict``), next to ``raynas.json``.
TEACHER_FILE = "teacher.pt"
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

    searcher: str = "bonas"
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
    #: ASHA's grace period in epochs (a table: one of its fidelities' epochs); ``None``: the first
    #: rung of a table, a third of the epochs of real training (:func:`raynas.schedule.grace_iterations`).
    grace_period: float | None = None
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
    #: Options of the searcher's method (``--searcher-option KEY=VALUE``, typed), passed where it is built.
    searcher_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Columns of a positional ``benchmark`` table (``--space positional --position-columns``), in order.
    position_columns: list[str] | None = None
    #: Several objectives of a ``benchmark`` search (``--objectives COL:max,COL:min``): ``objective`` is the
    #: learned one; the ``computed`` columns are read from the table (:mod:`raynas.pareto`).
    objectives: str | None = None
    computed: list[str] = dataclasses.field(default_factory=list)
    #: The hypervolume's reference point, one value per objective (``--reference``), or ``None``.
    reference: list[float] | None = None
    #: Bounds on table columns known before training (``--constraint COL<=V``): never suggested outside them.
    constraints: list[str] = dataclasses.field(default_factory=list)
    #: What built the experiment, saved in ``raynas.json`` (``"search"``; :class:`CompressSpec`: ``"compress"``).
    kind: str = dataclasses.field(default="search", init=False)
    #: Tune's ``RunConfig(verbose=...)`` (``raynas compress`` keeps stdout for its JSON summary).
    tune_verbose: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.scheduler not in ("asha", "none"):
            raise ValueError(f"scheduler must be 'asha' or 'none', got {self.scheduler!r}")
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")
        if self.num_samples < 1 or self.max_concurrent < 1:
            raise ValueError("num_samples and max_concurrent must be >= 1")
        if self.objectives is not None or self.computed or self.constraints or self.reference:
            self._check_objectives()
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
        if self.benchmark is not None and self.space == "positional" and not self.position_columns:
            raise ValueError("a positional benchmark (--space positional) needs --position-columns COL,COL,...")
        if self.position_columns is not None:
            self.position_columns = [str(column) for column in self.position_columns]
        if not isinstance(self.searcher_kwargs, dict) or "seed" in self.searcher_kwargs:
            raise ValueError(f"searcher_kwargs must be a dict of method options without 'seed' (set by seed), "
                             f"got {self.searcher_kwargs!r}")
        self._check_searcher()
        self.storage = absolute_location(self.storage)
        if self.benchmark is not None:
            self.benchmark = os.path.abspath(self.benchmark)
        if self.data_dir is not None:
            # Trials run in their own directories (and maybe on other nodes): never a relative path.
            self.data_dir = os.path.abspath(os.path.expanduser(self.data_dir))
        if self.name is None:
            source = self.dataset if self.benchmark is None else os.path.splitext(os.path.basename(self.benchmark))[0]
            self.name = f"{self.searcher}-{source}-{time.strftime('%Y%m%d-%H%M%S')}"

    def _check_objectives(self) -> None:
        """``objectives``/``computed``/``reference``/``constraints``: tables only; one learned objective."""
        from raynas.pareto import parse_constraint, parse_objectives
        from raynas.pareto_bench import learned_objective_of

        if self.benchmark is None:
            raise ValueError("--objectives, --computed, --reference and --constraint read their columns from a "
                             "--benchmark table (real training reports params and flops, but does not search on "
                             "them yet)")
        for text in self.constraints:
            parse_constraint(text)
        if self.objectives is None:
            if self.computed or self.reference:
                raise ValueError("--computed and --reference apply only with --objectives")
            return
        self.objective, self.mode = learned_objective_of(self.objectives, self.computed, self.objective)
        if self.reference is not None and len(self.reference) != len(parse_objectives(self.objectives)):
            raise ValueError(f"--reference has {len(self.reference)} values for the objectives {self.objectives}")

    def _check_searcher(self) -> None:
        if self.searcher == "esnac":
            raise ValueError("the esnac searcher compresses a teacher network: use `raynas compress`, not `raynas search`")

    @property
    def metric(self) -> str:
        """The result key the search optimises (in direction :attr:`mode`)."""
        return str(self.objective) if self.benchmark is not None else "val_acc"

    def searcher_options(self) -> dict[str, Any]:
        """Keyword arguments of the searcher besides space, metric and mode (``searcher_kwargs`` and the seed)."""
        return {**(self.searcher_kwargs or {}), "seed": self.seed}

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
        kind = data.pop("kind", "search")
        if kind not in SPEC_KINDS:
            raise ValueError(f"{experiment_dir!r}: unknown kind of raynas experiment {kind!r} in {SPEC_FILE}")
        if not issubclass(SPEC_KINDS[kind], cls):  # CompressSpec.load of a `raynas search` experiment
            raise ValueError(f"{experiment_dir!r} is a `raynas {kind}` experiment, not a `raynas {cls.kind}` one: "
                             f"resume it with `raynas {kind} --resume`")
        cls = SPEC_KINDS[kind]  # SearchSpec.load of a compression run gives its CompressSpec
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        data = {k: v for k, v in data.items() if k in known}
        # The directory may have moved since (copied from a cluster, say): trust where it is now.
        location = experiment_dir.rstrip("/") if is_uri(experiment_dir) else os.path.abspath(experiment_dir)
        storage, _, name = location.rpartition("/") if is_uri(location) else (
            os.path.dirname(location), "", os.path.basename(location))
        data["storage"], data["name"] = storage, name
        return cls(**data)


@dataclass
class CompressSpec(SearchSpec):
    """A ``raynas compress`` run: ESNAC (or random search) over the compressions of a teacher network.

    Shares :class:`SearchSpec`'s storage, saving, resuming and reporting; the
    trials are :class:`raynas.trainables.distill.DistillTrainable` students,
    maximising ESNAC's ``objective``. ``teacher`` is ``digits-cnn``, a torchvision
    name (:data:`raynas.teachers.TORCHVISION_TEACHERS`) or the path of a saved
    module; the teacher actually used is the ``state_dict`` saved in the
    experiment directory (:func:`save_teacher_state`), so ``teacher_weights`` and
    ``teacher_epochs`` only record how it was obtained. ``kernels`` (ESNAC's
    transferred kernels) is read when the run starts, not on resume (the searcher
    then continues from its own saved state). ``epochs`` is the distillation budget
    per student (ASHA's maximum); ``batch_size`` / ``lr`` ``None`` keep
    :class:`~raynas.trainables.distill.DistillTrainable`'s defaults.
    """

    searcher: str = "esnac"
    space: str = "compression"
    num_samples: int = 40
    max_concurrent: int = 4
    grace_period: float | None = None  # a third of the epochs (1 of the default 3)
    epochs: int | None = 3
    teacher: str = "digits-cnn"
    teacher_weights: str | None = None
    teacher_stem: str = "cifar"
    teacher_epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    num_kernels: int = 4
    kernels: str | None = None
    kind: str = dataclasses.field(default="compress", init=False)
    tune_verbose: ClassVar[int] = 0

    def __post_init__(self) -> None:
        from raynas.teachers import TORCHVISION_TEACHERS

        if self.benchmark is not None:
            raise ValueError("a compression run trains students: it takes no benchmark table")
        if self.mode != "max":
            raise ValueError(f"a compression run maximises ESNAC's objective: mode must be 'max', got {self.mode!r}")
        if self.epochs is None or self.epochs < 1:
            raise ValueError(f"epochs (distillation epochs per student) must be >= 1, got {self.epochs}")
        if self.num_kernels < 1:
            raise ValueError(f"num_kernels must be >= 1, got {self.num_kernels}")
        if self.teacher_stem not in ("cifar", "imagenet"):
            raise ValueError(f"teacher stem must be 'cifar' or 'imagenet', got {self.teacher_stem!r}")
        if self.teacher != "digits-cnn" and self.teacher not in TORCHVISION_TEACHERS:
            self.teacher = os.path.abspath(os.path.expanduser(self.teacher))  # a saved module
        for key in ("teacher_weights", "kernels"):
            if getattr(self, key) is not None:
                setattr(self, key, os.path.abspath(os.path.expanduser(getattr(self, key))))
        if self.name is None:
            self.name = f"compress-{self.searcher}-{self.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        super().__post_init__()

    def _check_searcher(self) -> None:
        if self.searcher not in ("esnac", "random"):
            raise ValueError(f"a compression run searches with 'esnac' or 'random', not {self.searcher!r}")

    @property
    def metric(self) -> str:
        return "objective"

    def searcher_options(self) -> dict[str, Any]:
        if self.searcher == "esnac":
            return {**(self.searcher_kwargs or {}), "seed": self.seed, "num_kernels": self.num_kernels,
                    "kernels": self.kernels}
        return {**(self.searcher_kwargs or {}), "seed": self.seed}

    @property
    def teacher_path(self) -> str:
        """Where the run's teacher ``state_dict`` is kept (a path or URI)."""
        return join_location(self.experiment_dir, TEACHER_FILE)


#: ``raynas.json``'s ``kind`` -> the spec class that reads it.
SPEC_KINDS: dict[str, type[SearchSpec]] = {"search": SearchSpec, "compress": CompressSpec}


def exists(location: str) -> bool:
    """Whether a file or directory exists at a path or URI."""
    import pyarrow.fs

    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def save_teacher_state(spec: CompressSpec, teacher: Any) -> str:
    """Write ``teacher``'s ``state_dict`` to :attr:`CompressSpec.teacher_path`; returns that location."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(teacher.state_dict(), buffer)
    fs, path = filesystem(spec.experiment_dir)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(posixpath.join(path, TEACHER_FILE)) as out:
        out.write(buffer.getvalue())
    return spec.teacher_path


def load_saved_teacher(spec: CompressSpec) -> Any:
    """The teacher of a compression run: its module rebuilt (untrained) and the saved ``state_dict`` loaded."""
    import io

    import torch

    from raynas.teachers import teacher_module

    if not exists(spec.teacher_path):
        raise FileNotFoundError(f"{spec.experiment_dir!r} holds no {TEACHER_FILE}: the compression run's teacher "
                                "was never saved (did it ever start?)")
    fs, path = filesystem(spec.teacher_path)
    with fs.open_input_stream(path) as handle:
        state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
    model = teacher_module(spec.teacher, spec.dataset, stem=spec.teacher_stem, seed=spec.seed)
    model.load_state_dict(state)
    return model.eval()


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
    #: The searcher's space when not the registry's ``spec.space`` (a compression run's teacher space).
    space: Any = None
    #: The searcher Tune runs (set by :func:`build_tuner` / :func:`restore_tuner`).
    searcher: Any = None


def build_experiment(spec: SearchSpec) -> Experiment:
    """The trainable (with resources), its constant config, metric, mode and epoch budget."""
    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    if isinstance(spec, CompressSpec):
        return _build_compress_experiment(spec, resources)
    if spec.benchmark is not None:
        from raynas.trainables.tabular import TabularTrainable

        bench = TabularBenchmark.from_csv(
            spec.benchmark, spec.objective, space=spec.space, mode=spec.mode,  # type: ignore[arg-type]
            test_metric=spec.test_metric, fidelities=spec.fidelities,
            objective_epochs=spec.objective_epochs, position_columns=spec.position_columns,
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
        from raynas.trainables.training import ImageTrainable

        trainable = ImageTrainable
        param_space = {"dataset": spec.dataset, "space": spec.space}
        if spec.dataset in ("cifar10", "cifar100"):
            param_space.update(data_dir=spec.data_dir, download=spec.download)
    param_space["epochs"] = max_epochs(spec)
    param_space["seed"] = spec.seed
    return Experiment(
        tune.with_resources(trainable, resources), param_space, "val_acc", "max", param_space["epochs"], None,
    )


def _build_compress_experiment(spec: CompressSpec, resources: dict[str, float]) -> Experiment:
    """Students of the saved teacher (:func:`load_saved_teacher`), distilled by ``DistillTrainable``."""
    from raynas.teachers import CIFAR_SHAPE, DIGITS_SHAPE
    from raynas.spaces.compression import CompressionSpace
    from raynas.trainables.distill import DistillTrainable

    teacher = load_saved_teacher(spec)
    space = CompressionSpace(teacher, DIGITS_SHAPE if spec.dataset == "digits" else CIFAR_SHAPE)
    param_space: dict[str, Any] = {"epochs": spec.epochs, "seed": spec.seed}
    if spec.dataset != "digits":
        param_space.update(dataset=spec.dataset, data_dir=spec.data_dir, download=bool(spec.download),
                           device="cuda" if spec.gpus_per_trial > 0 else "auto")
    for key in ("batch_size", "lr"):
        if getattr(spec, key) is not None:
            param_space[key] = getattr(spec, key)
    trainable = tune.with_parameters(DistillTrainable, space=space)
    return Experiment(tune.with_resources(trainable, resources), param_space, spec.metric, "max",
                      max_epochs(spec), None, space=space)


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


class KeepSearcherBackup(tune.Callback):
    """Copy the newest *readable* ``searcher-state-*.pkl`` of the experiment to ``raynas-searcher-backup.pkl``
    (the copy before it to ``raynas-searcher-backup-prev.pkl``), at most every ``every_s`` seconds as trials
    complete and at the end, so that one bad write of Tune's searcher state is never fatal:
    ``RaynasSearcher.restore`` and :func:`repair_searcher_state` fall back to these copies.
    """

    def __init__(self, experiment_dir: str, every_s: float = 10.0) -> None:
        self.experiment_dir, self.every_s = experiment_dir, every_s
        self._last_time, self._last_copied = 0.0, None

    def __getstate__(self) -> dict:  # pickled into tuner.pkl: a restored run starts its own clock
        return {**self.__dict__, "_last_time": 0.0, "_last_copied": None}

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if abs(time.monotonic() - self._last_time) >= self.every_s:
            self.backup()

    def on_experiment_end(self, trials, **info) -> None:
        self.backup()

    def backup(self) -> bool:
        """Copy now; returns whether a new copy was written (never raises: a backup must not stop a run)."""
        import hashlib

        from raynas.searchers.base import BACKUP_FILE, BACKUP_PREV_FILE, load_state_bytes

        self._last_time = time.monotonic()
        try:
            fs, path = filesystem(self.experiment_dir)
            newest = _newest_searcher_state(fs, path)
            if newest is None:
                return False
            with fs.open_input_stream(posixpath.join(path, newest)) as handle:
                data = handle.read()
            digest = hashlib.sha256(data).hexdigest()
            if digest == self._last_copied:
                return False
            load_state_bytes(data)  # only a readable state is worth keeping
            import pyarrow.fs

            backup = posixpath.join(path, BACKUP_FILE)
            if fs.get_file_info(backup).type == pyarrow.fs.FileType.File:
                fs.move(backup, posixpath.join(path, BACKUP_PREV_FILE))
            with fs.open_output_stream(backup + ".tmp") as out:
                out.write(data)
            fs.move(backup + ".tmp", backup)
            self._last_copied = digest
            return True
        except (OSError, SearchStateError) as exc:  # no backup this time; the next result tries again
            logger.warning("raynas: could not back up the searcher state of %s (%s: %s)",
                           self.experiment_dir, type(exc).__name__, exc)
            return False


def _newest_searcher_state(fs, path: str) -> str | None:
    """Name of the ``searcher-state-*.pkl`` Tune restores (the largest name, as Tune picks it)."""
    import pyarrow.fs

    names = [info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(path))
             if info.base_name.startswith("searcher-state-") and info.base_name.endswith(".pkl")]
    return max(names) if names else None


def rung_epochs(spec: SearchSpec, benchmark: TabularBenchmark | None = None) -> list[float]:
    """The epochs at each result a trial reports: the fidelities of ``spec``'s table (``benchmark``,
    loaded), else every epoch up to :func:`max_epochs`."""
    if benchmark is not None:
        return [float(f.epochs) for f in benchmark.fidelities]
    return [float(k) for k in range(1, max_epochs(spec) + 1)]


def asha_grace(spec: SearchSpec, rungs: list[float], warn: bool = True) -> int | None:
    """ASHA's grace period in ``training_iteration`` s for ``spec``, or ``None`` when ASHA is off.

    ``spec.grace_period`` is in epochs and must be one of the rungs
    (:func:`raynas.schedule.grace_iterations`; a mismatch raises
    :class:`~raynas.schedule.ScheduleError` naming the rungs). Where trials
    report only once (a table without ``--fidelities``, a single epoch) ASHA
    could never stop one: it is left out, with a warning (``warn``) instead of running idle.
    """
    from raynas.schedule import grace_iterations

    if spec.scheduler != "asha":
        return None
    if len(rungs) < 2:
        if warn:
            logger.warning("--scheduler asha can stop nothing here: every trial reports once (at %g epochs); "
                           "running each to the end. A table needs --fidelities COL:EPOCHS for ASHA to have rungs",
                           rungs[0] if rungs else float("nan"))
        return None
    return grace_iterations(rungs, spec.grace_period)


def max_epochs(spec: SearchSpec) -> int:
    """The epochs of a real-training trial of ``spec`` (``--epochs`` or the recipe's): ASHA's ``max_t``."""
    if spec.epochs is not None:
        return int(spec.epochs)
    if isinstance(spec, CompressSpec):
        return 1
    from raynas.trainables.training import recipe_defaults

    return int(recipe_defaults(spec.space, spec.dataset)["epochs"])


def validate_spec(spec: SearchSpec) -> TabularBenchmark | None:
    """Everything about ``spec`` that can be checked without Ray, checked before Ray starts (seconds).

    The searcher name (registered, and usable on this kind of run), the space, and for a tabular search
    the whole table: its columns (objective, test metric, fidelities), numeric values, rows and
    architectures. Raises ``ValueError`` (``BenchmarkError``, ``UnknownMethodError``) naming the
    problem; returns the loaded benchmark, if any. (ASHA's schedule is not checked: a resumed run keeps
    the scheduler Tune saved, and a new one is checked by :func:`asha_grace` as the command line builds it.)
    """
    from raynas.methods import check_methods

    check_methods([spec.searcher], compression_ok=isinstance(spec, CompressSpec))
    if isinstance(spec, CompressSpec):
        return None
    if spec.objective_epochs is not None and not (spec.objective_epochs > 0):
        raise ValueError(f"--objective-epochs must be > 0, got {spec.objective_epochs}")
    if spec.benchmark is None:
        make_space(spec.space)  # an unknown space fails here, naming the known ones
        return None
    return TabularBenchmark.from_csv(
        spec.benchmark, spec.objective, space=spec.space, mode=spec.mode,  # type: ignore[arg-type]
        test_metric=spec.test_metric, fidelities=spec.fidelities, objective_epochs=spec.objective_epochs,
        position_columns=spec.position_columns,
    )


def objective_options(spec: SearchSpec, experiment: Experiment) -> dict[str, Any]:
    """The searcher's ``metric`` and ``mode`` (lists with several objectives), and its computed
    objectives and constraints read from the benchmark table."""
    options: dict[str, Any] = {"metric": experiment.metric, "mode": experiment.mode}
    bench = experiment.benchmark
    if bench is None or isinstance(spec, CompressSpec) or not (spec.objectives or spec.constraints):
        return options
    from raynas.bench import table_constraints
    from raynas.pareto import parse_constraint, parse_objectives
    from raynas.pareto_bench import computed_objectives, split_objectives

    if spec.constraints:
        options["constraints"] = table_constraints(bench, [parse_constraint(c) for c in spec.constraints])
    if spec.objectives:
        objectives = parse_objectives(spec.objectives)
        _, computed = split_objectives(objectives, spec.computed)
        bounds = dict(zip([n for n, _ in objectives], spec.reference)) if spec.reference else None
        options.update(metric=[n for n, _ in objectives], mode=[m for _, m in objectives],
                       computed_objectives=computed_objectives(bench, computed, bounds))
    return options


def build_tuner(spec: SearchSpec, experiment: Experiment | None = None, *, console: bool = False,
                tune_verbose: int | None = None) -> tune.Tuner:
    """A fresh ``Tuner`` for ``spec`` (records ``raynas.json`` beside Tune's state).

    ``console``: print one line per finished trial (:class:`raynas.searchers.console.TrialLines`);
    ``tune_verbose``: Tune's ``RunConfig(verbose=...)`` (its status tables), default ``spec.tune_verbose``.
    Both are pickled with the tuner, so a resumed run prints the same way.
    """
    experiment = experiment or build_experiment(spec)
    if experiment.space is not None:
        space = experiment.space
    else:
        space = experiment.benchmark.space if experiment.benchmark is not None else make_space(spec.space)
    searcher = make_searcher(spec.searcher, space, **objective_options(spec, experiment),
                             **spec.searcher_options())
    experiment.searcher = searcher
    grace = asha_grace(spec, rung_epochs(spec, experiment.benchmark))
    if grace is not None:
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=experiment.max_t,
            grace_period=grace,
            reduction_factor=spec.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    spec.save()
    callbacks: list[Any] = [KeepSearcherBackup(spec.experiment_dir)]
    if console:
        from raynas.searchers.console import TrialLines

        callbacks.append(TrialLines(space, experiment.metric, experiment.mode, experiment.max_t, spec.num_samples))
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
            verbose=spec.tune_verbose if tune_verbose is None else tune_verbose,
            callbacks=callbacks,
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
    check_experiment_state(experiment_dir)
    repair_searcher_state(spec, experiment)
    tuner = tune.Tuner.restore(
        experiment_dir,
        trainable=experiment.trainable,
        param_space=experiment.param_space,
        resume_unfinished=True,
        resume_errored=True,
    )
    # The searcher unpickled from tuner.pkl, which Tune restores and runs (Ray 2.x internals; None if moved).
    tune_config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
    experiment.searcher = getattr(tune_config, "search_alg", None)
    return tuner, spec, experiment


class ExperimentStateError(ValueError):
    """An experiment whose saved state cannot be resumed (nothing was changed on disk)."""


@dataclass
class RunOutcome:
    """How the last :func:`run_experiment` of this process ended (:data:`LAST_RUN`), for exit statuses.

    ``status``: ``"finished"``; ``"interrupted"`` (Tune stopped on a signal: SIGINT, SIGTERM, ``ray job
    stop``; the state is saved and the report written); ``"no_results"`` (every trial failed or none
    reported the metric; ``first_error`` is the first failed trial's error text).
    """

    status: str
    spec: "SearchSpec"
    summary: dict
    metric: str
    first_error: str | None = None


#: The outcome of this process's latest :func:`run_experiment` (``None`` before one ended).
LAST_RUN: RunOutcome | None = None


def resume_command(spec: "SearchSpec") -> str:
    """The command line that continues ``spec``'s experiment."""
    import shlex

    return (f"raynas {spec.kind} --resume --name {shlex.quote(str(spec.name))} "
            f"--storage {shlex.quote(str(spec.storage))}")


def _warn(message: str) -> None:
    import logging
    import sys

    logging.getLogger("raynas").warning(message)
    print(f"raynas: {message}", file=sys.stderr, flush=True)


def check_experiment_state(experiment_dir: str) -> None:
    """Refuse to resume (:class:`ExperimentStateError`) when Tune's newest ``experiment_state-*.json`` is
    unreadable: Tune would log the failure and start the experiment again over the existing results."""
    import pyarrow.fs

    fs, path = filesystem(experiment_dir)
    names = sorted(info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(path))
                   if info.base_name.startswith("experiment_state-") and info.base_name.endswith(".json"))
    if not names:
        return  # Tune.can_restore already said whether there is something to resume
    newest = posixpath.join(path, names[-1])
    try:
        with fs.open_input_stream(newest) as handle:
            state = json.loads(handle.read().decode())
        if "trial_data" not in state or "runner_data" not in state:
            raise ValueError("no trial_data/runner_data")
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ExperimentStateError(
            f"cannot resume {experiment_dir!r}: Tune's experiment state {names[-1]} is unreadable ({error}); "
            "nothing was changed (results.csv and the trial directories are intact, `raynas analyze` still reads them)"
        ) from error


def repair_searcher_state(spec: "SearchSpec", experiment: Experiment) -> str | None:
    """Before ``Tuner.restore``: make sure the searcher state Tune restores is readable.

    Tune restores the newest ``searcher-state-*.pkl``; if that fails it logs "Failed to restore the
    run state" and *restarts the experiment* over the existing results. So raynas reads it first. When
    it is unreadable, the newest readable backup (``raynas-searcher-backup.pkl``, then
    ``raynas-searcher-backup-prev.pkl``, written by ``RaynasSearcher.save``) replaces it; failing that,
    the search's observations are rebuilt from the trials' own ``params.json`` / ``result.json``
    (:func:`rebuild_searcher_state`). The damaged file is kept as ``<name>.damaged``. Returns what was done
    (``None``: nothing needed); raises :class:`ExperimentStateError`, changing nothing, when no state can
    be recovered.
    """
    import pickle

    from raynas.searchers.base import BACKUP_FILE, BACKUP_PREV_FILE, load_state_bytes
    from raynas.search.base import SearchStateError

    fs, path = filesystem(spec.experiment_dir)
    name = _newest_searcher_state(fs, path)
    if name is None:
        return None
    newest = posixpath.join(path, name)

    def read(location: str) -> bytes | None:
        try:
            with fs.open_input_stream(location) as handle:
                data = handle.read()
            load_state_bytes(data)
            return data
        except (OSError, SearchStateError):
            return None

    if read(newest) is not None:
        return None
    data, source = None, None
    for backup in (BACKUP_FILE, BACKUP_PREV_FILE):
        data = read(posixpath.join(path, backup))
        if data is not None:
            source = f"its backup {backup}"
            break
    if data is None:
        try:
            searcher, count = rebuild_searcher_state(spec, experiment)
        except Exception as error:  # noqa: BLE001 - any failure here means: stop, change nothing
            raise ExperimentStateError(
                f"cannot resume {spec.experiment_dir!r}: the searcher state {name} is unreadable, there is "
                f"no readable backup, and the search could not be rebuilt from the trial directories ({error}); "
                "nothing was changed"
            ) from error
        data = pickle.dumps(searcher.get_state())
        source = f"the {count} trial directories' params.json/result.json"
    fs.move(newest, newest + ".damaged")
    with fs.open_output_stream(newest) as out:
        out.write(data)
    message = (f"the searcher state {name} of {spec.experiment_dir} was unreadable (kept as "
               f"{name}.damaged); rebuilt it from {source} and continuing the search")
    _warn(message)
    return message


def rebuild_searcher_state(spec: "SearchSpec", experiment: Experiment):
    """A fresh searcher fed every trial of the experiment directory, in suggestion order.

    Each trial directory holds ``params.json`` (its config: architecture and suggestion index) and
    ``result.json`` (one JSON result per line); the last result's metric and ``training_iteration``
    become an observation, a trial without a finite final value counts as failed (Tune retries it if it
    was unfinished). Returns ``(searcher, number of trials)``; raises when the directory holds no trial.
    """
    import pyarrow.fs

    from raynas.architecture import Architecture
    from raynas.search.base import is_number

    fs, path = filesystem(spec.experiment_dir)
    trials = []
    for info in fs.get_file_info(pyarrow.fs.FileSelector(path)):
        if info.type != pyarrow.fs.FileType.Directory:
            continue
        params_path = posixpath.join(info.path, "params.json")
        if fs.get_file_info(params_path).type != pyarrow.fs.FileType.File:
            continue
        with fs.open_input_stream(params_path) as handle:
            params = json.loads(handle.read().decode())
        if "arch" not in params:
            continue
        trial_id = info.base_name.rpartition("_")[2]
        last: dict[str, Any] = {}
        result_path = posixpath.join(info.path, "result.json")
        if fs.get_file_info(result_path).type == pyarrow.fs.FileType.File:
            with fs.open_input_stream(result_path) as handle:
                for line in handle.read().decode().splitlines():
                    try:
                        last = json.loads(line)
                    except ValueError:
                        break  # a torn last line: keep the one before
        trial_id = str(last.get("trial_id", trial_id))
        order = params.get("suggestion")
        trials.append((order if isinstance(order, int) else 10**9, trial_id, params, last))
    if not trials:
        raise ValueError("no trial directory with a params.json")
    trials.sort(key=lambda t: (t[0], t[1]))
    space = experiment.space
    if space is None:
        space = experiment.benchmark.space if experiment.benchmark is not None else make_space(spec.space)
    searcher = make_searcher(spec.searcher, space, metric=experiment.metric, mode=experiment.mode,
                             **spec.searcher_options())
    searcher.set_max_concurrency(spec.max_concurrent)
    search = searcher.search
    for _, trial_id, params, last in trials:
        arch = Architecture.from_config(params)
        search.pending[trial_id] = arch
        search._seen.add(arch)
        value = last.get(experiment.metric)
        if is_number(value):
            search.complete(trial_id, float(value), fidelity=last.get("training_iteration"))
        else:
            search.complete(trial_id, None, error=True)
    return searcher, len(trials)


def latest_experiment(storage: str, kind: str | None = None) -> str:
    """The raynas experiment under ``storage`` (a path or URI) whose settings were written last.

    ``kind`` (``"search"``, ``"compress"``): only experiments of that kind.
    """
    import pyarrow.fs

    fs, root = filesystem(storage)
    if not is_uri(storage):
        storage = root
    specs = []
    if fs.get_file_info(root).type == pyarrow.fs.FileType.Directory:
        for entry in fs.get_file_info(pyarrow.fs.FileSelector(root)):
            if entry.type == pyarrow.fs.FileType.Directory:
                info = fs.get_file_info(posixpath.join(entry.path, SPEC_FILE))
                if info.type == pyarrow.fs.FileType.File and (kind is None or _kind_of(fs, info.path) == kind):
                    specs.append((info.mtime_ns or 0, entry.base_name))
    if not specs:
        what = "raynas experiment" if kind is None else f"`raynas {kind}` experiment"
        raise FileNotFoundError(f"no {what} to resume under {storage!r}")
    return join_location(storage, max(specs)[1])


def _kind_of(fs, spec_path: str) -> str | None:
    try:
        with fs.open_input_stream(spec_path) as handle:
            return json.loads(handle.read().decode()).get("kind", "search")
    except (OSError, ValueError):
        return None


def init_ray(num_cpus: int | None = None, log_to_driver: bool = True, log_level: str | None = None) -> None:
    """Attach to the cluster in ``RAY_ADDRESS`` if set, else start a local Ray runtime.

    ``log_to_driver=False`` (local Ray only) keeps the workers' output out of the driver's: tabular
    trials print nothing worth reading, and a failing one's traceback is in its ``error.txt``.
    ``log_level`` (e.g. ``"WARNING"``, local Ray only): the least severe record the trial workers'
    ``ray.train`` loggers pass on (:data:`raynas.trainables.training.RAY_TRAIN_LOG_LEVEL_ENV`);
    ``raynas search`` without ``--verbose`` drops Ray Train's "Checkpoint successfully created"
    line, one per trial and epoch, this way. ``None``: Ray's default. (``ray.LoggingConfig`` would
    do it for every Ray logger, but with it Ray's exit printed a ``SystemExit`` traceback.)
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
    else:
        from raynas.trainables.training import RAY_TRAIN_LOG_LEVEL_ENV

        env = {"env_vars": {RAY_TRAIN_LOG_LEVEL_ENV: log_level}} if log_level else None
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver, runtime_env=env)


def report(results: tune.ResultGrid, spec: SearchSpec, metric: str, mode: str) -> dict[str, object]:
    """Write ``results.csv`` and ``best_so_far.png`` into the experiment directory; return the summary."""
    frame = results.get_dataframe()
    title = f"{spec.searcher} on {spec.name}"
    if not is_uri(spec.experiment_dir):
        return write_report(frame, metric, mode, spec.experiment_dir, title=title,  # type: ignore[arg-type]
                            spec=dataclasses.asdict(spec))
    return _report_to_uri(frame, metric, mode, spec.experiment_dir, title, spec=dataclasses.asdict(spec))


def _report_to_uri(frame, metric: str, mode: str, experiment_dir: str, title: str,
                   spec: dict[str, Any] | None = None) -> dict[str, object]:
    """Write the report locally, then copy it next to Tune's files in remote storage.

    ``spec`` (the run's settings) is passed on: the local temporary directory holds no ``raynas.json``.
    """
    import pyarrow.fs

    fs, path = filesystem(experiment_dir)
    with tempfile.TemporaryDirectory() as local:
        summary = write_report(frame, metric, mode, local, title=title, spec=spec)  # type: ignore[arg-type]
        pyarrow.fs.copy_files(local, path, destination_filesystem=fs)
    for key in ("results_csv", "plot"):
        if summary.get(key):
            summary[key] = join_location(experiment_dir, os.path.basename(str(summary[key])))
    return summary


def run_search(spec: SearchSpec, resume: bool = False, verbose: bool = True, *, console: bool = False,
               tune_verbose: int | None = None) -> tuple[tune.ResultGrid, dict]:
    """Run (or resume) a search and write its report. Returns the ResultGrid and the summary.

    ``console`` / ``tune_verbose``: see :func:`build_tuner` (a new run; a resumed one prints as it did).
    """
    results, summary, _ = run_experiment(spec, resume=resume, verbose=verbose, console=console,
                                         tune_verbose=tune_verbose)
    return results, summary


def run_experiment(spec: SearchSpec, resume: bool = False,
                   verbose: bool = True, *, console: bool = False,
                   tune_verbose: int | None = None) -> tuple[tune.ResultGrid, dict, Experiment]:
    """:func:`run_search`, also returning the :class:`Experiment` (with the searcher Tune ran).

    How the run ended is ``summary["status"]`` and :data:`LAST_RUN` (a :class:`RunOutcome`): the
    command line turns it into its exit status (an interrupted run returns normally here, as Tune's
    ``fit`` does). ``resume`` reloads the spec from ``spec.experiment_dir`` (a :class:`CompressSpec`
    for a compression run) and restores Tune's state there.
    """
    global LAST_RUN
    LAST_RUN = None
    if resume:
        spec = SearchSpec.load(spec.experiment_dir)
    check_data(spec)
    init_ray()
    check_cluster_resources(spec)
    if resume:
        tuner, spec, experiment = restore_tuner(spec.experiment_dir)
    else:
        experiment = build_experiment(spec)
        tuner = build_tuner(spec, experiment, console=console, tune_verbose=tune_verbose)
    with _watch_interrupt() as interrupted, _quiet_trial_errors():
        results = tuner.fit()
    summary = report(results, spec, experiment.metric, experiment.mode)
    summary["experiment_dir"] = spec.experiment_dir
    if verbose:
        print(f"\nexperiment: {spec.experiment_dir}")
        print(format_summary(summary, experiment.metric))
    if interrupted.is_set():
        LAST_RUN = RunOutcome("interrupted", spec, summary, experiment.metric)
    elif len(results) and not _any_reported(results, experiment.metric):
        LAST_RUN = RunOutcome("no_results", spec, summary, experiment.metric, _first_error(results))
    else:
        LAST_RUN = RunOutcome("finished", spec, summary, experiment.metric)
    summary["status"] = LAST_RUN.status
    return results, summary, experiment


class _watch_interrupt:
    """Context manager: an Event set when Tune's run stopped on a signal.

    Tune sets its own SIGINT/SIGUSR1 handler inside ``tune.run`` and only logs "Experiment has been
    interrupted" (Ray 2.x internals: ``ray.tune.tune._setup_signal_catching``); the event it returns
    is captured here. Without those internals nothing is captured (the event stays clear).
    """

    def __enter__(self):
        import threading

        self.event = threading.Event()
        try:
            import ray.tune.tune as tune_module
        except ImportError:  # pragma: no cover
            self.module = None
            return self.event
        self.module = tune_module
        self.original = getattr(tune_module, "_setup_signal_catching", None)
        if self.original is None:  # pragma: no cover
            self.module = None
            return self.event
        outer = self

        def setup_signal_catching(*args, **kwargs):
            tune_event = outer.original(*args, **kwargs)
            outer.tune_event = tune_event
            return tune_event

        self.tune_event = None
        tune_module._setup_signal_catching = setup_signal_catching
        return self.event

    def __exit__(self, *exc) -> None:
        if self.module is not None:
            self.module._setup_signal_catching = self.original
            if self.tune_event is not None and self.tune_event.is_set():
                self.event.set()


class _quiet_trial_errors:
    """Drop Tune's "Trial task failed for trial ..." tracebacks (one per trial and retry): raynas reports
    the first trial's error once when no trial succeeds; each trial's error.txt keeps the rest."""

    class _Filter:
        def filter(self, record) -> bool:
            return not str(record.msg).startswith("Trial task failed for trial")

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("ray.tune.execution.tune_controller")
        self.filter = self._Filter()
        self.logger.addFilter(self.filter)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeFilter(self.filter)


def _any_reported(results: tune.ResultGrid, metric: str) -> bool:
    """Whether some trial's final result holds a finite ``metric``."""
    from raynas.search.base import is_number

    return any(result.metrics and is_number(result.metrics.get(metric)) for result in results)


def _first_error(results: tune.ResultGrid) -> str | None:
    """The error text of the first trial (in Tune's order) that errored, trimmed to its last lines."""
    import re

    for result in results:
        if result.error is not None:
            # no caret/tilde underlines, no colour codes: the frames nearest the error and its message
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(result.error))
            lines = [line for line in text.splitlines() if line.strip() and not re.fullmatch(r"\s*[\^~]+\s*", line)]
            return "\n".join(lines[-12:])
    return None


def load_results(experiment_dir: str) -> tuple[tune.ResultGrid, SearchSpec, str, str]:
    """Reload a finished or interrupted experiment as a ``ResultGrid`` (no trainable needed)."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    experiment_dir = absolute_location(experiment_dir)
    spec = SearchSpec.load(experiment_dir)
    metric = spec.metric
    analysis = ExperimentAnalysis(experiment_dir, default_metric=metric, default_mode=spec.mode)
    return ResultGrid(analysis), spec, str(metric), spec.mode
