"""Teacher networks for compression: builders, weights, training (Ray-free).

The teachers ``raynas compress`` accepts (``--teacher``): ``digits-cnn``, a
torchvision ResNet/VGG with a CIFAR stem, or a saved module; and a tiny
teacher for tests and benchmarks. :mod:`raynas.compress` (the command) and
:mod:`raynas.analysis` (which rebuilds a run's compression space to draw its
students) both build teachers from here.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # torch is imported by the functions, so that `raynas --help` stays fast
    import torch
    from torch import nn

DIGITS_SHAPE = (1, 8, 8)
#: Input shape of the CIFAR-sized data sets (``cifar10``, ``cifar100``, ``fake``).
CIFAR_SHAPE = (3, 32, 32)
#: Values of ``--dataset``.
COMPRESS_DATASETS = ("digits", "cifar10", "cifar100", "fake")
#: torchvision constructors accepted by ``--teacher`` (the compression space reads ResNets and VGGs).
TORCHVISION_TEACHERS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
)
_NUM_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "fake": 10}


def digits_teacher(width: int = 32, seed: int = 0) -> nn.Module:
    """A small CNN teacher for 8x8 digits: conv-bn-relu stem, two torchvision ``BasicBlock`` s
    (the second with stride 2 and a downsample), global pooling, a linear classifier."""
    import torch
    from torch import nn
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(seed)
    down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, 2, bias=False), nn.BatchNorm2d(2 * width))
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        BasicBlock(width, width),
        BasicBlock(width, 2 * width, stride=2, downsample=down),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10),
    )


def tiny_teacher(seed: int = 0) -> nn.Module:
    """A tiny teacher for 1x8x8 inputs (tests and robustness benchmarks): conv-BN-ReLU stem, a torchvision
    ``BasicBlock`` with a downsample, pooling and two Linear layers; 18 layers, 5.6k parameters."""
    import torch
    from torch import nn
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(seed)
    down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        BasicBlock(8, 16, stride=2, downsample=down),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 2 * 2, 24), nn.ReLU(), nn.Dropout(0.1), nn.Linear(24, 10),
    ).eval()


def train_teacher(model: nn.Module, data: Sequence[torch.Tensor], epochs: int = 15, lr: float = 0.05,
                  batch_size: int = 64, seed: int = 0) -> float:
    """Train ``model`` with cross-entropy (SGD, Nesterov, cosine); returns its validation accuracy (percent)."""
    import torch
    from torch import nn

    from raynas.models.student import accuracy

    x_train, y_train, x_val, y_val = data
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    return accuracy(model, x_val, y_val)


def torchvision_teacher(name: str, num_classes: int, stem: str = "cifar", seed: int = 0) -> nn.Module:
    """A torchvision ResNet or VGG (random weights) with ``num_classes`` outputs.

    ``stem="cifar"`` makes the usual changes for 32x32 images (as in the CIFAR
    versions of these networks, and ESNAC's ResNet-18 of 11.22M parameters on
    CIFAR-100): ResNet's 7x7 stride-2 ``conv1`` becomes 3x3 stride 1 and its
    stem max-pooling a 1x1 max-pooling (the identity: the compression space has no
    ``nn.Identity``); VGG's 7x7 adaptive pooling becomes 1x1 and its three-layer
    classifier one ``Linear(512, num_classes)``. ``stem="imagenet"`` keeps
    torchvision's layers (ImageNet weights fit, but 32x32 inputs shrink to 1x1 early).
    """
    import torch
    import torchvision
    from torch import nn

    if name not in TORCHVISION_TEACHERS:
        raise ValueError(f"unknown torchvision teacher {name!r}; choose from {', '.join(TORCHVISION_TEACHERS)}")
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"teacher stem must be 'cifar' or 'imagenet', got {stem!r}")
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if stem == "cifar":
        if name.startswith("resnet"):
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            model.maxpool = nn.MaxPool2d(kernel_size=1, stride=1)
        else:
            model.avgpool = nn.AdaptiveAvgPool2d(1)
            model.classifier = nn.Linear(512, num_classes)
    return model


def load_weights(model: nn.Module, path: str) -> nn.Module:
    """Load a ``state_dict`` file into ``model`` (also ``{"state_dict": ...}`` / ``{"model": ...}`` and
    DataParallel's ``module.`` prefixes); a clear error when it does not fit."""
    import torch

    if not os.path.exists(path):
        raise FileNotFoundError(f"--teacher-weights {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"the weights in {path} do not fit the teacher (check --teacher, --teacher-stem and "
                         f"the number of classes of --dataset): {exc}") from exc
    return model


def train_teacher_images(model: nn.Module, datasets: Any, epochs: int, lr: float = 0.1, batch_size: int = 128,
                         seed: int = 0, device: str | None = None) -> float:
    """Train ``model`` on augmented images with cross-entropy (SGD, Nesterov, cosine; AMP and
    channels_last on CUDA); returns its validation accuracy (percent). Runs in the driver process."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from raynas.models.student import loader_accuracy

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    generator = torch.Generator().manual_seed(seed)
    workers = min(8, os.cpu_count() or 1) if cuda else 0
    train = DataLoader(datasets.train, batch_size=batch_size, shuffle=True, generator=generator,
                       num_workers=workers, pin_memory=cuda)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    scaler = torch.amp.GradScaler(dev.type, enabled=cuda)
    for _ in range(epochs):
        model.train()
        for x, y in train:
            if y.shape[0] < 2:
                continue
            x, y = x.to(dev, non_blocking=True).contiguous(memory_format=fmt), y.to(dev, non_blocking=True)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=cuda):
                loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        scheduler.step()
    val = DataLoader(datasets.val, batch_size=256, num_workers=workers, pin_memory=cuda)
    acc = loader_accuracy(model, val, dev, cuda, fmt)
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    return acc


def teacher_module(spec: str, dataset: str = "digits", *, stem: str = "cifar", seed: int = 0) -> nn.Module:
    """The network of ``--teacher`` ``spec`` before any loading or training: ``digits-cnn`` and torchvision
    teachers with fresh (seeded) weights, a saved module as it was saved.

    What a teacher's ``state_dict`` loads into: :func:`load_teacher` starts from it, and a resumed
    compression run loads its saved ``teacher.pt`` into it.
    """
    import torch
    from torch import nn

    images = dataset != "digits"
    if spec == "digits-cnn":
        if images:
            raise ValueError(f"teacher 'digits-cnn' is for --dataset digits; for {dataset} use a torchvision "
                             f"teacher ({', '.join(TORCHVISION_TEACHERS[:2])}, ...) or a saved module")
        return digits_teacher(seed=seed)
    if spec in TORCHVISION_TEACHERS:
        if not images:
            raise ValueError(f"torchvision teacher {spec!r} needs 3x32x32 images: pass --dataset cifar10, "
                             "cifar100 or fake (or use --teacher digits-cnn on digits)")
        return torchvision_teacher(spec, _NUM_CLASSES[dataset], stem=stem, seed=seed)
    if not os.path.exists(spec):
        raise FileNotFoundError(f"teacher {spec!r} is neither 'digits-cnn' nor an existing file, nor a "
                                f"torchvision name ({', '.join(TORCHVISION_TEACHERS)})")
    model = torch.load(spec, weights_only=False, map_location="cpu")
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec} holds a {type(model).__name__}, not an nn.Module "
                         "(save it with torch.save(model))")
    return model


def load_teacher(spec: str, epochs: int | None, data: Any, seed: int = 0, *, dataset: str = "digits",
                 weights: str | None = None, stem: str = "cifar") -> nn.Module:
    """The teacher of ``--teacher`` ``spec``: ``digits-cnn``, a torchvision name or a saved module.

    ``data`` is what training needs: digits tensors, or (other data sets) a zero-argument
    callable returning :class:`raynas.data.vision.ImageDatasets` (called only if the teacher is
    trained here). Raises ValueError for an untrained torchvision teacher on CIFAR.
    """
    model = teacher_module(spec, dataset, stem=stem, seed=seed)
    if spec == "digits-cnn":
        if weights:
            load_weights(model, weights)
        epochs = (0 if weights else 15) if epochs is None else epochs
        if epochs:
            train_teacher(model, data, epochs=epochs, seed=seed)
        return model.eval()
    if spec not in TORCHVISION_TEACHERS:
        if weights:
            load_weights(model, weights)
        return model.eval()  # a saved module is used as it is (--teacher-epochs trains the other kinds)
    if weights:
        load_weights(model, weights)
    elif not epochs and dataset != "fake":
        raise ValueError(
            f"teacher {spec!r} has no trained weights: compressing an untrained teacher makes no sense "
            f"(ESNAC's objective divides by its accuracy). Pass --teacher-weights PATH (a state_dict of "
            f"{spec} with --teacher-stem {stem} and {_NUM_CLASSES[dataset]} classes; nothing is downloaded) "
            f"or --teacher-epochs N to train it here first (e.g. 200 on a GPU)"
        )
    if not weights and not epochs:
        print(f"raynas compress: warning: teacher {spec!r} is untrained (random weights; fine for --dataset fake "
              "smoke tests only)", file=sys.stderr)
    if epochs:
        acc = train_teacher_images(model, data(), epochs, seed=seed)
        print(f"raynas compress: teacher trained for {epochs} epochs: {acc:.2f}% validation accuracy",
              file=sys.stderr)
    return model.eval()
