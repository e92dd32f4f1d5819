"""Shared by the trainable tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolate_in_process_trainables(tmp_path, monkeypatch):
    """In-process Trainables log under ~/ray_results and set torch's thread count: keep both local."""
    monkeypatch.setattr("ray.tune.trainable.trainable.DEFAULT_STORAGE_PATH", str(tmp_path / "ray_results"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
