"""Real training of an architecture's network on images, one epoch per ``step()``.

:class:`ImageTrainable` trains the network of any space with a model builder
(``nb201``, ``nb101``, ``macro_cnn``, ``macro_mlp``, ``mobilenet``; see
:func:`raynas.models.build_model`) on

* ``digits`` (default): scikit-learn's 8x8 digits, offline, held in memory (seconds per trial on a CPU);
* ``cifar10`` / ``cifar100``: torchvision's CIFAR from ``data_dir`` with the standard augmentation
  and a seeded validation split of the training set (:mod:`raynas.data.vision`); downloaded only
  with ``download=True``; if absent the trial fails in ``setup`` with an error naming the path and
  ``--download``;
* ``fake``: CIFAR-shaped torchvision ``FakeData`` (tests, throughput); ``fake_size`` images
  (default ``$RAYNAS_FAKE_SIZE``, else 1,024: set the variable before ``raynas search --dataset fake``
  starts local Ray, or in the job's ``runtime_env`` on a cluster, to size a search's data).

The recipe is NAS-Bench-201's: SGD with Nesterov momentum 0.9, cosine
annealing over ``epochs``, weight decay, cross-entropy; every result reports
``val_acc`` (percent) and the epoch's training throughput ``images_per_s``.

**Resources.** The trial trains on CUDA when Tune gave it a GPU (Ray sets
``CUDA_VISIBLE_DEVICES``, fractional GPUs included) and on the CPU otherwise.
On CUDA: automatic mixed precision (``torch.autocast`` in ``amp_dtype``:
bfloat16 where the GPU supports it, else float16 with ``torch.amp.GradScaler``),
``channels_last`` tensors, cuDNN autotuning and, on the resident data path,
CUDA graphs (``cuda_graphs``, on by default: the forward and backward of every
full batch replay two graphs captured on the first one,
:mod:`raynas.models.cuda_graphs`; small networks are otherwise bound by kernel
launches). On the CPU the same code runs
with AMP off, ``channels_last`` (faster for these convolutions on CPU too) and
as many torch threads as the trial has CPUs.

**Data path** (``data_path``, :mod:`raynas.data.resident`): ``resident`` keeps
the whole data set on the device as ``uint8`` (copied once per trial, kept
across actor reuse) and crops, flips and normalises each batch there with a
``torch.Generator`` on the device, no ``DataLoader`` workers: small NAS
networks no longer wait for a CPU pipeline. ``loader`` is the torchvision
``DataLoader`` (pinned memory, worker processes on CUDA). ``auto`` (default)
picks ``resident`` on CUDA when the data take at most a quarter of the device
memory the trial may use (free memory, and its share of the GPU), ``loader``
otherwise and on the CPU (where the network, not the data, bounds a trial);
``digits`` is always in memory. The choice is logged (logger
``raynas.data.resident``) and reported as ``data_path`` in every result.

**Checkpoints** hold model, optimiser, LR scheduler, AMP scaler, epoch, the
data path and the RNG states (batch-order generator, the device generator of
the resident path, torch CPU and CUDA), so a trial that ASHA or PBT pauses, or
that Tune retries after a failure, resumes exactly where it stopped: the epochs
after a restore draw the same batches and give the same results as
uninterrupted training (bit-identical on the CPU). A trial restored onto
another data path (e.g. on a GPU with less free memory) trains on correctly and
logs a warning that its batches differ.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import time
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from ray import tune

from raynas.architecture import Architecture
from raynas.data.resident import DATA_PATHS, ResidentImageData, decide_data_path
from raynas.models import MODEL_SIZE_KEYS, build_model, model_stats
from raynas.models.amp import scaled_step
from raynas.models.cuda_graphs import capture_training_graphs, eager_forward
from raynas.models.checkpoint import load_training_state, training_state
from raynas.registry import make_space
from raynas.spaces.base import InvalidArchitectureError

#: Values of ``config["dataset"]``.
DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "fake")

#: Every config key but the required ``arch``; ``None`` means "the recipe default for the
#: space and data set" (:func:`recipe_defaults`) or, for the hardware keys, "automatic".
IMAGE_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "space": None,  # from the architecture
    "channels": None,
    "cells_per_stage": None,
    "width_mult": None,  # macro_cnn, macro_mlp, mobilenet
    "epochs": None,
    "lr": None,
    "batch_size": None,
    "weight_decay": 5e-4,
    "seed": 0,
    "data_dir": None,  # $RAYNAS_DATA_DIR or ~/raynas_data
    "download": False,
    "val_fraction": None,
    "split_seed": 0,
    "fake_size": None,  # None: $RAYNAS_FAKE_SIZE, else 1024
    "device": "auto",  # "auto" | "cpu" | "cuda"
    "amp": None,  # None: on with CUDA; True on the CPU is turned off (reported as amp=False)
    "channels_last": True,
    "num_workers": None,  # None: the trial's CPUs on CUDA (at most 8), 0 (in-process loading) on the CPU
    "num_threads": None,  # None: the trial's CPUs (1 outside Tune)
    "data_path": "auto",  # "auto" | "resident" | "loader" (raynas.data.resident.choose_data_path)
    "amp_dtype": None,  # None: bfloat16 where the GPU supports it, else float16; or "bfloat16" / "float16"
    "cuda_graphs": None,  # None/True: on with CUDA and resident data (raynas.models.cuda_graphs); False: eager
}

#: The main job's task, NB201 cells on ``digits`` (see :func:`recipe_defaults`).
DIGITS_NB201: dict[str, Any] = {
    "channels": 4, "cells_per_stage": 1, "epochs": 6, "lr": 0.05, "batch_size": 32, "val_fraction": 0.85,
}

#: Accepted spellings of ``config["amp_dtype"]``.
AMP_DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
}

_EVAL_BATCH = 1024

logger = logging.getLogger(__name__)

#: Environment variable naming the level of the ``ray.train`` loggers in a trial's worker (e.g. ``WARNING``:
#: no "Checkpoint successfully created" line per epoch); set by ``raynas search`` without ``--verbose``.
RAY_TRAIN_LOG_LEVEL_ENV = "RAYNAS_RAY_TRAIN_LOG_LEVEL"


def quiet_ray_train_logs() -> None:
    """Apply :data:`RAY_TRAIN_LOG_LEVEL_ENV` to this worker's ``ray.train`` loggers, if it is set."""
    level = os.environ.get(RAY_TRAIN_LOG_LEVEL_ENV)
    if level:
        logging.getLogger("ray.train").setLevel(level)


