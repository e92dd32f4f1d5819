"""The Ray-free search lifecycle shared by every method."""

import math

import numpy as np
import pytest

from raynas.architecture import Architecture
from raynas.search import RandomSearch, RegularizedEvolution, SearchStateError
from raynas.spaces import InvalidArchitectureError, NB201Space
from raynas.spaces.positional import PositionalSpace


def objective(arch: Architecture) -> float:
    return float(sum(op == "nor_conv_3x3" for op in arch.ops))


def drive(search, n, start=0):
    for k in range(start, start + n):
        arch = search.suggest(f"t{k}")
        if arch is None:
            return
        search.complete(f"t{k}", objective(arch), fidelity=1)


def test_never_repeats_evaluated_or_pending():
    search = RandomSearch(NB201Space(), mode="max", seed=0)
    pending = [search.suggest(f"p{k}") for k in range(20)]
    assert len(set(pending)) == 20
    drive(search, 300, start=100)
    archs = [o.arch for o in search.observations] + list(search.pending.values())
    assert len(archs) == len(set(archs)) == 320


def test_finite_space_is_exhausted_then_none():
    space = PositionalSpace({"a": ["0", "1", "2"], "b": ["x", "y"]}, name="tiny")
    search = RandomSearch(space, mode="max", seed=1)
    suggested = [search.suggest(f"t{k}") for k in range(6)]
    assert set(suggested) == set(space.enumerate())
    assert search.suggest("t6") is None  # everything is pending or evaluated


def test_same_seed_same_suggestions():
    runs = []
    for _ in range(2):
        search = RegularizedEvolution(NB201Space(), mode="max", seed=7)
        drive(search, 40)
        runs.append([o.arch for o in search.observations])
    assert runs[0] == runs[1]
    other = RegularizedEvolution(NB201Space(), mode="max", seed=8)
    drive(other, 40)
    assert [o.arch for o in other.observations] != runs[0]


def test_errors_and_missing_values_are_recorded_not_used():
    search = RandomSearch(NB201Space(), mode="max", seed=0)
    a, b, c, d = (search.suggest(t) for t in "abcd")
    search.complete("a", None, error=True)
    search.complete("b", float("nan"))
    search.report("c", 3.5, fidelity=2)
    search.complete("c", None)  # stopped without a final value: the intermediate one is used
    search.complete("d", math.inf)
    assert [o.arch for o in search.observations] == [c]
    assert search.observations[0].value == 3.5 and search.observations[0].fidelity == 2
    assert set(search.failed.values()) == {a, b, d}
    assert not search.pending
    assert search.complete("unknown", 1.0) is None
    # a failed trial that Tune retries successfully becomes data
    assert search.complete("a", 2.5).arch == a and a not in search.failed.values()
    assert all(search.is_seen(x) for x in (a, b, c, d))


def test_points_to_evaluate_first_and_validated():
    space = NB201Space()
    first = space.make(("nor_conv_3x3",) * 6)
    second = space.make(("skip_connect",) * 6)
    search = RandomSearch(space, mode="max", points_to_evaluate=[first, second.to_config(), first.to_json()])
    assert search.suggest("1") == first
    assert search.suggest("2") == second
    assert search.suggest("3") not in (first, second)  # the repeated point is skipped
    with pytest.raises(InvalidArchitectureError, match="points_to_evaluate entry"):
        RandomSearch(space, points_to_evaluate=[{"arch": '{"space":"nb201","ops":["bad"]}'}])


def test_allow_repeats():
    space = PositionalSpace({"a": ["0", "1"]}, name="two")
    search = RandomSearch(space, mode="max", seed=0, allow_repeats=True)
    archs = [search.suggest(f"t{k}") for k in range(10)]
    assert len(archs) == 10 and len(set(archs)) == 2


def test_min_mode_best():
    search = RandomSearch(NB201Space(), mode="min", seed=0)
    drive(search, 30)
    assert search.best().value == min(o.value for o in search.observations)


def test_state_round_trip_continues_identically():
    space = NB201Space()
    original = RegularizedEvolution(space, mode="max", seed=3)
    drive(original, 25)
    original.suggest("live")  # a pending trial survives the round trip
    state = original.state_dict()
    clone = RegularizedEvolution(space, mode="max", seed=999)
    clone.load_state_dict(state)
    assert clone.pending == original.pending
    assert list(clone.population) == list(original.population)
    for k in range(30):
        a, b = original.suggest(f"n{k}"), clone.suggest(f"n{k}")
        assert a == b
        original.complete(f"n{k}", objective(a))
        clone.complete(f"n{k}", objective(b))
    with pytest.raises(SearchStateError, match="RegularizedEvolution"):
        RandomSearch(space).load_state_dict(state)
    with pytest.raises(SearchStateError, match="version"):
        clone.load_state_dict({**state, "version": 99})


def test_regularized_evolution_improves_over_random():
    """On a smooth objective, evolution reaches a better best than random in the same budget."""
    space = NB201Space()
    evo_best, rnd_best = [], []
    for seed in range(5):
        for cls, sink in ((RegularizedEvolution, evo_best), (RandomSearch, rnd_best)):
            search = cls(space, mode="max", seed=seed)
            drive(search, 120)
            sink.append(search.best().value)
    assert np.mean(evo_best) > np.mean(rnd_best)
    assert np.mean(evo_best) >= 4.5


def test_regularized_evolution_population_and_arguments():
    search = RegularizedEvolution(NB201Space(), mode="max", seed=0, population_size=5, sample_size=2)
    drive(search, 30)
    assert len(search.population) == 5
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolution(NB201Space(), population_size=3, sample_size=4)
