"""The README's "your model, your data, your space" example, run as it is (smaller)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import ray.cloudpickle

from raynas.architecture import Architecture

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "your_model_your_data.py"


def load_example():
    spec = importlib.util.spec_from_file_location("your_model_your_data", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    ray.cloudpickle.register_pickle_by_value(module)  # Ray workers cannot import the examples folder
    return module


def test_your_space_your_data_with_a_raynas_searcher_and_asha(ray_session, tmp_path):
    example = load_example()
    results = example.run("bonas", num_samples=10, train_epochs=4, storage=str(tmp_path),
                          num_initial=4, pool_size=40, epochs=20)  # BONAS's own options: a quick GCN
    frame = results.get_dataframe()
    assert not results.errors and len(frame) == 10
    archs = [Architecture.from_json(a) for a in frame["config/arch"]]
    assert len(set(archs)) == 10 and all(example.SPACE.is_valid(a) for a in archs)
    assert frame["config/lr"].between(3e-4, 3e-2).all()
    assert frame["val_acc"].max() > 80.0  # a real network trained on the digits
    assert set(frame["training_iteration"]) <= {2, 3, 4}  # ASHA's rungs: stopped at 2, or run to 4