def amp_dtype_for(device: torch.device, requested: str | None) -> torch.dtype:
    """The autocast dtype: ``requested``, else bfloat16 where the CUDA device supports it, else float16."""
    if requested is not None:
        return AMP_DTYPES[requested]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def recipe_defaults(space: str, dataset: str) -> dict[str, Any]:
    """Network size and training recipe of a (space, data set) pair.

    ``digits`` is CPU-sized. NB201 on digits is the main job's task
    (:data:`DIGITS_NB201`): C=4, one cell per stage, 6 epochs of batch 32 on
    15 % of the images (269), validated on the other 1,528, so a trial takes
    under a second on one core and random cells spread from about 65 % to 92 %
    (median 87 %). With 10 epochs on 80 % of the images nearly every cell
    reached 98-99 % and a search had nothing to find. On so little data and
    training, shallow cells (skip connections, one or two convolutions) tend
    to win. Other spaces on digits: C=16 (NB101),
    the macro CNN and MobileNet at a quarter of their widths, 10 epochs on
    80 % of the images. CIFAR and ``fake`` use the published sizes and budgets: NB201
    C=16, N=5, 200 epochs; NB101 128 channels, 3 cells per stack, 108 epochs;
    the macro and MobileNet spaces at full width for 200 epochs (our choice:
    their papers train on other data); lr 0.1 and batch 256 (NB201's recipe).
    """
    if space not in MODEL_SIZE_KEYS:
        raise ValueError(f"no training recipe for space {space!r}; real training supports {sorted(MODEL_SIZE_KEYS)}")
    if dataset == "digits":
        if space == "nb201":  # the main job: few images, few epochs, so cells really differ
            return dict(DIGITS_NB201)
        size = {
            "nb101": {"channels": 16, "cells_per_stage": 1},
            "macro_cnn": {"width_mult": 0.25}, "macro_mlp": {"width_mult": 1.0}, "mobilenet": {"width_mult": 0.25},
        }
        return {**size[space], "epochs": 10, "lr": 0.05, "batch_size": 64, "val_fraction": 0.2}
    size = {
        "nb201": {"channels": 16, "cells_per_stage": 5}, "nb101": {"channels": 128, "cells_per_stage": 3},
        "macro_cnn": {"width_mult": 1.0}, "macro_mlp": {"width_mult": 1.0}, "mobilenet": {"width_mult": 1.0},
    }
    epochs = {"nb201": 200, "nb101": 108}
    return {**size[space], "epochs": epochs.get(space, 200), "lr": 0.1, "batch_size": 256, "val_fraction": 0.1}


