"""ESNAC end to end on local Ray: DistillTrainable (checkpoints, actor reuse) and ESNACSearcher through Tuner."""

from __future__ import annotations

import pytest
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from raynas.architecture import Architecture
from raynas.searchers.esnac import ESNACSearcher
from raynas.spaces.base import InvalidArchitectureError
from raynas.trainables.distill import DistillTrainable

SMALL = dict(num_kernels=2, fit_iters=8, num_candidates=16, hidden=8)
TRAIN = {"epochs": 2, "batch_size": 128, "num_threads": 1}


def local(space):
    """What ``tune.with_parameters`` does, without the object store."""

    class Local(DistillTrainable):
        def setup(self, config):
            super().setup(config, space=space)

    return Local


def test_distill_trainable_checkpoint_resumes_identically(tiny_space, tmp_path):
    arch = tiny_space.apply(tiny_space.teacher_arch, "shrink", layer=1, width=4)
    config = {**arch.to_config(), **TRAIN, "epochs": 3, "suggestion": 0}
    first = local(tiny_space)(config=config)
    r1 = first.train()
    assert {"objective", "val_acc", "params", "teacher_params", "compression"} <= set(r1)
    assert r1["params"] < r1["teacher_params"] and r1["training_iteration"] == 1
    first.save_checkpoint(str(tmp_path))
    rest = [first.train()["train_loss"] for _ in range(2)]
    second = local(tiny_space)(config=config)
    second.load_checkpoint(str(tmp_path))
    assert [second.train()["train_loss"] for _ in range(2)] == rest
    assert second.reset_config({**config, "epochs": 1}) and second.train()["done"]
    with pytest.raises(InvalidArchitectureError, match="invalid config"):
        local(tiny_space)(config={"arch": Architecture(tiny_space.name, ("input", "0:conv:8", "output")).to_json()})
    with pytest.raises(TypeError, match="CompressionSpace"):
        DistillTrainable(config=config)


def make_tuner(space, searcher, storage, name, num_samples):
    return tune.Tuner(
        tune.with_parameters(DistillTrainable, space=space),
        param_space=dict(TRAIN),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=ASHAScheduler(max_t=2, grace_period=1, reduction_factor=2),
            metric="objective", mode="max", num_samples=num_samples, max_concurrent_trials=2, reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )


def test_esnac_through_tuner_then_restored(ray_session, tiny_space, tmp_path):
    torch.set_num_threads(1)
    searcher = ESNACSearcher(tiny_space, seed=0, **SMALL)  # metric/mode from TuneConfig
    first = make_tuner(tiny_space, searcher, tmp_path, "first", num_samples=4).fit()
    frame = first.get_dataframe()
    assert len(frame) == 4 and not first.errors
    archs = [Architecture.from_json(a) for a in frame["config/arch"]]
    assert len(set(archs)) == 4
    assert (frame["params"] < frame["teacher_params"]).all() and frame["objective"].notna().all()
    state = sorted((tmp_path / "first").glob("searcher-state-*.pkl"))[-1]

    resumed = ESNACSearcher(tiny_space, seed=0, **SMALL)
    resumed.restore(str(state))
    assert resumed.search.num_evaluated == 4 and resumed.metric == "objective"
    second = make_tuner(tiny_space, resumed, tmp_path, "second", num_samples=2).fit()
    more = [Architecture.from_json(a) for a in second.get_dataframe()["config/arch"]]
    assert len(more) == 2 and not second.errors
    assert len(set(archs) | set(more)) == 6
    assert resumed.search.steps >= 1 and not resumed.search.pending
    resumed.save_kernels(str(tmp_path / "kernels.pt"))
