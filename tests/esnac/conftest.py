"""Tiny teachers shared by the ESNAC tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raynas.spaces.compression import CompressionSpace


def tiny_teacher(seed: int = 0) -> nn.Module:
    """Conv-BN-ReLU stem, a torchvision BasicBlock with a downsample, pooling and two Linear layers."""
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(seed)
    down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        BasicBlock(8, 16, stride=2, downsample=down),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 2 * 2, 24), nn.ReLU(), nn.Dropout(0.1), nn.Linear(24, 10),
    ).eval()


@pytest.fixture(scope="session")
def tiny_space() -> CompressionSpace:
    return CompressionSpace(tiny_teacher(), (1, 8, 8))
