"""CIFAR-10, CIFAR-100 and CIFAR-shaped ``FakeData`` through torchvision, with a held-out validation split.

* **Augmentation** (training images only): random crop 32 with padding 4,
  horizontal flip, then normalisation by the data set's channel mean and std.
  Validation images are only normalised.
* **Validation split**: ``val_fraction`` of the official *training* set, drawn
  by a permutation seeded with ``split_seed`` (every trial of a search sees the
  same split). The official test set is not touched by a search.
* **Data directory**: ``data_dir`` (default ``$RAYNAS_DATA_DIR`` or
  ``~/raynas_data``) holds torchvision's folders (``cifar-10-batches-py``,
  ``cifar-100-python``). Nothing is downloaded unless ``download=True`` (the
  CLI's ``--download``); a missing or corrupt folder raises
  :class:`DatasetNotFoundError`, whose message names the path and the flag.
  Downloads take a file lock in ``data_dir``, so concurrent trials on one node
  don't write the same files.
* ``fake``: torchvision ``FakeData`` of CIFAR shape (3x32x32, 10 classes),
  deterministic per index, for tests and throughput measurements offline.
* **Two forms**: :func:`load_image_datasets` gives PIL-based datasets for a
  ``DataLoader`` (augmentation on the CPU, per image);
  :func:`load_image_tensors` gives the same images, split the same way, as
  whole ``uint8`` tensors for :class:`raynas.data.resident.ResidentImageData`
  (the data set on the training device, augmented there per batch).
  :func:`image_data_bytes` tells how much memory the second form takes
  without loading anything.

This module does not import Ray; torchvision is imported on first use.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

#: Data sets of :func:`load_image_datasets` (``digits`` lives in :mod:`raynas.data.digits`).
VISION_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "fake")

#: torchvision's folder for each CIFAR data set, inside ``data_dir``.
CIFAR_FOLDERS: dict[str, str] = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

#: Channel mean and std of the training images (on the [0, 1] scale).
CIFAR_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fake": 10}
#: Images in the official training set (``fake``: ``fake_size``).
_TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000}
_PRETTY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not in ``data_dir`` and downloading was not asked for."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about the images."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)


@dataclass
class ImageDatasets:
    """Training (augmented) and validation subsets of one data set."""

    train: Dataset
    val: Dataset
    info: DatasetInfo


def default_data_dir() -> str:
    """``$RAYNAS_DATA_DIR``, else ``~/raynas_data`` (expanded on the node that runs the trial)."""
    return os.path.abspath(os.path.expanduser(os.environ.get("RAYNAS_DATA_DIR") or "~/raynas_data"))


class TransformedSubset(Dataset):
    """``base[indices[i]]`` with ``transform`` applied to the image (bases keep ``transform=None``)."""

    def __init__(self, base: Dataset, indices: Sequence[int], transform: Callable[[Any], Any] | None) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[self.indices[index]]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(label)


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Channel mean and std (on the [0, 1] scale) used for ``name`` (``fake`` uses CIFAR-10's)."""
    return CIFAR_STATS["cifar100" if name == "cifar100" else "cifar10"]


def image_transforms(name: str, augment: bool) -> Callable[[Any], torch.Tensor]:
    """The standard CIFAR pipeline (crop 32 pad 4 and flip when ``augment``; then tensor and normalise)."""
    from torchvision import transforms

    mean, std = normalisation(name)
    steps: list[Any] = []
    if augment:
        steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def missing_dataset_message(name: str, data_dir: str, detail: str = "") -> str:
    folder = os.path.join(data_dir, CIFAR_FOLDERS[name])
    return (
        f"{_PRETTY[name]} not found in {folder}{detail}. Pass --download (config download=True) "
        f"to fetch it into {data_dir}, or point --data-dir (config data_dir) at a directory "
        f"that holds {CIFAR_FOLDERS[name]}/."
    )


def check_dataset(name: str, data_dir: str | None = None, download: bool = False) -> str:
    """Fail fast, before any training: the absolute ``data_dir`` if ``name`` can be loaded from it.

    Raises :class:`DatasetNotFoundError` naming the path and ``--download``
    when a CIFAR folder is absent and ``download`` is false.
    """
    if name not in VISION_DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from digits, {', '.join(VISION_DATASETS)}")
    data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else default_data_dir()
    if name in CIFAR_FOLDERS and not download and not os.path.isdir(os.path.join(data_dir, CIFAR_FOLDERS[name])):
        raise DatasetNotFoundError(missing_dataset_message(name, data_dir))
    return data_dir


