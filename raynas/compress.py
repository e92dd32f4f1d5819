"""``raynas compress``: find a smaller student of a teacher network with ESNAC (or random search) on Ray Tune.

The pieces for the ``raynas`` CLI: :func:`add_compress_parser` adds the
sub-command, :func:`cmd_compress` runs it; :func:`main` runs it stand-alone
(``python -m raynas.compress ...``). A run is a
:class:`~raynas.searchers.experiment.CompressSpec` experiment, run, saved and
resumed by :mod:`raynas.searchers.experiment` exactly like ``raynas search``
(``raynas.json``, Tune's state, ``results.csv``), plus the teacher's
``state_dict`` in ``teacher.pt``: ``raynas compress --resume`` continues a run
with that teacher, ``raynas analyze DIR`` reads it. This module does not import
:mod:`raynas.cli` (the CLI imports it). Ray is imported only inside
:func:`cmd_compress` and torch only by the functions that use it, so the core
stays importable without Ray and ``raynas --help`` stays fast.

Teachers (``--teacher``):

* ``digits-cnn`` (default, ``--dataset digits`` only): a small CNN with torchvision
  ResNet blocks, trained here on digits for ``--teacher-epochs`` (default 15);
* a torchvision constructor name (:data:`TORCHVISION_TEACHERS`: ``resnet18``,
  ``resnet34``, ``vgg11_bn``, ...) with ``num_classes`` from the data set, weights
  from ``--teacher-weights PATH`` (a ``state_dict``; nothing is downloaded) and/or
  trained here for ``--teacher-epochs N``. With ``--teacher-stem cifar`` (default)
  the network is adapted to 32x32 images as usual in the CIFAR literature, see
  :func:`torchvision_teacher`; ``imagenet`` keeps torchvision's layers as they are;
* a path to a module saved with ``torch.save(model, path)`` for the data set's input shape.

Data (``--dataset``): ``digits`` (scikit-learn, offline, 1x8x8), ``cifar10`` /
``cifar100`` from ``--data-dir`` (fetched only with ``--download``) and ``fake``
(CIFAR-shaped random images), all 3x32x32; the compression space takes its input
shape from the data set. Trials get ``--cpus-per-trial`` / ``--gpus-per-trial``
and train on CUDA with AMP when they have a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from raynas.cli_args import add_data_location_arguments

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


def add_compress_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``compress`` to the ``raynas`` sub-commands (returns its parser)."""
    p = subparsers.add_parser(
        "compress", help="compress a teacher network with ESNAC on Ray Tune (digits, CIFAR; CPUs or GPUs)",
        description="Search for a smaller student of --teacher by ESNAC (Cao et al., ICLR 2019): students are "
        "compressions of the teacher (layer removal, shrinkage, skips), trained by distillation; the objective "
        "is f = r(2-r) A_student/A_teacher. See cluster/ESNAC.md for the CIFAR-100 / ResNet-18 recipe.",
    )
    p.add_argument("--teacher", default="digits-cnn",
                   help="'digits-cnn' (trained here, digits only), a torchvision constructor "
                   f"({', '.join(TORCHVISION_TEACHERS)}) or a path to a torch.save'd nn.Module for the "
                   "data set's input shape")
    p.add_argument("--teacher-weights", metavar="PATH",
                   help="state_dict file for --teacher (a torchvision name or a saved module); nothing is downloaded")
    p.add_argument("--teacher-stem", choices=("cifar", "imagenet"), default="cifar",
                   help="torchvision teachers on 32x32 images: 'cifar' (default) uses a 3x3 stride-1 ResNet stem "
                   "without max-pooling / a 512->classes VGG classifier; 'imagenet' keeps torchvision's layers")
    p.add_argument("--teacher-epochs", type=int, default=None,
                   help="epochs to train digits-cnn or a torchvision teacher here first (after loading "
                   "--teacher-weights, if any; in the driver process, on its GPU if it has one); default 15 for "
                   "digits-cnn without weights, 0 otherwise. Saved modules are used as they are")
    p.add_argument("--save-teacher", metavar="FILE", help="write the teacher's state_dict here (after training)")
    p.add_argument("--teacher-only", action="store_true",
                   help="stop after loading/training the teacher (and --save-teacher): e.g. a first job that "
                   "trains the teacher on a GPU node")
    p.add_argument("--dataset", choices=COMPRESS_DATASETS, default="digits",
                   help="default digits (offline, 1x8x8); cifar10/cifar100 from --data-dir; fake: CIFAR-shaped "
                   "random images (tests, throughput)")
    add_data_location_arguments(p)
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per student; default 1")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per student, fractions allowed (0.5: two students share a GPU); default 0 (CPU)")
    p.add_argument("--searcher", choices=("esnac", "random"), default="esnac")
    p.add_argument("--num-samples", type=int, default=40, help="students to train; default 40")
    p.add_argument("--max-concurrent", type=int, default=4, help="students trained at once; default 4")
    p.add_argument("--num-kernels", type=int, default=4, help="ESNAC's K; default 4")
    p.add_argument("--epochs", type=int, default=3, help="distillation epochs per student; default 3")
    p.add_argument("--batch-size", type=int, default=None,
                   help="distillation batch size; default 64 on digits, 128 on CIFAR-sized data")
    p.add_argument("--lr", type=float, default=None, help="distillation learning rate; default 0.02 on digits, "
                   "0.05 on CIFAR-sized data")
    p.add_argument("--scheduler", choices=("asha", "none"), default="asha")
    p.add_argument("--save-kernels", metavar="FILE", help="write ESNAC's learned kernels here (for transfer)")
    p.add_argument("--kernels", metavar="FILE", help="start ESNAC from kernels saved by --save-kernels")
    p.add_argument("--storage", default="raynas_results",
                   help="where experiments are kept: a directory (shared by every node on a cluster) or a URI "
                   "such as s3://bucket/path; default raynas_results. The run writes <storage>/<name>/: Tune's "
                   "state, raynas.json, teacher.pt (the teacher's state_dict), results.csv, best_so_far.png")
    p.add_argument("--name", default=None,
                   help="experiment name; default compress-<searcher>-<seed>-<date>-<time>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run --name (or the latest compress run under --storage) with "
                   "its saved settings and teacher.pt (the teacher is not trained again); the other options "
                   "except --out and --save-kernels are ignored")
    p.add_argument("--out", metavar="FILE.json", help="write the best student's summary here")
    return p


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


