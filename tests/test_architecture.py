import pickle

import pytest

from raynas.architecture import Architecture, ArchitectureFormatError


def test_value_semantics_and_hash():
    a = Architecture("nb201", ["none", "skip_connect"])
    b = Architecture("nb201", ("none", "skip_connect"))
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a != Architecture("nb201", ("skip_connect", "none"))
    with pytest.raises(Exception):
        a.ops = ("x",)  # frozen


def test_json_is_stable_and_round_trips():
    a = Architecture("nb101", ("input", "maxpool3x3", "output"), [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    text = a.to_json()
    assert text == Architecture.from_json(text).to_json()
    assert Architecture.from_json(text) == a
    assert Architecture.from_json({"space": "nb101", "ops": list(a.ops), "matrix": a.matrix}) == a
    assert pickle.loads(pickle.dumps(a)) == a


def test_config_round_trip_including_flattened_results():
    a = Architecture("nb201", ("none",) * 6)
    config = a.to_config()
    assert Architecture.from_config(config) == a
    assert Architecture.from_config({"config/arch": config["arch"]}) == a
    assert Architecture.from_config({"config": {"arch": config["arch"], "epochs": 3}}) == a


def test_digest_is_process_independent():
    a = Architecture("nb201", ("none",) * 6)
    assert a.digest == Architecture("nb201", ("none",) * 6).digest
    assert len(a.digest) == 40


@pytest.mark.parametrize(
    "bad, message",
    [("not json", "not valid JSON"), ('{"ops": []}', "'space' and 'ops'"), ('{"space": "x", "ops": "abc"}', "must be a list"), (3, "cannot read")],
)
def test_bad_json_names_the_problem(bad, message):
    with pytest.raises(ArchitectureFormatError, match=message):
        Architecture.from_json(bad)


def test_missing_config_key():
    with pytest.raises(ArchitectureFormatError, match="no 'arch' entry"):
        Architecture.from_config({"lr": 0.1})
