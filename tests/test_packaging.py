"""The wheel must ship every package folder (an editable install would hide a missing one)."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for package, folder in mapping.items():
        root = REPO / folder
        # every folder holding Python modules, with or without __init__.py (a namespace folder is
        # importable from the source tree but left out of a non-editable install unless listed)
        for module in root.rglob("*.py"):
            if "__pycache__" in module.parts:
                continue
            relative = module.parent.relative_to(root).parts
            found.add(".".join((package, *relative)))
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"


def test_core_does_not_import_ray():
    import subprocess

    code = (
        "import sys, raynas.architecture, raynas.spaces, raynas.search, raynas.benchmarks, raynas.analysis, "
        "raynas.bench, raynas.models, raynas.data, raynas.cli; print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
