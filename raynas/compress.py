"""``raynas compress``: find a smaller student of a teacher network with ESNAC (or random search) on Ray Tune.

The pieces for the ``raynas`` CLI: :func:`add_compress_parser` adds the
sub-command, :func:`cmd_compress` runs it; :func:`main` runs it stand-alone
(``python -m raynas.compress ...``). Ray is imported only inside
:func:`cmd_compress` and torch only by the functions that use it, so the core
stays importable without Ray and ``raynas --help`` stays fast.

Teachers: ``--teacher digits-cnn`` (default: a small CNN with torchvision
ResNet blocks, trained here on digits for ``--teacher-epochs``) or a path to a
module saved with ``torch.save(model, path)`` (it must take ``1x8x8``
digits images). Data: scikit-learn's digits (offline).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # torch is imported by the functions, so that `raynas --help` stays fast
    import torch
    from torch import nn

DIGITS_SHAPE = (1, 8, 8)


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


def add_compress_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``compress`` to the ``raynas`` sub-commands (returns its parser)."""
    p = subparsers.add_parser(
        "compress", help="compress a teacher network with ESNAC on Ray Tune (digits, offline)",
        description="Search for a smaller student of --teacher by ESNAC (Cao et al., ICLR 2019): students are "
        "compressions of the teacher (layer removal, shrinkage, skips), trained by distillation; the objective "
        "is f = r(2-r) A_student/A_teacher.",
    )
    p.add_argument("--teacher", default="digits-cnn",
                   help="'digits-cnn' (trained here) or a path to a torch.save'd nn.Module for 1x8x8 inputs")
    p.add_argument("--teacher-epochs", type=int, default=15, help="epochs to train digits-cnn; default 15")
    p.add_argument("--searcher", choices=("esnac", "random"), default="esnac")
    p.add_argument("--num-samples", type=int, default=40, help="students to train; default 40")
    p.add_argument("--max-concurrent", type=int, default=4, help="students trained at once; default 4")
    p.add_argument("--num-kernels", type=int, default=4, help="ESNAC's K; default 4")
    p.add_argument("--epochs", type=int, default=3, help="distillation epochs per student; default 3")
    p.add_argument("--scheduler", choices=("asha", "none"), default="asha")
    p.add_argument("--save-kernels", metavar="FILE", help="write ESNAC's learned kernels here (for transfer)")
    p.add_argument("--kernels", metavar="FILE", help="start ESNAC from kernels saved by --save-kernels")
    p.add_argument("--storage", default="raynas_results")
    p.add_argument("--name", default=None, help="experiment name; default compress-<searcher>-<seed>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE.json", help="write the best student's summary here")
    return p


def load_teacher(spec: str, epochs: int, data: Sequence[torch.Tensor], seed: int = 0) -> nn.Module:
    """``digits-cnn`` (trained on ``data``) or a module loaded from a path."""
    import torch
    from torch import nn

    if spec == "digits-cnn":
        model = digits_teacher(seed=seed)
        train_teacher(model, data, epochs=epochs, seed=seed)
        return model.eval()
    if not os.path.exists(spec):
        raise FileNotFoundError(f"teacher {spec!r} is neither 'digits-cnn' nor an existing file")
    model = torch.load(spec, weights_only=False)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec} holds a {type(model).__name__}, not an nn.Module (save it with torch.save(model))")
    return model.eval()


def cmd_compress(args: argparse.Namespace) -> int:
    """Run ``raynas compress``: train/load the teacher, search on local Ray, print (and write) the best student."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from raynas.data.digits import load_digits_split
    from raynas.searchers.base import RaynasSearcher
    from raynas.searchers.baselines import RandomSearcher
    from raynas.searchers.esnac import ESNACSearcher
    from raynas.spaces.compression import CompressionSpace
    from raynas.trainables.distill import DistillTrainable

    data = tuple(load_digits_split(0.2, 0))
    teacher = load_teacher(args.teacher, args.teacher_epochs, data, args.seed)
    space = CompressionSpace(teacher, DIGITS_SHAPE)
    searcher: RaynasSearcher
    if args.searcher == "esnac":
        searcher = ESNACSearcher(space, seed=args.seed, num_kernels=args.num_kernels, kernels=args.kernels)
    else:
        searcher = RandomSearcher(space, seed=args.seed)
    if not ray.is_initialized():
        ray.init(log_to_driver=False, configure_logging=False, include_dashboard=False)
    scheduler = (ASHAScheduler(max_t=args.epochs, grace_period=1, reduction_factor=3)
                 if args.scheduler == "asha" else None)
    tuner = tune.Tuner(
        tune.with_parameters(DistillTrainable, space=space),
        param_space={"epochs": args.epochs, "seed": args.seed},
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, metric="objective", mode="max",
                                    num_samples=args.num_samples, max_concurrent_trials=args.max_concurrent,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=args.name or f"compress-{args.searcher}-{args.seed}",
                                  storage_path=os.path.abspath(args.storage), verbose=0),
    )
    results = tuner.fit()
    best = results.get_best_result(metric="objective", mode="max", scope="last")
    summary: dict[str, Any] = {
        "student": best.metrics.get("arch_str"), "objective": best.metrics["objective"],
        "val_acc": best.metrics["val_acc"], "params": best.metrics["params"],
        "teacher_acc": best.metrics["teacher_acc"], "teacher_params": best.metrics["teacher_params"],
        "experiment": results.experiment_path,
    }
    if args.save_kernels and args.searcher == "esnac":
        try:
            searcher.save_kernels(args.save_kernels)  # type: ignore[attr-defined]
            summary["kernels"] = os.path.abspath(args.save_kernels)
        except RuntimeError as exc:  # too few students for a BO step
            print(f"raynas compress: no kernels written: {exc}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 0


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
