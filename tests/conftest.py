"""Shared fixtures: one local Ray runtime per test session, and the real NB201 table when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

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


def synthetic_nb201_frame(limit: int | None = None):
    """A small NB201-format table with a known, unique optimum (all ``nor_conv_3x3``).

    The objective adds per-edge op scores and a deterministic jitter, so
    searchers have structure to exploit and ties cannot occur.
    """
    import itertools

    import numpy as np
    import pandas as pd

    from raynas.spaces import NB201_OPS, NB201Space

    space = NB201Space()
    weight = {"none": 0.0, "skip_connect": 1.0, "nor_conv_1x1": 2.0, "nor_conv_3x3": 3.0, "avg_pool_3x3": 1.5}
    rows = []
    for index, ops in enumerate(itertools.product(NB201_OPS, repeat=6)):
        if limit is not None and index >= limit:
            break
        score = sum(weight[op] * (1 + 0.1 * k) for k, op in enumerate(ops))
        jitter = ((index * 7919) % 1000) / 1e5
        val = 50.0 + 2.0 * score + jitter
        arch = space.make(ops)
        rows.append(
            {"arch_str": space.describe(arch), **{f"op_e{i}{j}": op for (i, j), op in zip(((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)), ops)},
             "val_200": val, "test_200": val + 1.0, "val_12": val - 10.0 + np.cos(index)}
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def synthetic_nb201_csv(tmp_path_factory) -> Path:
    """The full 15,625-row synthetic NB201 table written as CSV."""
    path = tmp_path_factory.mktemp("tables") / "synthetic_nb201.csv"
    synthetic_nb201_frame().to_csv(path, index=False)
    return path


#: FLOPs-like cost of each NB201 op in :func:`synthetic_flops_csv` (convolutions cost, the rest is free).
SYNTHETIC_OP_COST = {"none": 0.0, "skip_connect": 0.0, "avg_pool_3x3": 0.0, "nor_conv_1x1": 1.0, "nor_conv_3x3": 9.0}


@pytest.fixture(scope="session")
def synthetic_flops_csv(tmp_path_factory) -> Path:
    """The synthetic NB201 table plus a ``flops`` column: accuracy and cost rise together (a real trade-off)."""
    import numpy as np

    frame = synthetic_nb201_frame()
    ops = frame[[c for c in frame.columns if c.startswith("op_e")]]
    frame["flops"] = (10.0 + ops.apply(lambda row: sum(SYNTHETIC_OP_COST[o] for o in row), axis=1)
                      + np.arange(len(frame)) % 7 / 10)
    path = tmp_path_factory.mktemp("tables") / "synthetic_nb201_flops.csv"
    frame.to_csv(path, index=False)
    return path
