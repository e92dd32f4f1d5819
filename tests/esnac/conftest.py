"""The tiny teacher shared by the ESNAC tests (:func:`raynas.teachers.tiny_teacher`)."""

from __future__ import annotations

import pytest

from raynas.teachers import tiny_teacher
from raynas.spaces.compression import CompressionSpace

__all__ = ["tiny_space", "tiny_teacher"]


@pytest.fixture(scope="session")
def tiny_space() -> CompressionSpace:
    return CompressionSpace(tiny_teacher(), (1, 8, 8))