def _compress_spec(args: argparse.Namespace):
    """The :class:`~raynas.searchers.experiment.CompressSpec` of a new run from the command line."""
    from raynas.searchers.experiment import CompressSpec

    return CompressSpec(
        searcher=args.searcher, num_samples=args.num_samples, max_concurrent=args.max_concurrent,
        scheduler=args.scheduler, seed=args.seed, storage=args.storage, name=args.name, epochs=args.epochs,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        dataset=getattr(args, "dataset", "digits"), data_dir=args.data_dir, download=bool(args.download),
        teacher=args.teacher, teacher_weights=args.teacher_weights, teacher_stem=args.teacher_stem,
        teacher_epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr,
        num_kernels=args.num_kernels, kernels=args.kernels,
    )


def cmd_compress(args: argparse.Namespace, on_ray_started: Callable[[], None] | None = None) -> int:
    """Run ``raynas compress``: train/load the teacher, search on Ray, print (and write) the best student.

    The run is a :class:`~raynas.searchers.experiment.CompressSpec` experiment, run by
    :func:`~raynas.searchers.experiment.run_experiment` like ``raynas search``: ``raynas.json``,
    the teacher's ``state_dict`` (``teacher.pt``), Tune's state, ``results.csv`` and
    ``best_so_far.png`` in ``<storage>/<name>``, so ``--resume`` continues it and ``raynas analyze``
    reads it. Everything that can fail without Ray (settings, teacher, data) fails before Ray starts.
    ``on_ray_started`` runs once Ray is up, before Tune (the CLI installs its SIGTERM handler there).
    """
    from raynas.searchers.experiment import (
        SPEC_FILE, CompressSpec, absolute_location, check_data, exists, join_location, latest_experiment,
        run_experiment, save_teacher_state,
    )

    resume = bool(getattr(args, "resume", False))
    if resume:
        if args.name:
            directory = join_location(absolute_location(args.storage), args.name)
        else:
            directory = latest_experiment(args.storage, kind="compress")
        spec = CompressSpec.load(directory)  # a `raynas search` experiment is refused
        if not exists(spec.teacher_path):
            raise FileNotFoundError(f"{directory!r} holds no teacher.pt: this compression run never started")
        print(f"resuming {directory}", file=sys.stderr)
        check_data(spec)
    else:
        spec = _compress_spec(args)
        teacher_only = bool(getattr(args, "teacher_only", False))
        if not teacher_only and exists(join_location(spec.experiment_dir, SPEC_FILE)):
            raise ValueError(f"{spec.experiment_dir} already holds a raynas experiment: continue it with --resume "
                             "(same --name and --storage) or pick another --name")
        if spec.kernels and not os.path.exists(spec.kernels):
            raise FileNotFoundError(f"--kernels {spec.kernels} does not exist")
        check_data(spec)  # a missing CIFAR data set fails before any training (on local Ray)
        teacher = _train_or_load_teacher(spec)
        if args.save_teacher:
            import torch

            torch.save(teacher.state_dict(), args.save_teacher)
        if teacher_only:
            print(json.dumps({"teacher": args.teacher,
                              "teacher_params": sum(p.numel() for p in teacher.parameters()),
                              "saved": os.path.abspath(args.save_teacher) if args.save_teacher else None},
                             indent=2))
            return 0
        spec.save()
        save_teacher_state(spec, teacher)  # the teacher every student (also after --resume) is distilled from

    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=False, configure_logging=False, include_dashboard=False)
    if on_ray_started is not None:
        on_ray_started()
    results, report, experiment = run_experiment(spec, resume=resume, verbose=False)
    from raynas.analysis import format_summary

    print(f"experiment: {spec.experiment_dir}\n{format_summary(report, spec.metric)}", file=sys.stderr)
    try:
        best = results.get_best_result(metric=spec.metric, mode="max", scope="last")
    except RuntimeError as exc:
        raise ValueError(f"no student reported an objective (see {spec.experiment_dir}): {exc}") from exc
    summary: dict[str, Any] = {
        "student": best.metrics.get("arch_str"), "objective": best.metrics["objective"],
        "val_acc": best.metrics["val_acc"], "params": best.metrics["params"],
        "teacher_acc": best.metrics["teacher_acc"], "teacher_params": best.metrics["teacher_params"],
        "dataset": spec.dataset, "experiment": spec.experiment_dir, "trials": report["trials"],
        "results_csv": report.get("results_csv"), "teacher_state": spec.teacher_path,
    }
    if args.save_kernels and spec.searcher == "esnac":
        searcher = experiment.searcher
        try:
            if searcher is None:
                raise RuntimeError("the searcher Tune ran is not reachable")
            searcher.save_kernels(args.save_kernels)
            summary["kernels"] = os.path.abspath(args.save_kernels)
        except RuntimeError as exc:  # too few students for a BO step (or none since --resume)
            print(f"raynas compress: no kernels written: {exc}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 0


def _train_or_load_teacher(spec: Any) -> nn.Module:
    """The teacher of a new run, as :func:`load_teacher` gets it (trained here if asked), in the driver."""
    data: Any
    if spec.dataset == "digits":
        from raynas.data.digits import load_digits_split

        data = tuple(load_digits_split(0.2, 0))
    else:
        from raynas.data.vision import load_image_datasets

        def data() -> Any:
            return load_image_datasets(spec.dataset, spec.data_dir, download=spec.download, val_fraction=0.1,
                                       split_seed=0, fake_size=1024)

    return load_teacher(spec.teacher, spec.teacher_epochs, data, spec.seed, dataset=spec.dataset,
                        weights=spec.teacher_weights, stem=spec.teacher_stem)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m raynas.compress [options]``."""
    parser = argparse.ArgumentParser(prog="raynas")
    sub = parser.add_subparsers(dest="command", required=True)
    add_compress_parser(sub)
    args = parser.parse_args(["compress", *(sys.argv[1:] if argv is None else argv)])
    try:
        return cmd_compress(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"raynas compress: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