def _positive_int(name: str, key: str, value: Any, allow_zero: bool = False) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    lower = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lower:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name}: config[{key!r}] must be a {kind} integer, got {value!r}")
    return int(value)


def _read_settings(name: str, config: dict[str, Any], space: str, dataset: str) -> dict[str, Any]:
    """Defaults merged with ``config``, type- and range-checked with messages naming the key."""
    recipe = recipe_defaults(space, dataset)
    settings: dict[str, Any] = {}
    for key, default in IMAGE_DEFAULTS.items():
        value = config.get(key, default)
        settings[key] = recipe.get(key) if value is None and key in recipe else value
    if settings["fake_size"] is None:
        settings["fake_size"] = os.environ.get("RAYNAS_FAKE_SIZE") or 1024
        if isinstance(settings["fake_size"], str):
            try:
                settings["fake_size"] = int(settings["fake_size"])
            except ValueError:
                raise ValueError(
                    f"{name}: $RAYNAS_FAKE_SIZE must be an integer, got {settings['fake_size']!r}") from None
    for key in ("epochs", "batch_size", "fake_size"):
        settings[key] = _positive_int(name, key, settings[key])
    accepted = MODEL_SIZE_KEYS[space]
    for key in ("channels", "cells_per_stage", "width_mult"):
        if key not in accepted:
            if config.get(key) is not None:
                takes = [k for k in ("channels", "cells_per_stage", "width_mult") if k in accepted]
                raise ValueError(f"{name}: config[{key!r}] does not apply to space {space!r}; it takes {takes}")
            settings.pop(key)
        elif key == "width_mult":
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
                raise ValueError(f"{name}: config['width_mult'] must be a positive number, got {value!r}")
            settings[key] = float(value)
        else:
            settings[key] = _positive_int(name, key, settings[key])
    for key in ("num_workers", "num_threads"):
        if settings[key] is not None:
            settings[key] = _positive_int(name, key, settings[key], allow_zero=key == "num_workers")
    for key, lower, strict in (("lr", 0.0, True), ("weight_decay", 0.0, False)):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name}: config[{key!r}] must be a finite number, got {value!r}")
        if value < lower or (strict and value == lower):
            raise ValueError(f"{name}: config[{key!r}] must be {'>' if strict else '>='} {lower}, got {value!r}")
        settings[key] = float(value)
    fraction = settings["val_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0.0 < fraction < 1.0:
        raise ValueError(f"{name}: config['val_fraction'] must be a number strictly between 0 and 1, got {fraction!r}")
    settings["val_fraction"] = float(fraction)
    for key in ("seed", "split_seed"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name}: config[{key!r}] must be an integer, got {value!r}")
        settings[key] = int(value)
    for key in ("download", "channels_last"):
        if not isinstance(settings[key], bool):
            raise ValueError(f"{name}: config[{key!r}] must be true or false, got {settings[key]!r}")
    for key in ("amp", "cuda_graphs"):
        if settings[key] is not None and not isinstance(settings[key], bool):
            raise ValueError(f"{name}: config[{key!r}] must be true, false or null (automatic), got {settings[key]!r}")
    if settings["data_path"] not in DATA_PATHS:
        raise ValueError(
            f"{name}: config['data_path'] must be one of {list(DATA_PATHS)}, got {settings['data_path']!r}")
    if settings["amp_dtype"] is not None and settings["amp_dtype"] not in AMP_DTYPES:
        raise ValueError(f"{name}: config['amp_dtype'] must be null (automatic) or one of {sorted(AMP_DTYPES)}, "
                         f"got {settings['amp_dtype']!r}")
    if settings["device"] not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{name}: config['device'] must be 'auto', 'cpu' or 'cuda', got {settings['device']!r}")
    if settings["data_dir"] is not None and not isinstance(settings["data_dir"], (str, os.PathLike)):
        raise ValueError(f"{name}: config['data_dir'] must be a path, got {settings['data_dir']!r}")
    settings["dataset"], settings["space"] = dataset, space
    return settings


def select_device(name: str, requested: str) -> torch.device:
    """``cuda`` when a GPU is visible (``auto``) or asked for, else the CPU; a clear error for a missing GPU."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise RuntimeError(
            f"{name}: config['device'] is 'cuda' but no CUDA device is visible to this trial "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); give the trial a GPU "
            "(raynas search --gpus-per-trial, or tune.with_resources(trainable, {'gpu': 1})) or use device 'auto'"
        )
    return torch.device("cpu")


class ImageTrainable(tune.Trainable):
    """Train one architecture's network on an image data set; report validation accuracy (percent) per epoch.

    Config: ``arch`` (JSON, required) plus the keys of :data:`IMAGE_DEFAULTS`
    (see :func:`recipe_defaults` for the ``None`` ones). ``space`` defaults
    to the architecture's own space.
    """

    #: Data set used when the config names none.
    default_dataset = "digits"
    #: Name of the checkpoint file inside a checkpoint directory.
    checkpoint_file = "image_trainable.pt"

    def setup(self, config: dict[str, Any]) -> None:
        quiet_ray_train_logs()
        self._data_key: tuple | None = None
        self._resident: ResidentImageData | None = None
        self._build(config)

    # ------------------------------------------------------------------ set-up
    @property
    def _label(self) -> str:
        return type(self).__name__

    def _parse_arch(self, config: dict[str, Any]) -> tuple[Architecture, Any]:
        try:
            arch = Architecture.from_config(config)
            space_name = config.get("space") or arch.space
            if space_name != arch.space:
                raise InvalidArchitectureError(
                    f"config['space'] is {space_name!r} but the architecture is of space {arch.space!r}"
                )
            space = make_space(space_name)
            space.validate(arch)
        except (InvalidArchitectureError, ValueError) as exc:
            raise InvalidArchitectureError(f"{self._label}: invalid config['arch']: {exc}") from exc
        if space.name not in MODEL_SIZE_KEYS:
            raise ValueError(
                f"{self._label}: no model builder for space {space.name!r}; "
                f"real training supports {sorted(MODEL_SIZE_KEYS)}"
            )
        return arch, space

    def _trial_gpus(self) -> float:
        """GPUs (possibly a fraction) Tune gave this trial; 0 outside Tune."""
        resources = self.trial_resources
        if resources is None:
            return 0.0
        try:
            return float(resources.required_resources.get("GPU", 0.0))
        except AttributeError:  # pragma: no cover - other resource objects
            return 0.0

    def _trial_cpus(self) -> int:
        """CPUs Tune gave this trial (1 outside Tune)."""
        resources = self.trial_resources
        if resources is None:
            return 1
        try:
            return max(1, int(resources.required_resources.get("CPU", 1)))
        except AttributeError:  # pragma: no cover - other resource objects
            return 1

    def _build(self, config: dict[str, Any]) -> None:
        """(Re)create data, model, optimiser, scheduler and scaler from ``config``; epoch 0."""
        arch, space = self._parse_arch(config)
        dataset = config.get("dataset", self.default_dataset)
        if dataset not in DATASETS:
            raise ValueError(f"{self._label}: config['dataset'] must be one of {list(DATASETS)}, got {dataset!r}")
        settings = _read_settings(self._label, config, space.name, dataset)
        self.arch, self.space, self.settings = arch, space, settings
        self.arch_str = space.describe(arch)
        self.device = select_device(self._label, settings["device"])
        self.amp = self.device.type == "cuda" and settings["amp"] is not False
        self.amp_dtype = amp_dtype_for(self.device, settings["amp_dtype"])
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        cpus = self._trial_cpus()
        if self.device.type == "cpu":
            torch.set_num_threads(settings["num_threads"] or cpus)
        workers = settings["num_workers"]
        if workers is None:
            workers = min(8, cpus) if self.device.type == "cuda" else 0
        self.num_workers = workers

        self.memory_format = torch.channels_last if settings["channels_last"] else torch.contiguous_format
        self._load_data(settings)
        # CUDA graphs: captured on the first full training batch of this model (see _train_epoch); resident
        # data only: a DataLoader's pin-memory thread calls CUDA while the graph is captured, which breaks
        # the capture (measured on an H200), and that path is bound by its workers, not by kernel launches.
        self.graphs_wanted = (self.device.type == "cuda" and settings["cuda_graphs"] is not False
                              and self.data_path == "resident")
        if settings["cuda_graphs"] and self.device.type == "cuda" and self.data_path != "resident":
            logger.info("%s: CUDA graphs are off on the %s data path (its pin-memory thread cannot run while a "
                        "graph is captured)", self._label, self.data_path)
        self.graphs_pending, self.graphed, self.graphs_failure = self.graphs_wanted, False, None

        torch.manual_seed(settings["seed"])
        size = {k: settings[k] for k in ("channels", "cells_per_stage", "width_mult") if k in settings}
        if "input_size" in MODEL_SIZE_KEYS[space.name]:
            size["input_size"] = self.input_shape[-1]  # from the data, not the config
        self.model = build_model(
            space, arch, num_classes=self.info_num_classes, in_channels=self.input_shape[0], **size,
        ).to(self.device)
        self.model = self.model.to(memory_format=self.memory_format)
        self.stats = model_stats(self.model, self.input_shape)
        self.num_params = self.stats.params
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=settings["lr"], momentum=0.9, nesterov=True,
            weight_decay=settings["weight_decay"],
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=settings["epochs"])
        # bfloat16 has float32's range: no loss scaling needed (nor wanted).
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.amp_dtype == torch.float16)
        # A private generator for batch order (and DataLoader worker seeds), so other RNG users don't change the run.
        self.generator = torch.Generator().manual_seed(settings["seed"])
        # The resident path draws order, crops and flips on the device: a generator there (on the CPU, the same one).
        self.data_generator = (self.generator if self.device.type == "cpu"
                               else torch.Generator(device=self.device).manual_seed(settings["seed"]))
        self.epoch = 0

    def _load_data(self, settings: dict[str, Any]) -> None:
        """The data on the resident path (:class:`ResidentImageData` on the device) or as DataLoader datasets.

        ``digits`` is always resident unless ``data_path`` is ``loader``; torchvision data follow
        :func:`raynas.data.resident.decide_data_path`. Kept across actor reuse when nothing it
        depends on changed.
        """
        dataset = settings["dataset"]
        key = (dataset, settings["data_dir"], settings["download"], settings["val_fraction"],
               settings["split_seed"], settings["fake_size"], str(self.device), settings["data_path"])
        if key == self._data_key:  # actor reuse: same data, keep it
            if self._resident is not None:
                self._resident.memory_format = self.memory_format
            return
        self._resident: ResidentImageData | None = None
        self._datasets = None
        if dataset == "digits":
            from raynas.data.digits import load_digits_split
            from raynas.data.resident import DataPathChoice

            requested = settings["data_path"]
            choice = (DataPathChoice("resident", "digits (0.5 MB) is always held in memory") if requested == "auto"
                      else decide_data_path(requested, 0, self.device, label=self._label))
            split = load_digits_split(settings["val_fraction"], settings["split_seed"])
            if choice.path == "resident":
                self._resident = ResidentImageData(*split, device=self.device, scale=None, augment=False,
                                                   memory_format=self.memory_format, name="digits")
            else:
                from torch.utils.data import TensorDataset

                from raynas.data.vision import DatasetInfo, ImageDatasets

                self._datasets = ImageDatasets(TensorDataset(split.x_train, split.y_train),
                                               TensorDataset(split.x_val, split.y_val),
                                               DatasetInfo("digits", 10, 1, 8))
            self.info_num_classes, self.input_shape = 10, (1, 8, 8)
            self.train_size = int(split.x_train.shape[0])
        else:
            from raynas.data.vision import image_data_bytes, load_image_datasets, load_image_tensors

            choice = decide_data_path(settings["data_path"], image_data_bytes(dataset, settings["fake_size"]),
                                      self.device, gpu_share=self._trial_gpus(), label=self._label)
            common = dict(download=settings["download"], val_fraction=settings["val_fraction"],
                          split_seed=settings["split_seed"], fake_size=settings["fake_size"])
            if choice.path == "resident":
                tensors = load_image_tensors(dataset, settings["data_dir"], **common)
                self._resident = ResidentImageData.from_tensors(tensors, self.device, augment=True,
                                                                memory_format=self.memory_format)
                info = tensors.info
                self.train_size = self._resident.num_train
            else:
                data = load_image_datasets(dataset, settings["data_dir"], **common)
                self._datasets, info = data, data.info
                self.train_size = len(data.train)
            self.info_num_classes, self.input_shape = info.num_classes, info.input_shape
        self.data_path, self.data_path_reason = choice.path, choice.reason
        self._data_key = key

    # ---------------------------------------------------------------- batches
    def _loader(self, train: bool):
        from torch.utils.data import DataLoader

        assert self._datasets is not None
        cuda = self.device.type == "cuda"
        return DataLoader(
            self._datasets.train if train else self._datasets.val,
            batch_size=self.settings["batch_size"] if train else max(self.settings["batch_size"], 256),
            shuffle=train,
            generator=self.generator if train else None,
            num_workers=self.num_workers,
            pin_memory=cuda,
            # Fresh workers each epoch: their seeds come from self.generator, so a restored trial
            # draws the same augmentations as an uninterrupted one.
            persistent_workers=False,
        )

    def _batches(self, train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._resident is not None:
            if train:
                yield from self._resident.train_batches(self.settings["batch_size"], self.data_generator)
            else:
                yield from self._resident.val_batches(_EVAL_BATCH)
            return
        for x, y in self._loader(train):
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=True)

    # ---------------------------------------------------------------- training
    def _train_epoch(self) -> tuple[float, float]:
        """One pass over the training set: mean loss and images per second (waits for the device).

        Sets ``self.last_epoch_images`` to the images trained on.
        """
        self.model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        start = time.perf_counter()
        full = self.settings["batch_size"]
        for x, y in self._batches(train=True):
            n = y.shape[0]
            if n < 2:  # BatchNorm cannot train on a single example
                continue
            # Autocast's weight cache is off with CUDA graphs (they require it; these cells use each weight once).
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp,
                                cache_enabled=not self.graphs_wanted):
                if self.graphs_pending and n == full:
                    self._capture_graphs(x)
                logits = self.model(x) if n == full or not self.graphed else eager_forward(self.model, x)
                loss = F.cross_entropy(logits, y)
            scaled_step(loss, self.optimizer, self.scaler)
            total += loss.detach().double() * n
            seen += n
        self.scheduler.step()
        self.last_epoch_images = seen
        mean_loss = float(total) / max(seen, 1)  # float() waits for the device
        return mean_loss, seen / max(time.perf_counter() - start, 1e-9)

    def _capture_graphs(self, batch: torch.Tensor) -> None:
        """Capture the model's training forward and backward as CUDA graphs; on failure log why and stay eager."""
        self.graphs_pending = False
        started = time.perf_counter()
        self.graphs_failure = capture_training_graphs(self.model, batch)
        self.graphed = self.graphs_failure is None
        if self.graphed:
            logger.info("%s: CUDA graphs captured for %s (batch %d) in %.2f s", self._label, self.arch_str,
                        batch.shape[0], time.perf_counter() - started)
        else:
            logger.warning("%s: CUDA graph capture failed for %s, training eagerly instead: %s (set "
                           "config['cuda_graphs'] = False to skip the attempt)", self._label, self.arch_str,
                           self.graphs_failure)

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float]:
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        n = 0
        for x, y in self._batches(train=False):
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits = self.model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
            correct += (logits.argmax(dim=1) == y).sum()
            n += y.shape[0]
        return 100.0 * int(correct) / max(n, 1), float(loss_sum) / max(n, 1)

    def step(self) -> dict[str, Any]:
        """One epoch of training, then validation."""
        epochs = self.settings["epochs"]
        if self.epoch >= epochs:
            raise RuntimeError(f"{self._label}: all {epochs} epochs of {self.arch_str} were already trained")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        train_loss, images_per_s = self._train_epoch()
        self.epoch += 1
        val_acc, val_loss = self._evaluate()
        hardware: dict[str, Any] = {}
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            hardware = {
                "device_name": f"cuda:{index} {torch.cuda.get_device_name(index)} "
                               f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')})",
                "gpu_mem_peak_mb": round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1),
            }
        return {
            "val_acc": val_acc,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "epoch": self.epoch,
            "params": self.stats.params,
            "flops": self.stats.flops,
            "images_per_s": images_per_s,
            "train_images": self.last_epoch_images,
            "device": self.device.type,
            **hardware,
            "amp": self.amp,
            "amp_dtype": str(self.amp_dtype).removeprefix("torch.") if self.amp else "float32",
            "data_path": self.data_path,
            "cuda_graphs": self.graphed,
            "gpu_share": self._trial_gpus(),
            "arch_str": self.arch_str,
            "done": self.epoch >= epochs,
        }

    # ------------------------------------------------------------- checkpoints
    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write model, optimiser, scheduler, AMP scaler, epoch and RNG states to ``checkpoint_dir``."""
        state = {
            "arch": self.arch.to_json(),
            "dataset": self.settings["dataset"],
            "epoch": self.epoch,
            "data_path": self.data_path,
            **training_state(self.model, self.optimizer, self.scheduler, self.scaler, self.generator, self.device),
        }
        if self.data_generator is not self.generator:
            state["data_generator"] = self.data_generator.get_state()
        torch.save(state, os.path.join(checkpoint_dir, self.checkpoint_file))
        return None

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        """Restore what :meth:`save_checkpoint` wrote, so training resumes with identical behaviour."""
        if not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise TypeError(
                f"{self._label}: load_checkpoint expects a checkpoint directory, got {type(checkpoint_dir).__name__}"
            )
        path = os.path.join(checkpoint_dir, self.checkpoint_file)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{self._label}: no checkpoint file {self.checkpoint_file!r} in {checkpoint_dir}")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["arch"] != self.arch.to_json():
            raise ValueError(
                f"{self._label}: checkpoint {path} is for architecture {state['arch']}, "
                f"but this trial trains {self.arch.to_json()}"
            )
        if state.get("dataset", self.settings["dataset"]) != self.settings["dataset"]:
            raise ValueError(
                f"{self._label}: checkpoint {path} was trained on {state['dataset']!r}, "
                f"but this trial trains on {self.settings['dataset']!r}"
            )
        load_training_state(state, self.model, self.optimizer, self.scheduler, self.scaler, self.generator,
                            self.device)
        if self.data_generator is not self.generator and "data_generator" in state:
            self.data_generator.set_state(state["data_generator"].cpu())
        saved_path = state.get("data_path", self.data_path)
        if saved_path != self.data_path or (self.data_generator is not self.generator) != ("data_generator" in state):
            # E.g. a CUDA trial resumed on a node with less free memory, or on the CPU: training goes on
            # correctly, but with other batch orders and crops than the uninterrupted run would have drawn.
            logger.warning("%s: checkpoint %s was written on the %s data path (%s generator); this trial uses "
                           "the %s path on %s, so the remaining epochs draw other batches than an "
                           "uninterrupted run", self._label, path, saved_path,
                           "device" if "data_generator" in state else "CPU", self.data_path, self.device)
        self.epoch = int(state["epoch"])

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Rebuild everything for the new config (actor reuse; loaded data is kept) and start at epoch 0."""
        self._build(new_config)
        self.config = new_config
        return True
