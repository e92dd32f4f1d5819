"""The README's examples, run as they are (smaller): "Python API" and "your model, your data, your space"."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import ray.cloudpickle

from raynas.architecture import Architecture

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE = EXAMPLES / "your_model_your_data.py"


def load_example(path: Path = EXAMPLE):
    spec = importlib.util.spec_from_file_location(path.stem, path)
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


def test_python_api_example_prints_the_cell_and_names_folders_short(ray_session, nb201_table_path, tmp_path, capsys):
    example = load_example(EXAMPLES / "nb201_tabular_search.py")
    results = example.main(str(nb201_table_path), num_samples=12, storage=str(tmp_path))
    assert not results.errors and len(results) == 12
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2, printed  # no Tune tables, no raw JSON
    assert re.fullmatch(r"\d+ of 12 trials reached 200 epochs; best cell: \|[a-z_0-9~|+]+\|", printed[0])
    assert re.fullmatch(r"validation accuracy \d+\.\d\d, test accuracy \d+\.\d\d \(the table's best: 91\.57\)",
                        printed[1])
    folders = [Path(result.path).name for result in results]
    assert all(re.fullmatch(r"TabularTrainable_[0-9a-f]+", name) for name in folders), folders
