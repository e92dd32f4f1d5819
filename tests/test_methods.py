"""``raynas.methods``: the Ray-free registry of search methods, and the Tune searchers derived from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raynas.methods import (
    COMPRESSION_ONLY,
    METHODS,
    UnknownMethodError,
    check_methods,
    make_method,
    method_class,
    method_options,
    ordinary_methods,
)
from raynas.search.base import ArchitectureSearch
from raynas.spaces import NB201Space

REPO = Path(__file__).resolve().parents[1]
CLASS_NAMES = {"random": "RandomSearch", "regevo": "RegularizedEvolution", "nasbot": "NASBOT",
               "gpnas": "GPNAS", "bonas": "BONAS", "esnac": "ESNAC"}
#: Small BONAS settings, so that a few suggestions take a second or two.
SMALL_BONAS = {"num_initial": 4, "pool_size": 30, "epochs": 20, "warm_steps": 10, "retrain_every": 3}


def score(space: NB201Space, arch) -> float:
    """A deterministic objective with structure: a fixed weight per (edge, op)."""
    weights = np.linspace(-1.0, 2.0, 30) ** 2
    return float(np.asarray(space.encode_onehot(arch), dtype=float) @ weights)


def test_registry_maps_the_six_names_to_ray_free_classes():
    assert {name: target.rpartition(":")[2] for name, target in METHODS.items()} == CLASS_NAMES
    for name in METHODS:
        cls = method_class(name)
        assert issubclass(cls, ArchitectureSearch) and cls.__name__ == CLASS_NAMES[name]
        assert method_class(name) is cls  # imported once
    assert COMPRESSION_ONLY == {"esnac"}
    assert ordinary_methods() == ["random", "regevo", "nasbot", "gpnas", "bonas"]


def test_registry_imports_methods_lazily_and_never_ray():
    code = """if True:
        import json, sys
        import raynas.methods
        at_import = sorted(m for m in sys.modules
                           if m.startswith(("raynas.search", "torch")) or m == "ray" or m.startswith("ray."))
        from raynas.methods import make_method
        from raynas.spaces import NB201Space
        search = make_method("regevo", NB201Space(), mode="max", seed=0)
        search.complete("t0", 1.0, fidelity=1) if search.suggest("t0") else None
        print(json.dumps({"at_import": at_import,
                          "bonas": "raynas.search.bonas" in sys.modules,
                          "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))}))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"at_import": [], "bonas": False, "ray": []}


def test_make_method_builds_a_configured_search():
    space = NB201Space()
    search = make_method("regevo", space, mode="min", seed=3, population_size=5, sample_size=2)
    assert type(search).__name__ == "RegularizedEvolution"
    assert (search.mode, search.seed, search.population_size, search.sample_size) == ("min", 3, 5, 2)
    for k in range(12):
        arch = search.suggest(f"t{k}")
        search.complete(f"t{k}", score(space, arch), fidelity=1)
    assert search.num_evaluated == 12
    assert make_method("random", space).mode is None  # set later (as Tune does) when not given


def test_unknown_method_name_lists_the_valid_names():
    for build in (method_class, lambda name: make_method(name, NB201Space())):
        with pytest.raises(UnknownMethodError) as caught:
            build("bogus")
        assert isinstance(caught.value, ValueError)
        message = str(caught.value)
        assert message.startswith("unknown searcher 'bogus'; choose from ")
        assert all(name in message for name in METHODS)
        assert caught.value.names == ["bogus"] and caught.value.valid == list(METHODS)
    with pytest.raises(UnknownMethodError, match=r"unknown searcher\(s\) \['bogus', 'x'\]; choose from random, "):
        check_methods(["random", "bogus", "bonas", "x"])


def test_check_methods_keeps_compression_methods_to_compression_spaces():
    assert check_methods(iter(["bonas", "esnac"])) == ["bonas", "esnac"]
    with pytest.raises(ValueError, match=r"\['esnac'\] search only a teacher's compression space") as caught:
        check_methods(["random", "esnac"], compression_ok=False)
    assert not isinstance(caught.value, UnknownMethodError)
    assert "random, regevo, nasbot, gpnas, bonas" in str(caught.value)


def test_options_are_read_from_the_signatures():
    regevo = method_options("regevo")
    assert regevo[:3] == ["population_size", "sample_size", "max_cycles"]  # the class's own first
    for base_option in ("seed", "points_to_evaluate", "allow_repeats"):
        assert base_option in regevo and base_option in method_options("random")
    assert "pool_size" in method_options("bonas") and "mse_threshold" in method_options("gpnas")
    for name in METHODS:
        assert not {"self", "space", "mode", "kwargs"} & set(method_options(name))


@pytest.mark.parametrize("name", ordinary_methods())
def test_unknown_option_names_the_class_and_its_options(name):
    with pytest.raises(TypeError) as caught:
        make_method(name, NB201Space(), mode="max", no_such_option=1)
    message = str(caught.value)
    assert message.startswith(f"{CLASS_NAMES[name]} (search method {name!r}) got unknown option(s) ['no_such_option']")
    assert all(option in message for option in method_options(name))


def test_an_option_the_method_sets_itself_is_refused_by_name():
    with pytest.raises(TypeError, match="RegularizedEvolution.*'max_attempts'.*sets it itself"):
        make_method("regevo", NB201Space(), max_attempts=5)


@pytest.mark.parametrize("name, options", [("regevo", {"population_size": 6}), ("bonas", SMALL_BONAS)])
def test_ray_free_method_and_tune_searcher_suggest_the_same(name, options):
    """The Tune searcher is a thin wrapper: same seed and results, same suggestions (two in flight)."""
    from raynas.architecture import Architecture
    from raynas.searchers import make_searcher

    space = NB201Space()
    search = make_method(name, space, mode="max", seed=4, **options)
    searcher = make_searcher(name, space, metric="acc", mode="max", seed=4, **options)
    pending: list[tuple[str, object, object]] = []
    for k in range(16):
        arch = search.suggest(f"t{k}")
        config = searcher.suggest(f"t{k}")
        assert Architecture.from_config(config) == arch
        pending.append((f"t{k}", arch, config))
        if len(pending) == 2:
            trial_id, arch, _ = pending.pop(k % 2)  # complete out of order sometimes
            value = score(space, arch)
            search.complete(trial_id, value, fidelity=1)
            searcher.on_trial_complete(trial_id, result={"acc": value, "training_iteration": 1})
    assert [o.arch for o in search.observations] == [o.arch for o in searcher.search.observations]


def test_tune_searchers_take_their_names_from_the_registry():
    from raynas.searchers import SEARCHERS, make_searcher, searcher_class

    assert list(SEARCHERS) == list(METHODS)
    for name in METHODS:
        assert searcher_class(name).search_class is method_class(name)
    assert searcher_class("bonas").__name__ == "BONASSearcher" and searcher_class("esnac").__name__ == "ESNACSearcher"
    with pytest.raises(UnknownMethodError, match="unknown searcher 'bogus'; choose from random, regevo"):
        make_searcher("bogus", NB201Space())


def test_a_method_added_to_the_registry_is_a_tune_searcher(monkeypatch):
    import ray.cloudpickle

    import raynas.searchers
    from raynas.search.random import RandomSearch
    from raynas.searchers import RaynasSearcher, make_searcher, searcher_class

    monkeypatch.setitem(METHODS, "random2", "raynas.search.random:RandomSearch")
    monkeypatch.setattr(raynas.searchers, "SEARCHERS", dict(raynas.searchers.SEARCHERS))  # undone afterwards
    cls = searcher_class("random2")
    assert issubclass(cls, RaynasSearcher) and cls.search_class is RandomSearch
    searcher = make_searcher("random2", NB201Space(), metric="acc", mode="max", seed=0)
    assert "arch" in searcher.suggest("t0")
    copy = ray.cloudpickle.loads(ray.cloudpickle.dumps(searcher))  # Tuner pickles its searcher
    assert copy.search.pending.keys() == {"t0"}
    with pytest.raises(TypeError, match="RandomSearchSearcher.*no_such_option"):
        make_searcher("random2", NB201Space(), metric="acc", mode="max", no_such_option=1)


@pytest.mark.parametrize("command", ["bench", "search"])
def test_cli_help_lists_every_usable_searcher(command, capsys):
    from raynas.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "random, regevo, nasbot, gpnas, bonas; esnac only through 'raynas compress'" in text
