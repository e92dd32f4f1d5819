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
from raynas.teachers import COMPRESS_DATASETS, TORCHVISION_TEACHERS, load_teacher

if TYPE_CHECKING:  # torch is imported by the functions, so that `raynas --help` stays fast
    from torch import nn

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
    p.add_argument("--searcher", choices=("esnac", "random"), default="esnac",
                   help="esnac (learned-kernel BO over compressions, default) or random (the baseline)")
    p.add_argument("--num-samples", type=int, default=40, help="students to train; default 40")
    p.add_argument("--max-concurrent", type=int, default=4, help="students trained at once; default 4")
    p.add_argument("--num-kernels", type=int, default=4, help="ESNAC's K; default 4")
    p.add_argument("--epochs", type=int, default=3, help="distillation epochs per student; default 3")
    p.add_argument("--batch-size", type=int, default=None,
                   help="distillation batch size; default 64 on digits, 128 on CIFAR-sized data")
    p.add_argument("--lr", type=float, default=None, help="distillation learning rate; default 0.02 on digits, "
                   "0.05 on CIFAR-sized data")
    p.add_argument("--scheduler", choices=("asha", "none"), default="asha",
                   help="asha (default: stop poor students after an epoch) or none (train every student fully)")
    p.add_argument("--save-kernels", metavar="FILE", help="write ESNAC's learned kernels here (for transfer)")
    p.add_argument("--kernels", metavar="FILE", help="start ESNAC from kernels saved by --save-kernels")
    p.add_argument("--storage", default="raynas_results",
                   help="where experiments are kept: a directory (shared by every node on a cluster) or a URI "
                   "such as s3://bucket/path; default raynas_results. The run writes <storage>/<name>/: Tune's "
                   "state, raynas.json, teacher.pt (the teacher's state_dict), results.csv, best_so_far.png")
    p.add_argument("--name", default=None,
                   help="experiment name; default compress-<searcher>-<seed>-<date>-<time>")
    p.add_argument("--seed", type=int, default=0, help="seed of the search, the teacher and the data split; default 0")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run --name (or the latest compress run under --storage) with "
                   "its saved settings and teacher.pt (the teacher is not trained again); the other options "
                   "except --out and --save-kernels are ignored")
    p.add_argument("--out", metavar="FILE.json", help="write the best student's summary here")
    return p


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
