"""Model builders (NB101, NB201, dispatcher), torchvision data, ImageTrainable and the resource checks.

Everything runs on the CPU and offline; the CUDA-only code paths are tested
where they show on a CPU (AMP off, channels_last, the scaler in checkpoints, a
clear error for a GPU that is not there).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import torch

from raynas.architecture import Architecture
from raynas.models import (
    NB101Network,
    NB201Network,
    build_model,
    count_flops,
    model_stats,
    vertex_channels,
)
from raynas.spaces import InvalidArchitectureError, NB201Space
from raynas.spaces.nb101 import NB101Space

NB101 = NB101Space()
NB201 = NB201Space()
# The Inception-like cell of the nasbench README/colab; the NB101 data set lists 2,694,282 parameters.
INCEPTION = NB101.make(
    [[0, 1, 1, 1, 0, 1, 0],
     [0, 0, 0, 0, 0, 0, 1],
     [0, 0, 0, 0, 0, 0, 1],
     [0, 0, 0, 0, 1, 0, 0],
     [0, 0, 0, 0, 0, 0, 1],
     [0, 0, 0, 0, 0, 0, 1],
     [0, 0, 0, 0, 0, 0, 0]],
    ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv3x3-bn-relu", "maxpool3x3", "output"],
)
SMALL_CELL = NB201.make(["nor_conv_1x1", "skip_connect", "none", "skip_connect", "none", "nor_conv_1x1"])


# ------------------------------------------------------------------- NB101
def test_nb101_paper_size_matches_the_published_parameter_count():
    net = build_model("nb101", INCEPTION)  # 128 channels, 3 stacks of 3 cells
    assert isinstance(net, NB101Network)
    assert sum(p.numel() for p in net.parameters()) == 2_694_282


def test_vertex_channels_follow_nasbench():
    assert vertex_channels(3, 128, INCEPTION.matrix) == [3, 32, 32, 32, 32, 32, 128]
    # 10 output channels over 3 nodes: the remainder goes to the first; node 1 feeds 2 and 3 only
    matrix = [[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert vertex_channels(4, 5, matrix) == [4, 3, 3, 2, 5]
    assert vertex_channels(4, 10, [[0, 1], [0, 0]]) == [4, 10]


@pytest.mark.parametrize("seed", range(4))
def test_nb101_small_network_forward_params_flops(seed):
    arch = NB101.sample(np.random.default_rng(seed))
    net = build_model(NB101, arch, num_classes=7, in_channels=1, channels=5, cells_per_stage=1, num_stacks=2)
    out = net(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    stats = model_stats(net, (1, 8, 8))
    assert stats.params == sum(p.numel() for p in net.parameters()) > 0
    assert stats.flops > 0
    out.sum().backward()  # trainable end to end


def test_nb101_truncation_and_input_only_cells():
    # node 3 receives node 1 (3 channels) truncated to its 2 channels
    trunc = NB101.make([[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
                       ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output"])
    bare = NB101.make([[0, 1], [0, 0]], ["input", "output"])
    for arch in (trunc, bare):
        net = NB101Network(arch, channels=5, cells_per_stack=2, num_stacks=3, num_classes=3, in_channels=3)
        assert net(torch.randn(2, 3, 16, 16)).shape == (2, 3)


# ------------------------------------------------------------------- NB201
def test_nb201_params_and_flops_grow_with_ops():
    cells = [
        ["none"] * 6,
        ["nor_conv_1x1"] + ["none"] * 5,
        ["nor_conv_3x3"] + ["none"] * 5,
        ["nor_conv_3x3", "nor_conv_3x3"] + ["none"] * 4,
        ["nor_conv_3x3"] * 6,
    ]
    stats = [model_stats(build_model("nb201", NB201.make(ops), channels=4, cells_per_stage=1), (3, 32, 32))
             for ops in cells]
    assert all(s.params > 0 and s.flops > 0 for s in stats)
    assert [s.params for s in stats] == sorted({s.params for s in stats})  # strictly increasing
    assert [s.flops for s in stats] == sorted({s.flops for s in stats})
    # a 3x3 conv of C channels at 32x32 on one edge of each of the N=1 stage-1 cells: 2*C*C*9*32*32 FLOPs
    assert stats[2].flops - stats[0].flops > 2 * 4 * 4 * 9 * 32 * 32


def test_count_flops_uses_the_library_counter_and_keeps_training_mode():
    net = NB201Network(SMALL_CELL, channels=4, cells_per_stage=1, in_channels=1)
    net.train()
    assert count_flops(net, (1, 8, 8)) > 0 and net.training


# ------------------------------------------------------------- dispatcher
def test_build_model_dispatch_and_errors():
    assert isinstance(build_model("nb201", SMALL_CELL, channels=4, cells_per_stage=1), NB201Network)
    assert isinstance(build_model(NB201, NB201.describe(SMALL_CELL), channels=4, cells_per_stage=1), NB201Network)
    with pytest.raises(ValueError, match=r"no model builder for search space 'nope'.*nb101.*nb201"):
        build_model("nope", SMALL_CELL)
    with pytest.raises(ValueError, match="no model builder for search space 'positional'"):
        build_model("positional", SMALL_CELL)
    with pytest.raises(ValueError, match=r"unknown size keyword\(s\) \['width'\]"):
        build_model("nb201", SMALL_CELL, width=3)
    with pytest.raises(ValueError, match="num_stacks"):
        build_model("nb201", SMALL_CELL, num_stacks=2)
    with pytest.raises(TypeError):
        build_model(42, SMALL_CELL)  # type: ignore[arg-type]
    with pytest.raises(InvalidArchitectureError, match="conv9x9"):
        build_model("nb101", Architecture("nb101", ("input", "conv9x9", "output"), ((0, 1, 0), (0, 0, 1), (0, 0, 0))))


# -------------------------------------------------------------------- data
def test_cifar_missing_names_path_and_download_flag(tmp_path):
    from raynas.data.vision import DatasetNotFoundError, load_image_datasets

    for name, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        with pytest.raises(DatasetNotFoundError) as info:
            load_image_datasets(name, str(tmp_path / "nodata"))
        message = str(info.value)
        assert str(tmp_path / "nodata" / folder) in message and "--download" in message
    assert not (tmp_path / "nodata").exists()  # nothing downloaded or created
    (tmp_path / "broken" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"incomplete or corrupted.*--download"):
        load_image_datasets("cifar10", str(tmp_path / "broken"))


def test_fake_split_is_seeded_disjoint_and_augmented():
    from raynas.data.vision import load_image_datasets

    a = load_image_datasets("fake", fake_size=50, val_fraction=0.2, split_seed=1)
    b = load_image_datasets("fake", fake_size=50, val_fraction=0.2, split_seed=1)
    c = load_image_datasets("fake", fake_size=50, val_fraction=0.2, split_seed=2)
    assert len(a.train) == 40 and len(a.val) == 10
    assert a.val.indices == b.val.indices != c.val.indices
    assert not set(a.train.indices) & set(a.val.indices)
    image, label = a.train[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10 and a.info.input_shape == (3, 32, 32)
    torch.manual_seed(0)
    first = a.val[0][0]
    torch.manual_seed(1)
    assert torch.equal(first, a.val[0][0])  # validation images are not augmented


# -------------------------------------------------------------- trainable
def _fake_config(arch=SMALL_CELL, **overrides):
    return {**arch.to_config(), "dataset": "fake", "channels": 4, "cells_per_stage": 1, "epochs": 2,
            "fake_size": 80, "batch_size": 32, "lr": 0.05, **overrides}


@pytest.mark.parametrize("workers", [0, 1])
def test_fake_trainable_two_epochs_checkpoint_and_identical_resume(tmp_path, workers):
    from raynas.trainables import ImageTrainable

    config = _fake_config(num_workers=workers)
    reference = ImageTrainable(config=config)
    uninterrupted = [reference.step(), reference.step()]
    assert [r["epoch"] for r in uninterrupted] == [1, 2] and uninterrupted[-1]["done"]
    first = uninterrupted[0]
    assert first["device"] == "cpu" and first["amp"] is False
    assert first["params"] > 0 and first["flops"] > 0 and first["images_per_s"] > 0
    assert all(math.isfinite(r["train_loss"]) and 0 <= r["val_acc"] <= 100 for r in uninterrupted)

    paused = ImageTrainable(config=config)
    paused.step()
    paused.save_checkpoint(str(tmp_path))
    state = torch.load(tmp_path / ImageTrainable.checkpoint_file, weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "generator", "torch_rng", "epoch"} <= set(state)
    assert state["epoch"] == 1
    resumed = ImageTrainable(config=config)
    resumed.load_checkpoint(str(tmp_path))
    after = resumed.step()
    assert after["epoch"] == 2 and after["done"]
    for key in ("val_acc", "train_loss", "val_loss"):
        assert after[key] == uninterrupted[1][key], key  # bit-identical on the CPU
    with pytest.raises(RuntimeError, match="already trained"):
        resumed.step()


def test_cpu_path_amp_off_channels_last_and_cuda_errors():
    from raynas.trainables import ImageTrainable

    trainable = ImageTrainable(config=_fake_config(amp=True, epochs=1, fake_size=20))
    assert trainable.amp is False and trainable.scaler.is_enabled() is False  # AMP is CUDA-only here
    conv = next(m for m in trainable.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert trainable.step()["amp"] is False
    flat = ImageTrainable(config=_fake_config(channels_last=False, epochs=1, fake_size=20))
    conv = next(m for m in flat.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"'cuda' but no CUDA device is visible.*--gpus-per-trial"):
            ImageTrainable(config=_fake_config(device="cuda"))


def test_checkpoint_from_a_gpu_run_resumes_on_the_cpu(tmp_path):
    """A CUDA checkpoint carries a live AMP scaler state and the CUDA RNG; a CPU trial resumes from it."""
    from raynas.trainables import ImageTrainable

    config = {**SMALL_CELL.to_config(), "epochs": 2, "channels": 4}
    reference = ImageTrainable(config=config)
    uninterrupted = [reference.step() for _ in range(2)]
    paused = ImageTrainable(config=config)
    paused.step()
    paused.save_checkpoint(str(tmp_path))
    path = tmp_path / ImageTrainable.checkpoint_file
    state = torch.load(path, weights_only=True)
    assert state["scaler"] == {}  # disabled on the CPU
    state["scaler"] = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                       "growth_interval": 2000, "_growth_tracker": 3}
    state["cuda_rng"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(state, path)
    resumed = ImageTrainable(config=config)
    resumed.load_checkpoint(str(tmp_path))
    after = resumed.step()
    assert after["epoch"] == 2
    assert (after["val_acc"], after["train_loss"]) == (uninterrupted[1]["val_acc"], uninterrupted[1]["train_loss"])


def test_cifar_trial_fails_in_setup_naming_path_and_flag(tmp_path):
    from raynas.data.vision import DatasetNotFoundError
    from raynas.trainables import ImageTrainable

    started = time.time()
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-batches-py.*--download"):
        ImageTrainable(config={**SMALL_CELL.to_config(), "dataset": "cifar10", "data_dir": str(tmp_path)})
    assert time.time() - started < 30


def test_nb101_on_digits_learns_and_config_errors_are_named():
    from raynas.trainables import DigitsTrainable, ImageTrainable

    arch = NB101.make([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])
    trainable = ImageTrainable(config={**arch.to_config(), "epochs": 3, "channels": 8})
    results = [trainable.step() for _ in range(3)]
    assert results[-1]["val_acc"] > 80.0, results
    assert results[-1]["arch_str"] == NB101.describe(arch)
    # actor reuse across spaces: an NB201 cell next
    assert trainable.reset_config({**SMALL_CELL.to_config(), "epochs": 1}) is True
    assert trainable.step()["arch_str"] == NB201.describe(SMALL_CELL)

    with pytest.raises(ValueError, match=r"config\['dataset'\] must be one of"):
        ImageTrainable(config={**arch.to_config(), "dataset": "imagenet"})
    with pytest.raises(InvalidArchitectureError, match="config\\['space'\\] is 'nb201'"):
        ImageTrainable(config={**arch.to_config(), "space": "nb201"})
    with pytest.raises(ValueError, match="val_fraction"):
        ImageTrainable(config={**arch.to_config(), "val_fraction": 1.5})
    with pytest.raises(ValueError, match="ImageTrainable"):
        DigitsTrainable(config={**arch.to_config(), "dataset": "cifar10"})


# ------------------------------------------------------ search wiring (Ray)
def test_search_spec_builds_image_experiments(tmp_path):
    from raynas.searchers.experiment import SearchSpec, build_experiment
    from raynas.trainables import DigitsTrainable, ImageTrainable

    digits = build_experiment(SearchSpec(storage=str(tmp_path), name="d"))
    assert digits.trainable.__name__ == DigitsTrainable.__name__ and digits.max_t == 6  # the main job
    cifar = SearchSpec(space="nb101", dataset="cifar10", data_dir="rel/data", storage=str(tmp_path))
    assert cifar.data_dir == os.path.abspath("rel/data") and cifar.name.startswith("bonas-cifar10-")
    experiment = build_experiment(cifar)
    assert experiment.trainable.__name__ == ImageTrainable.__name__
    assert experiment.max_t == 108 and experiment.metric == "val_acc"
    assert experiment.param_space == {"dataset": "cifar10", "space": "nb101", "epochs": 108, "seed": 0,
                                      "data_dir": os.path.abspath("rel/data"), "download": False}
    with pytest.raises(ValueError, match="dataset must be one of"):
        SearchSpec(dataset="mnist", storage=str(tmp_path))
    with pytest.raises(ValueError, match="real training supports the spaces"):
        build_experiment(SearchSpec(space="positional", storage=str(tmp_path), name="p"))


def test_missing_cifar_fails_before_tune_starts(tmp_path, monkeypatch):
    from raynas.searchers.experiment import SearchSpec, check_data

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = SearchSpec(dataset="cifar100", data_dir=str(tmp_path), storage=str(tmp_path), name="c")
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.*--download"):
        check_data(spec)
    check_data(SearchSpec(dataset="cifar100", data_dir=str(tmp_path), download=True, storage=str(tmp_path)))


def test_gpu_request_without_gpus_fails_fast(ray_session, tmp_path):
    from raynas.searchers.experiment import SearchSpec, check_cluster_resources

    check_cluster_resources(SearchSpec(storage=str(tmp_path), name="ok"))  # 1 CPU per trial fits
    started = time.time()
    with pytest.raises(ValueError, match=r"1 GPU .*no node of the Ray cluster has that.*0 GPU"):
        check_cluster_resources(SearchSpec(gpus_per_trial=1, storage=str(tmp_path), name="g"))
    with pytest.raises(ValueError, match=r"waited 1 s.*--wait-for-gpus"):
        check_cluster_resources(SearchSpec(gpus_per_trial=0.5, wait_for_gpus=1, storage=str(tmp_path), name="w"),
                                poll_s=0.2)
    with pytest.raises(ValueError, match="lower --cpus-per-trial"):
        check_cluster_resources(SearchSpec(cpus_per_trial=64, storage=str(tmp_path), name="c"))
    assert time.time() - started < 15


@pytest.mark.parametrize("space_name", ["macro_cnn", "macro_mlp", "mobilenet"])
def test_chain_and_block_spaces_train_on_digits_with_their_size_keys(space_name):
    import numpy as np

    from raynas.registry import make_space
    from raynas.trainables import ImageTrainable

    space = make_space(space_name)
    arch = space.sample(np.random.default_rng(3))
    trainable = ImageTrainable(config={**arch.to_config(), "epochs": 1, "width_mult": 0.25, "num_threads": 1})
    result = trainable.train()
    assert 0.0 <= result["val_acc"] <= 100.0 and result["params"] > 0 and result["flops"] > 0
    assert trainable.settings["width_mult"] == 0.25 and "channels" not in trainable.settings
    with pytest.raises(ValueError, match=r"config\['channels'\] does not apply to space"):
        ImageTrainable(config={**arch.to_config(), "channels": 8})
    with pytest.raises(ValueError, match="width_mult"):
        ImageTrainable(config={**arch.to_config(), "width_mult": -1})


def test_ray_train_logs_quieted_in_workers_when_asked(monkeypatch):
    """`raynas search` without --verbose sets the variable for local workers: no checkpoint line per epoch."""
    import logging

    from raynas.trainables.training import RAY_TRAIN_LOG_LEVEL_ENV, quiet_ray_train_logs

    train_logger = logging.getLogger("ray.train")
    monkeypatch.setattr(train_logger, "level", train_logger.level)  # restored after the test
    monkeypatch.delenv(RAY_TRAIN_LOG_LEVEL_ENV, raising=False)
    quiet_ray_train_logs()
    before = train_logger.level
    monkeypatch.setenv(RAY_TRAIN_LOG_LEVEL_ENV, "WARNING")
    quiet_ray_train_logs()
    assert before != logging.WARNING and train_logger.level == logging.WARNING
    assert not logging.getLogger("ray.train._internal.storage").isEnabledFor(logging.INFO)