def _load_cifar(name: str, data_dir: str, download: bool) -> Dataset:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    if download:
        from filelock import FileLock

        os.makedirs(data_dir, exist_ok=True)
        with FileLock(os.path.join(data_dir, f".{name}.download.lock")):
            return cls(data_dir, train=True, transform=None, download=True)
    try:
        return cls(data_dir, train=True, transform=None, download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotFoundError(
            missing_dataset_message(name, data_dir, " (the folder is there but incomplete or corrupted)")
        ) from exc


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random split of ``range(n)`` into training and validation indices."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise ValueError(f"a validation split of {val_fraction} leaves no training images out of {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    return order[n_val:], order[:n_val]


def load_image_datasets(
    name: str,
    data_dir: str | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    fake_size: int = 1024,
    augment: bool = True,
) -> ImageDatasets:
    """Training and validation subsets of ``name`` (``cifar10``, ``cifar100`` or ``fake``).

    Args:
        data_dir: where torchvision's CIFAR folders are (or go, with ``download``).
        download: fetch a missing CIFAR data set (never done unless asked).
        val_fraction: share of the official training images held out for validation.
        split_seed: seed of the split.
        fake_size: images of ``fake`` in all (training + validation).
        augment: crop and flip the training images.
    """
    if name == "fake":
        from torchvision.datasets import FakeData

        if isinstance(fake_size, bool) or not isinstance(fake_size, int) or fake_size < 2:
            raise ValueError(f"fake_size must be an integer >= 2, got {fake_size!r}")
        base: Dataset = FakeData(size=fake_size, image_size=(3, 32, 32), num_classes=10, random_offset=0)
    else:
        data_dir = check_dataset(name, data_dir, download)
        base = _load_cifar(name, data_dir, download)
    train_idx, val_idx = split_indices(len(base), val_fraction, split_seed)  # type: ignore[arg-type]
    info = DatasetInfo(name, _NUM_CLASSES[name], 3, 32)
    return ImageDatasets(
        TransformedSubset(base, train_idx, image_transforms(name, augment)),
        TransformedSubset(base, val_idx, image_transforms(name, False)),
        info,
    )


# ------------------------------------------------------------ whole tensors
@dataclass
class ImageTensors:
    """A data set split as :func:`load_image_datasets` splits it, as whole tensors.

    Images are ``uint8`` ``(N, C, H, W)`` (0-255, not normalised, not augmented),
    labels ``int64``; ``mean`` and ``std`` are the normalisation on the [0, 1] scale.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    info: DatasetInfo
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.x_train, self.y_train, self.x_val, self.y_val))


def image_data_bytes(name: str, fake_size: int = 1024) -> int:
    """Bytes that :func:`load_image_tensors` would hold for ``name`` (uint8 images and int64 labels), unloaded.

    CIFAR-10/100: 50,000 x (3x32x32 + 8) = 154 MB; ``fake``: ``fake_size`` images of the same size.
    """
    if name not in VISION_DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(VISION_DATASETS)}")
    images = fake_size if name == "fake" else _TRAIN_IMAGES[name]
    return int(images) * (3 * 32 * 32 + 8)


@functools.lru_cache(maxsize=2)
def _fake_arrays(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``FakeData(size, (3, 32, 32), 10)`` as uint8 ``(N, 3, 32, 32)`` and labels, pixel-identical to it.

    FakeData draws image ``i`` with ``torch.manual_seed(i)``, ``randn`` then ``randint``, and turns the
    float image into PIL through ``(HWC * 255).astype(uint8)``; doing the same without PIL is ~10x faster
    (tests/trainables/test_resident_data.py checks equality against FakeData itself). Cached (actor reuse);
    callers index into the result, never write it.
    """
    generator = torch.Generator()
    images = np.empty((size, 32, 32, 3), dtype=np.uint8)
    labels = np.empty(size, dtype=np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(size):
            generator.manual_seed(i)  # FakeData's random_offset is 0
            image = torch.randn(3, 32, 32, generator=generator)
            labels[i] = int(torch.randint(0, 10, size=(1,), dtype=torch.long, generator=generator)[0])
            images[i] = (np.transpose(image.numpy(), (1, 2, 0)) * 255).astype(np.uint8)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def load_image_tensors(
    name: str,
    data_dir: str | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    fake_size: int = 1024,
) -> ImageTensors:
    """The images of :func:`load_image_datasets` (same data, same split) as whole uint8 tensors on the CPU.

    Nothing is augmented or normalised here: :class:`raynas.data.resident.ResidentImageData` does
    both on the training device, per batch. Raises :class:`DatasetNotFoundError` like
    :func:`load_image_datasets`.
    """
    if name == "fake":
        if isinstance(fake_size, bool) or not isinstance(fake_size, int) or fake_size < 2:
            raise ValueError(f"fake_size must be an integer >= 2, got {fake_size!r}")
        images, labels = _fake_arrays(int(fake_size))
    else:
        data_dir = check_dataset(name, data_dir, download)
        base = _load_cifar(name, data_dir, download)
        images = torch.from_numpy(np.asarray(base.data)).permute(0, 3, 1, 2).contiguous()  # type: ignore[attr-defined]
        labels = torch.as_tensor(base.targets, dtype=torch.int64)  # type: ignore[attr-defined]
    train_idx, val_idx = split_indices(images.shape[0], val_fraction, split_seed)
    train, val = torch.as_tensor(train_idx, dtype=torch.int64), torch.as_tensor(val_idx, dtype=torch.int64)
    mean, std = normalisation(name)
    return ImageTensors(images[train], labels[train], images[val], labels[val],
                        DatasetInfo(name, _NUM_CLASSES[name], 3, 32), mean, std)
