"""The Ray Tune Searcher protocol of every registered raynas searcher (no Ray runtime needed)."""

import os

import pytest
from ray.tune.search import Searcher

from raynas.architecture import Architecture
from raynas.searchers import SEARCHERS, make_searcher
from raynas.spaces import NB201Space
from raynas.spaces.positional import PositionalSpace

#: ESNAC searches the compression space of a teacher network, not cell spaces; tests/esnac covers it.
NAMES = sorted(n for n in SEARCHERS if n != "esnac")


def value(arch):
    return float(sum(op == "nor_conv_3x3" for op in arch.ops))


@pytest.mark.parametrize("name", NAMES)
def test_suggest_returns_distinct_valid_configs(name):
    space = NB201Space()
    searcher = make_searcher(name, space, metric="acc", mode="max", seed=0)
    configs = [searcher.suggest(f"t{k}") for k in range(8)]
    archs = [Architecture.from_config(c) for c in configs]
    assert all(space.is_valid(a) for a in archs)
    assert len(set(archs)) == 8
    assert [c["suggestion"] for c in configs] == list(range(8))


@pytest.mark.parametrize("name", NAMES)
def test_metric_and_mode_from_tune_config(name):
    searcher = make_searcher(name, NB201Space(), seed=0)
    with pytest.raises(ValueError, match="no metric/mode"):
        searcher.suggest("t0")
    assert searcher.set_search_properties("acc", "min", {"epochs": 3}) is True
    assert searcher.metric == "acc" and searcher.mode == "min" and searcher.search.mode == "min"
    assert searcher.suggest("t0") is not None


@pytest.mark.parametrize("name", NAMES)
def test_concurrency_limit_enforced_by_searcher(name):
    searcher = make_searcher(name, NB201Space(), metric="acc", mode="max")
    assert searcher.set_max_concurrency(2) is True
    assert searcher.suggest("a") and searcher.suggest("b")
    assert searcher.suggest("c") is None
    searcher.on_trial_complete("a", result={"acc": 1.0})
    assert searcher.suggest("c") is not None


@pytest.mark.parametrize("name", NAMES)
def test_trial_outcomes_as_tune_reports_them(name):
    searcher = make_searcher(name, NB201Space(), metric="acc", mode="max", seed=1)
    ids = ["ok", "err", "pending_stop", "asha", "nan"]
    archs = {t: Architecture.from_config(searcher.suggest(t)) for t in ids}
    searcher.on_trial_complete(trial_id="ok", result={"acc": 2.0, "training_iteration": 5})
    searcher.on_trial_complete(trial_id="err", result=None, error=True)
    searcher.on_trial_complete(trial_id="pending_stop", result=None, error=False)
    searcher.on_trial_result("asha", {"acc": 1.5, "training_iteration": 1})
    searcher.on_trial_complete(trial_id="asha", result={"acc": 1.7, "training_iteration": 2})
    searcher.on_trial_complete(trial_id="nan", result={"acc": float("nan")})
    observed = {o.trial_id: (o.value, o.fidelity) for o in searcher.search.observations}
    assert observed == {"ok": (2.0, 5), "asha": (1.7, 2)}
    assert set(searcher.search.failed) == {"err", "pending_stop", "nan"}
    # nothing already tried comes back
    later = {Architecture.from_config(searcher.suggest(f"n{k}")) for k in range(30)}
    assert not later & set(archs.values())


def test_finished_when_finite_space_exhausted():
    space = PositionalSpace({"a": ["0", "1"], "b": ["x", "y"]}, name="four")
    searcher = make_searcher("random", space, metric="acc", mode="max")
    for k in range(4):
        config = searcher.suggest(f"t{k}")
        searcher.on_trial_complete(f"t{k}", result={"acc": float(k)})
        assert config not in (None, Searcher.FINISHED)
    assert searcher.suggest("t4") == Searcher.FINISHED


@pytest.mark.parametrize("name", NAMES)
def test_save_restore_mid_search_continues_identically(name, tmp_path):
    space = NB201Space()
    a = make_searcher(name, space, metric="acc", mode="max", seed=5)
    for k in range(15):
        arch = Architecture.from_config(a.suggest(f"t{k}"))
        a.on_trial_complete(f"t{k}", result={"acc": value(arch)})
    a.suggest("running")  # a trial still live at the snapshot
    path = tmp_path / "searcher-state.pkl"
    a.save(str(path))
    assert os.listdir(tmp_path) == ["searcher-state.pkl"]  # exactly one file, no temp leftovers

    b = make_searcher(name, space, seed=123)  # fresh, unconfigured, as Tuner.restore unpickles it
    b.restore(str(path))
    assert (b.metric, b.mode) == ("acc", "max")
    assert b.search.pending.keys() == {"running"}
    for k in range(15, 40):
        ca, cb = a.suggest(f"t{k}"), b.suggest(f"t{k}")
        assert ca == cb
        r = {"acc": value(Architecture.from_config(ca))}
        a.on_trial_complete(f"t{k}", result=r)
        b.on_trial_complete(f"t{k}", result=r)
    all_archs = [o.arch for o in b.search.observations]
    assert len(all_archs) == len(set(all_archs)) == 40


def test_add_evaluated_point_feeds_history():
    searcher = make_searcher("regevo", NB201Space(), metric="acc", mode="max")
    arch = NB201Space().make(("nor_conv_3x3",) * 6)
    searcher.add_evaluated_point(arch.to_config(), 6.0)
    assert searcher.search.best().arch == arch
    assert all(Architecture.from_config(searcher.suggest(f"t{k}")) != arch for k in range(20))


def test_unknown_searcher_name():
    with pytest.raises(ValueError, match="unknown searcher 'bogus'; choose from"):
        make_searcher("bogus", NB201Space())


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_names_the_searcher_and_the_option(name):
    from raynas.searchers import searcher_class

    with pytest.raises(TypeError, match=rf"{searcher_class(name).__name__}.*no_such_option"):
        make_searcher(name, NB201Space(), metric="acc", mode="max", no_such_option=1)


def test_options_are_refused_next_to_a_ready_search():
    from raynas.search import RandomSearch
    from raynas.searchers import RandomSearcher

    with pytest.raises(TypeError, match="ready ArchitectureSearch"):
        RandomSearcher(RandomSearch(NB201Space()), metric="acc", mode="max", seed=3)
    assert RandomSearcher(RandomSearch(NB201Space(), seed=3), metric="acc", mode="max").search.seed == 3


@pytest.mark.parametrize("name", ["bonas", "gpnas"])
def test_model_searchers_predict_in_the_metric_units(name):
    """After some minimised observations, predictions order a good and a bad cell correctly."""
    space = NB201Space()
    searcher = make_searcher(name, space, metric="loss", mode="min", seed=0, num_initial=12)
    for k in range(16):
        config = searcher.suggest(f"t{k}")
        searcher.on_trial_complete(f"t{k}", {"loss": -value(Architecture.from_config(config))})
    good, bad = space.make(("nor_conv_3x3",) * 6), space.make(("none",) * 6)
    mean, variance = searcher.predict([good, bad])
    assert float(mean[0]) < float(mean[1])  # a lower loss predicted for the all-conv cell
    assert all(float(v) >= 0 for v in variance)


def test_baselines_have_no_model_to_predict_with():
    with pytest.raises(AttributeError, match="no surrogate model"):
        make_searcher("random", NB201Space(), metric="acc", mode="max").predict([])
