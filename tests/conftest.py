"""Shared fixtures: one local Ray runtime per test session, and the real NB201 table when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

REPO = Path(__file__).resolve().parents[1]
NB201_TABLE = REPO.parent / "shared" / "benchmarks" / "nb201" / "nb201_cifar10.csv"


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray runtime with 4 logical CPUs (so 4 tiny trials run at once on 2 cores)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def nb201_table_path() -> Path:
    """Path of the real NAS-Bench-201 CIFAR-10 table; skips, saying why, where it is absent."""
    if not NB201_TABLE.exists():
        pytest.skip(
            f"real NAS-Bench-201 table not found at {NB201_TABLE} "
            "(CI provides ../shared/benchmarks/nb201/nb201_cifar10.csv)"
        )
    return NB201_TABLE
