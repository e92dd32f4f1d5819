"""Device-resident image data: the whole data set on the training device, augmented there per batch.

Small NAS networks train faster than a CPU ``DataLoader`` can decode and
augment CIFAR images, so on a GPU they wait for data. When the data set fits
in device memory (CIFAR-10/100: 154 MB as ``uint8``; ``digits``; ``FakeData``)
:class:`ResidentImageData` copies it to the device **once** (per trial, kept
across actor reuse) and makes every batch there:

* a permutation of the training images per epoch (every image once per epoch),
* random crop with zero padding 4 and horizontal flip (p = 1/2), the standard
  CIFAR augmentation, as one gather on the ``uint8`` batch,
* conversion to float, ``/ 255`` and normalisation by the channel mean and std,

all drawn from a ``torch.Generator`` **on that device** (no host round trip,
no worker processes). Given the same crop offsets and flips the result equals
torchvision's ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
``ToTensor`` and ``Normalize`` bit for bit on the CPU (the tests check it);
the random draws themselves differ from torchvision's (another generator).

:func:`choose_data_path` decides between this and the ``DataLoader`` path
(:mod:`raynas.data.vision`): ``resident`` when the data take at most a
quarter of the device memory this trial may use, ``loader`` otherwise; a
config key can force either. This module does not import Ray.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

logger = logging.getLogger(__name__)

#: Values of the ``data_path`` config key.
DATA_PATHS: tuple[str, ...] = ("auto", "resident", "loader")

#: ``auto`` keeps the data on the device when they take at most this share of the memory the trial may use.
RESIDENT_MAX_FRACTION = 0.25
#: Device memory never counted as available (CUDA context, cuDNN workspaces, other processes' growth).
RESIDENT_RESERVE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class DataPathChoice:
    """Which data path a trial uses (``resident`` or ``loader``) and why, in words."""

    path: str
    reason: str


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def choose_data_path(
    requested: str,
    data_bytes: int,
    device_type: str,
    *,
    free_bytes: int | None = None,
    total_bytes: int | None = None,
    gpu_share: float = 1.0,
    cpu_default: str = "loader",
    max_fraction: float = RESIDENT_MAX_FRACTION,
    reserve_bytes: int = RESIDENT_RESERVE_BYTES,
) -> DataPathChoice:
    """Pick ``resident`` or ``loader`` for ``data_bytes`` of data (pure: all numbers are given).

    Args:
        requested: ``auto``, or ``resident`` / ``loader`` to force one (config ``data_path``).
        data_bytes: memory the resident data take (:func:`raynas.data.vision.image_data_bytes`).
        device_type: ``cuda`` or ``cpu``.
        free_bytes, total_bytes: the device's free and total memory (``torch.cuda.mem_get_info``);
            needed for ``auto`` on CUDA.
        gpu_share: the fraction of the GPU the trial was given (Tune's ``gpu`` resource, e.g. 0.25).
        cpu_default: what ``auto`` picks on the CPU. The trainables keep the ``DataLoader`` there
            for torchvision data (the network, not the data, bounds a CPU trial; results stay as
            before) and the in-memory path for ``digits``.
        max_fraction, reserve_bytes: ``auto`` on CUDA picks ``resident`` iff
            ``data_bytes <= max_fraction * min(free_bytes - reserve_bytes, total_bytes * gpu_share)``.
    """
    if requested not in DATA_PATHS:
        raise ValueError(f"data_path must be one of {list(DATA_PATHS)}, got {requested!r}")
    if requested != "auto":
        return DataPathChoice(requested, f"forced by config data_path={requested!r}")
    if device_type != "cuda":
        return DataPathChoice(cpu_default, f"on the {device_type.upper()} 'auto' keeps the {cpu_default} path")
    if free_bytes is None or total_bytes is None:
        raise ValueError("choose_data_path on CUDA needs free_bytes and total_bytes (torch.cuda.mem_get_info)")
    share = min(max(float(gpu_share), 0.0), 1.0) or 1.0  # 0: not given (e.g. outside Tune), the whole device
    usable = max(0, min(free_bytes - reserve_bytes, int(total_bytes * share)))
    budget = int(max_fraction * usable)
    what = (f"{_mb(data_bytes)} of data against {max_fraction:g} x {_mb(usable)} usable "
            f"(free {_mb(free_bytes)} - reserve {_mb(reserve_bytes)}, share {share:g} of {_mb(total_bytes)})")
    if data_bytes <= budget:
        return DataPathChoice("resident", f"fits on the device: {what}")
    return DataPathChoice("loader", f"too large for the device: {what}; using the CPU DataLoader")


def decide_data_path(requested: str, data_bytes: int, device: torch.device | str, *, gpu_share: float = 1.0,
                     cpu_default: str = "loader", label: str = "raynas") -> DataPathChoice:
    """:func:`choose_data_path` with the device's memory read from CUDA; logs the choice at INFO."""
    device = torch.device(device)
    free = total = None
    if requested == "auto" and device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
    choice = choose_data_path(requested, data_bytes, device.type, free_bytes=free, total_bytes=total,
                              gpu_share=gpu_share, cpu_default=cpu_default)
    logger.info("%s: data path %s (%s)", label, choice.path, choice.reason)
    return choice


# ------------------------------------------------------------------ augmentation
def sample_crop_flip(n: int, generator: torch.Generator, padding: int = 4,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop offsets ``(n, 2)`` (row, column; each uniform in ``0 .. 2 * padding``) and flips ``(n,)`` bool.

    Drawn on ``generator``'s device (default), so a CUDA generator never touches the host.
    """
    device = torch.device(device) if device is not None else generator.device
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    return offsets, flips


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Crop each image of ``images`` ``(N, C, H, W)`` from its zero-padded version at ``offsets``, then flip.

    Image ``i`` becomes ``pad(images[i], padding)[:, r:r+H, c:c+W]`` for ``(r, c) = offsets[i]``,
    mirrored left-right where ``flips[i]``: torchvision's ``RandomCrop(H, padding)`` followed by
    ``RandomHorizontalFlip`` with those draws. One gather, any dtype (``uint8`` here), on the
    images' device.
    """
    n, channels, height, width = images.shape
    if n == 0:
        return images.clone()
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    device = images.device
    offsets = offsets.to(device)
    flips = flips.to(device)
    rows = offsets[:, 0:1] + torch.arange(height, device=device)  # (N, H)
    forward = torch.arange(width, device=device)
    cols = offsets[:, 1:2] + torch.where(flips[:, None], width - 1 - forward, forward)  # (N, W)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(channels, device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def normalise(images: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None,
              scale: float | None = 255.0) -> torch.Tensor:
    """``(images.float() / scale - mean) / std`` with ``(1, C, 1, 1)`` float32 ``mean``/``std`` (torchvision's ops).

    ``scale=None`` skips the division, ``mean=None`` the normalisation (float inputs are kept as they are).
    """
    x = images.float()
    if scale is not None:
        x = x.div(scale)
    if mean is not None:
        x = x.sub(mean).div(std)
    return x


class ResidentImageData:
    """Training and validation images held on ``device``; batches augmented and normalised there.

    Args:
        x_train, y_train, x_val, y_val: images ``(N, C, H, W)`` (``uint8`` 0-255, or float already on
            the model's scale with ``scale=None`` and no ``mean``) and ``int64`` labels, on any device.
        device: where they live and batches are made.
        mean, std: per-channel normalisation on the [0, 1] scale (``None``: none).
        scale: divisor turning pixels into [0, 1] (255 for ``uint8``; ``None`` for float images).
        augment: random crop (zero padding ``padding``) and horizontal flip of training batches.
        memory_format: of the batches handed out (``torch.channels_last`` for AMP convolutions).
        name: for messages.
    """

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *,
                 device: torch.device | str, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, scale: float | None = 255.0, augment: bool = True,
                 padding: int = 4, memory_format: torch.memory_format = torch.contiguous_format,
                 name: str = "data") -> None:
        if x_train.dim() != 4 or x_val.dim() != 4:
            raise ValueError(f"{name}: images must be (N, C, H, W), got {tuple(x_train.shape)} "
                             f"and {tuple(x_val.shape)}")
        if x_train.shape[0] != y_train.shape[0] or x_val.shape[0] != y_val.shape[0]:
            raise ValueError(f"{name}: images and labels differ in number")
        if (mean is None) != (std is None):
            raise ValueError(f"{name}: give both mean and std, or neither")
        self.device = torch.device(device)
        self.name = name
        self.x_train = x_train.to(self.device).contiguous()
        self.y_train = y_train.to(self.device, dtype=torch.int64)
        self.x_val = x_val.to(self.device).contiguous()
        self.y_val = y_val.to(self.device, dtype=torch.int64)
        channels = self.x_train.shape[1]
        if mean is not None:
            if len(mean) != channels or len(std) != channels:  # type: ignore[arg-type]
                raise ValueError(f"{name}: mean and std need {channels} values each")
            self.mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
            self.std = torch.tensor(list(std),  # type: ignore[arg-type]
                                    dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        else:
            self.mean = self.std = None
        self.scale = scale
        self.augment = bool(augment)
        self.padding = int(padding)
        self.memory_format = memory_format

    @classmethod
    def from_tensors(cls, data, device: torch.device | str, *, augment: bool = True,
                     memory_format: torch.memory_format = torch.contiguous_format) -> "ResidentImageData":
        """From :class:`raynas.data.vision.ImageTensors` (uint8 images, their mean and std)."""
        return cls(data.x_train, data.y_train, data.x_val, data.y_val, device=device, mean=data.mean,
                   std=data.std, scale=255.0, augment=augment, memory_format=memory_format, name=data.info.name)

    # ------------------------------------------------------------------ facts
    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_val(self) -> int:
        return int(self.x_val.shape[0])

    @property
    def nbytes(self) -> int:
        """Device memory held by the images and labels."""
        return sum(t.numel() * t.element_size() for t in (self.x_train, self.y_train, self.x_val, self.y_val))

    # ---------------------------------------------------------------- batches
    def _finish(self, images: torch.Tensor) -> torch.Tensor:
        images = images.contiguous(memory_format=self.memory_format)  # cheap on uint8, kept by the float ops
        return normalise(images, self.mean, self.std, self.scale)

    def augment_batch(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop and flip of a batch (drawn from ``generator``), not normalised."""
        offsets, flips = sample_crop_flip(images.shape[0], generator, self.padding, device=self.device)
        return crop_flip(images, offsets, flips, self.padding)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: ``(x, y)`` batches in a random order drawn from ``generator`` (on this device).

        Every training image comes exactly once; the last batch may be smaller. Augmented when
        ``augment``; normalised and in ``memory_format``.
        """
        if generator.device.type != self.device.type:
            raise ValueError(f"{self.name}: the generator is on {generator.device}, the data on {self.device}")
        order = torch.randperm(self.num_train, generator=generator, device=self.device)
        for start in range(0, self.num_train, batch_size):
            index = order[start : start + batch_size]
            images = self.x_train[index]
            if self.augment:
                images = self.augment_batch(images, generator)
            yield self._finish(images), self.y_train[index]

    def val_batches(self, batch_size: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation images in order, normalised, never augmented."""
        for start in range(0, self.num_val, batch_size):
            yield (self._finish(self.x_val[start : start + batch_size]),
                   self.y_val[start : start + batch_size])
