"""DistillTrainable on torchvision image data (tiny CIFAR-shaped FakeData, CPU) and the compress CLI's new flags."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from raynas.compress import add_compress_parser
from raynas.teachers import CIFAR_SHAPE, load_teacher, torchvision_teacher
from raynas.data.vision import DatasetNotFoundError
from raynas.spaces.compression import CompressionSpace
from raynas.trainables.distill import DistillTrainable

KEYS = {"objective", "val_acc", "params", "teacher_params", "compression", "teacher_acc", "train_loss"}
FAKE = {"dataset": "fake", "fake_size": 64, "val_fraction": 0.25, "batch_size": 16, "num_threads": 1,
        "device": "cpu"}


def image_teacher(seed: int = 0) -> nn.Module:
    """A tiny 3x32x32 teacher: strided conv stem, a BasicBlock with a downsample, pooling, a classifier."""
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(seed)
    down = nn.Sequential(nn.Conv2d(4, 8, 1, 2, bias=False), nn.BatchNorm2d(8))
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, 2, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        BasicBlock(4, 8, stride=2, downsample=down), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    ).eval()


@pytest.fixture(scope="module")
def image_space() -> CompressionSpace:
    return CompressionSpace(image_teacher(), CIFAR_SHAPE)


def local(space):
    class Local(DistillTrainable):
        def setup(self, config):
            super().setup(config, space=space)

    return Local


def student_config(space, **extra):
    arch = space.apply(space.teacher_arch, "shrink", layer=1, width=2)
    return {**arch.to_config(), **FAKE, **extra}


def test_fake_data_reports_and_resumes_identically(image_space, tmp_path):
    config = student_config(image_space, epochs=3)
    first = local(image_space)(config=config)
    r1 = first.train()
    assert KEYS <= set(r1) and r1["device"] == "cpu" and r1["amp"] is False
    assert r1["params"] < r1["teacher_params"] and 0 < r1["compression"] < 1 and r1["teacher_acc"] > 0
    assert first.run.images and first.run.teacher_acc == first._teacher_acc  # A_t once, on the val split
    first.save_checkpoint(str(tmp_path))
    rest = [(r["train_loss"], r["val_acc"]) for r in (first.train(), first.train())]
    second = local(image_space)(config=config)
    second.load_checkpoint(str(tmp_path))
    assert [(r["train_loss"], r["val_acc"]) for r in (second.train(), second.train())] == rest
    assert second.reset_config({**config, "epochs": 1}) and second.train()["done"]


def test_cuda_request_without_gpu_fails_clearly(image_space, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="'cuda' but no CUDA device is visible"):
        local(image_space)(config=student_config(image_space, device="cuda"))


def test_bad_dataset_and_missing_cifar(image_space, tmp_path):
    with pytest.raises(ValueError, match="config\\['dataset'\\] must be one of"):
        local(image_space)(config=student_config(image_space, dataset="imagenet"))
    with pytest.raises(DatasetNotFoundError, match="--download"):
        local(image_space)(config=student_config(image_space, dataset="cifar10", data_dir=str(tmp_path)))


def test_parser_accepts_image_and_gpu_flags():
    parser = argparse.ArgumentParser(prog="raynas")
    add_compress_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "compress", "--teacher", "resnet18", "--teacher-weights", "r18.pt", "--dataset", "cifar100",
        "--data-dir", "/data", "--download", "--gpus-per-trial", "0.5", "--cpus-per-trial", "4",
        "--teacher-epochs", "0", "--batch-size", "128", "--lr", "0.05", "--teacher-stem", "cifar",
    ])
    assert (args.teacher, args.teacher_weights, args.dataset, args.data_dir, args.download) == (
        "resnet18", "r18.pt", "cifar100", "/data", True)
    assert (args.gpus_per_trial, args.cpus_per_trial, args.teacher_epochs) == (0.5, 4.0, 0)
    defaults = parser.parse_args(["compress"])
    assert (defaults.dataset, defaults.gpus_per_trial, defaults.teacher_epochs) == ("digits", 0.0, None)


def test_torchvision_teacher_for_cifar(tmp_path):
    model = torchvision_teacher("resnet18", 100, stem="cifar")
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 11.22  # ESNAC's ResNet-18, CIFAR-100
    assert CompressionSpace(model, CIFAR_SHAPE).layers[0].stride == 1
    with pytest.raises(ValueError, match="untrained teacher makes no sense.*--teacher-epochs"):
        load_teacher("resnet18", None, None, dataset="cifar100")
    torch.save(model.state_dict(), tmp_path / "r18.pt")
    loaded = load_teacher("resnet18", None, None, dataset="cifar100", weights=str(tmp_path / "r18.pt"))
    assert torch.equal(loaded.fc.weight, model.fc.weight)
    with pytest.raises(ValueError, match="do not fit the teacher"):
        load_teacher("resnet18", None, None, dataset="cifar10", weights=str(tmp_path / "r18.pt"))
