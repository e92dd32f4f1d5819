"""The device-resident data path on the CPU (device="cpu"), its automatic choice, and GPU packing.

Everything here runs without CUDA; tests/trainables/test_cuda.py repeats the
device-specific parts on a GPU.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from raynas.data.resident import (
    RESIDENT_RESERVE_BYTES, ResidentImageData, choose_data_path, crop_flip, decide_data_path, normalise,
    sample_crop_flip,
)
from raynas.spaces import NB201Space

NB201 = NB201Space()
SMALL_CELL = NB201.make(["nor_conv_1x1", "skip_connect", "none", "skip_connect", "none", "nor_conv_1x1"])
GB = 10**9


def _pattern_images(n: int) -> torch.Tensor:
    """uint8 (n, 3, 32, 32): channel 0 = column + 1, channel 1 = row + 1, channel 2 = 200 (never 0)."""
    cols = torch.arange(1, 33, dtype=torch.uint8).expand(32, 32)
    image = torch.stack([cols, cols.t(), torch.full((32, 32), 200, dtype=torch.uint8)])
    return image.expand(n, 3, 32, 32).contiguous()


def _resident(n_train=64, n_val=16, **kwargs) -> ResidentImageData:
    x = _pattern_images(n_train + n_val)
    y = torch.arange(n_train + n_val)
    defaults = dict(device="cpu", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return ResidentImageData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], **{**defaults, **kwargs})


# ---------------------------------------------------------------- the data
def test_fake_tensors_are_fakedata_pixel_for_pixel_and_split_the_same_way():
    from torchvision.datasets import FakeData

    from raynas.data.vision import image_data_bytes, load_image_datasets, load_image_tensors

    reference = FakeData(size=300, image_size=(3, 32, 32), num_classes=10, random_offset=0)
    tensors = load_image_tensors("fake", fake_size=300, val_fraction=0.2, split_seed=3)
    datasets = load_image_datasets("fake", fake_size=300, val_fraction=0.2, split_seed=3)
    assert tensors.x_train.dtype == torch.uint8 and tensors.x_train.shape == (240, 3, 32, 32)
    assert tensors.x_val.shape == (60, 3, 32, 32) and tensors.y_train.dtype == torch.int64
    assert tensors.info == datasets.info and tensors.nbytes == image_data_bytes("fake", 300)
    for position, index in enumerate(datasets.train.indices):
        image, label = reference[index]
        assert torch.equal(tensors.x_train[position], torch.from_numpy(np.array(image)).permute(2, 0, 1))
        assert int(tensors.y_train[position]) == label
    # validation images through the resident path equal the DataLoader path's (ToTensor + Normalize) exactly
    resident = ResidentImageData.from_tensors(tensors, "cpu")
    (x_val, y_val), = list(resident.val_batches(batch_size=1000))
    expected = torch.stack([datasets.val[i][0] for i in range(len(datasets.val))])
    assert torch.equal(x_val, expected)
    assert y_val.tolist() == [datasets.val[i][1] for i in range(len(datasets.val))]
    assert image_data_bytes("cifar10") == image_data_bytes("cifar100") == 50_000 * (3072 + 8)
    with pytest.raises(ValueError, match="unknown data set"):
        image_data_bytes("imagenet")


def test_resident_batches_shapes_dtype_memory_format_and_every_image_once_per_epoch():
    data = _resident(n_train=70, memory_format=torch.channels_last)
    assert data.num_train == 70 and data.num_val == 16 and data.nbytes == 86 * (3072 + 8)
    generator = torch.Generator().manual_seed(0)
    for _epoch in range(2):
        batches = list(data.train_batches(32, generator))
        assert [y.shape[0] for _, y in batches] == [32, 32, 6]
        for x, y in batches:
            assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 32, 32)
            assert x.is_contiguous(memory_format=torch.channels_last)
        labels = torch.cat([y for _, y in batches])
        assert sorted(labels.tolist()) == list(range(70))  # each training image exactly once
    val = list(data.val_batches(batch_size=10))
    assert [y.tolist() for _, y in val] == [list(range(70, 80)), list(range(80, 86))]  # in order
    unaugmented = normalise(_pattern_images(1), data.mean, data.std)
    assert all(torch.equal(x, unaugmented.expand_as(x)) for x, _ in val)  # never augmented


def test_same_seed_same_batches_other_seed_other_batches():
    data = _resident()

    def epoch(seed):
        return list(data.train_batches(16, torch.Generator().manual_seed(seed)))

    a, b, c = epoch(1), epoch(1), epoch(2)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


def test_crop_and_flip_statistics():
    """Offsets uniform on 0..8 in each axis, flips with p = 1/2, zero padding where the crop leaves the image."""
    n = 9000
    images = _pattern_images(n)
    generator = torch.Generator().manual_seed(0)
    offsets, flips = sample_crop_flip(n, generator)
    out = crop_flip(images, offsets, flips).long()
    assert out.shape == images.shape and out.dtype == torch.long
    # Recover the draws from the pixels: row 16 holds rows oy + 12 (value oy + 13); columns
    # 15 and 16 hold ox + 11 and ox + 12, in reverse order when flipped.
    oy = out[:, 1, 16, 16] - 13
    flipped = out[:, 0, 16, 16] < out[:, 0, 16, 15]
    ox = torch.where(flipped, out[:, 0, 16, 16] - 12, out[:, 0, 16, 16] - 13)
    assert torch.equal(oy, offsets[:, 0]) and torch.equal(ox, offsets[:, 1]) and torch.equal(flipped, flips)
    for axis in (oy, ox):
        counts = torch.bincount(axis, minlength=9).double()
        assert counts.shape == (9,) and int(counts.sum()) == n
        chi2 = float(((counts - n / 9) ** 2 / (n / 9)).sum())
        assert chi2 < 26.1, counts  # 8 degrees of freedom, p = 0.001
    assert abs(flips.double().mean().item() - 0.5) < 0.025  # 5 standard deviations
    # rows/columns that came from the padding are zero in every channel; the rest never is
    for i in range(200):
        r, c = int(offsets[i, 0]), int(offsets[i, 1])
        inside = torch.zeros(40, 40, dtype=torch.bool)
        inside[4:36, 4:36] = True
        window = inside[r : r + 32, c : c + 32]
        if flips[i]:
            window = window.flip(1)
        assert torch.equal(out[i, 2] != 0, window)


def test_augmentation_equals_torchvision_for_the_same_draws():
    """pad 4 + crop + flip + ToTensor + Normalize (torchvision, per PIL image) = the resident batch, exactly."""
    from torchvision.transforms import functional as TF

    from raynas.data.vision import load_image_tensors, normalisation

    tensors = load_image_tensors("fake", fake_size=64, val_fraction=0.5)
    images = tensors.x_train[:32]
    generator = torch.Generator().manual_seed(5)
    offsets, flips = sample_crop_flip(32, generator)
    mean, std = normalisation("fake")
    data = ResidentImageData.from_tensors(tensors, "cpu")
    ours = normalise(crop_flip(images, offsets, flips), data.mean, data.std)
    for i in range(32):
        pil = TF.to_pil_image(images[i])
        pil = TF.crop(TF.pad(pil, 4), int(offsets[i, 0]), int(offsets[i, 1]), 32, 32)
        if flips[i]:
            pil = TF.hflip(pil)
        reference = TF.normalize(TF.to_tensor(pil), mean, std)
        assert torch.equal(ours[i], reference), i
    # augment_batch draws from the generator exactly what sample_crop_flip draws
    again = data.augment_batch(images, torch.Generator().manual_seed(5))
    assert torch.equal(again, crop_flip(images, offsets, flips))


def test_resident_data_argument_errors():
    x, y = _pattern_images(4), torch.arange(4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ResidentImageData(x[0], y, x, y, device="cpu")
    with pytest.raises(ValueError, match="differ in number"):
        ResidentImageData(x, y[:3], x, y, device="cpu")
    with pytest.raises(ValueError, match="both mean and std"):
        ResidentImageData(x, y, x, y, device="cpu", mean=(0.5,) * 3)
    with pytest.raises(ValueError, match="3 values each"):
        ResidentImageData(x, y, x, y, device="cpu", mean=(0.5,), std=(0.2,))


# -------------------------------------------------------- automatic choice
def test_choose_data_path_forced_and_by_size():
    cifar = 50_000 * (3072 + 8)
    forced = choose_data_path("loader", cifar, "cuda")
    assert forced.path == "loader" and "forced" in forced.reason
    assert choose_data_path("resident", 10**12, "cpu").path == "resident"  # forcing ignores the size
    assert choose_data_path("auto", cifar, "cpu").path == "loader"  # CPU default
    assert choose_data_path("auto", cifar, "cpu", cpu_default="resident").path == "resident"
    # an H200 with 8 trials per GPU: 141 GB / 8 = 17.6 GB usable, a quarter of it 4.4 GB >> 154 MB
    fits = choose_data_path("auto", cifar, "cuda", free_bytes=140 * GB, total_bytes=141 * GB, gpu_share=0.125)
    assert fits.path == "resident" and "fits on the device" in fits.reason and "share 0.125" in fits.reason
    # the budget: max_fraction * min(free - reserve, total * share)
    budget = int(0.25 * min(10 * GB - RESIDENT_RESERVE_BYTES, 40 * GB))
    at = dict(free_bytes=10 * GB, total_bytes=40 * GB)
    assert choose_data_path("auto", budget, "cuda", **at).path == "resident"
    assert choose_data_path("auto", budget + 1, "cuda", **at).path == "loader"
    small_share = choose_data_path("auto", cifar, "cuda", free_bytes=16 * GB, total_bytes=16 * GB, gpu_share=1 / 32)
    assert small_share.path == "loader" and "too large" in small_share.reason  # 0.25 * 0.5 GB < 154 MB
    full = choose_data_path("auto", 20 * GB, "cuda", free_bytes=100 * GB, total_bytes=100 * GB, gpu_share=0.0)
    assert full.path == "resident"  # share 0 (outside Tune): the whole device
    assert choose_data_path("auto", 1, "cuda", free_bytes=GB, total_bytes=80 * GB).path == "loader"  # none free
    with pytest.raises(ValueError, match="data_path must be one of"):
        choose_data_path("gpu", 1, "cuda")
    with pytest.raises(ValueError, match="mem_get_info"):
        choose_data_path("auto", 1, "cuda")


def test_decide_data_path_logs_its_choice(caplog):
    with caplog.at_level(logging.INFO, logger="raynas.data.resident"):
        choice = decide_data_path("auto", 10**6, "cpu", label="T")
    assert choice.path == "loader"
    assert any("T: data path loader" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------ the trainable
def _fake_config(**overrides):
    return {**SMALL_CELL.to_config(), "dataset": "fake", "channels": 4, "cells_per_stage": 1, "epochs": 2,
            "fake_size": 80, "batch_size": 32, "lr": 0.05, **overrides}


def test_trainable_resident_on_cpu_trains_and_resumes_bit_identically(tmp_path):
    from raynas.trainables import ImageTrainable

    config = _fake_config(data_path="resident")
    reference = ImageTrainable(config=config)
    assert reference._resident is not None and reference._datasets is None
    assert reference.data_generator is reference.generator  # on the CPU: one generator
    uninterrupted = [reference.step(), reference.step()]
    first = uninterrupted[0]
    assert first["data_path"] == "resident" and first["amp_dtype"] == "float32" and first["device"] == "cpu"
    assert first["images_per_s"] > 0 and math.isfinite(first["train_loss"]) and 0 <= first["val_acc"] <= 100

    paused = ImageTrainable(config=config)
    paused.step()
    paused.save_checkpoint(str(tmp_path))
    state = torch.load(tmp_path / ImageTrainable.checkpoint_file, weights_only=True)
    assert state["data_path"] == "resident" and "data_generator" not in state
    resumed = ImageTrainable(config=config)
    resumed.load_checkpoint(str(tmp_path))
    after = resumed.step()
    for key in ("val_acc", "train_loss", "val_loss"):
        assert after[key] == uninterrupted[1][key], key


def test_trainable_resident_and_loader_validate_identically():
    """Same weights, same validation images: both paths give the same validation loss and accuracy."""
    from raynas.trainables import ImageTrainable

    resident = ImageTrainable(config=_fake_config(data_path="resident", batch_size=16))
    loader = ImageTrainable(config=_fake_config(data_path="loader", batch_size=16))
    assert loader._resident is None and loader.train_size == resident.train_size == 72
    loader.model.load_state_dict(resident.model.state_dict())
    assert resident._evaluate() == loader._evaluate()


def test_trainable_automatic_choice_on_cpu_and_forced_paths():
    from raynas.trainables import DigitsTrainable, ImageTrainable

    fake = ImageTrainable(config=_fake_config(epochs=1))
    assert fake.data_path == "loader" and "keeps the loader path" in fake.data_path_reason
    digits = DigitsTrainable(config={**SMALL_CELL.to_config(), "epochs": 1, "channels": 4})
    assert digits.data_path == "resident" and digits._resident is not None
    digits_loader = DigitsTrainable(config={**SMALL_CELL.to_config(), "epochs": 1, "channels": 4,
                                            "data_path": "loader"})
    assert digits_loader._resident is None
    a, b = digits.step(), digits_loader.step()
    assert a["data_path"] == "resident" and b["data_path"] == "loader"
    assert 0 <= b["val_acc"] <= 100 and math.isfinite(b["train_loss"])
    # actor reuse: switching data_path reloads the data
    assert fake.reset_config(_fake_config(epochs=1, data_path="resident")) is True
    assert fake.data_path == "resident" and fake.step()["data_path"] == "resident"
    with pytest.raises(ValueError, match=r"config\['data_path'\] must be one of"):
        ImageTrainable(config=_fake_config(data_path="gpu"))
    with pytest.raises(ValueError, match=r"config\['amp_dtype'\]"):
        ImageTrainable(config=_fake_config(amp_dtype="float8"))


def test_digits_results_unchanged_by_the_resident_rewrite():
    """The digits path keeps the CPU batch order: the same seed gives the same run as the DataLoader-free
    loop it replaced (order from ``torch.randperm(n, generator=Generator().manual_seed(seed))``)."""
    from raynas.data.digits import load_digits_split
    from raynas.trainables import DigitsTrainable

    trainable = DigitsTrainable(config={**SMALL_CELL.to_config(), "epochs": 1, "channels": 4, "seed": 3,
                                          "val_fraction": 0.2})
    split = load_digits_split(0.2, 0)
    batches = list(trainable._batches(train=True))
    order = torch.randperm(split.x_train.shape[0], generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat([x for x, _ in batches]), split.x_train[order])
    assert torch.equal(torch.cat([y for _, y in batches]), split.y_train[order])


# ------------------------------------------------------------------ packing
def test_packing_with_given_numbers():
    from raynas.resources import (
        BYTES_PER_ACTIVATION_AMP, BYTES_PER_PARAM, CUDA_CONTEXT_BYTES, WORKSPACE_BYTES, pick_gpus_per_trial,
        trial_memory_bytes,
    )

    need = trial_memory_bytes(1_000_000, 2_000_000, 256, data_bytes=154_000_000)
    assert need == (CUDA_CONTEXT_BYTES + WORKSPACE_BYTES + BYTES_PER_PARAM * 1_000_000
                    + BYTES_PER_ACTIVATION_AMP * 2_000_000 * 256 + 154_000_000)
    assert trial_memory_bytes(1, 1, 1, amp=False) > trial_memory_bytes(1, 1, 1)
    # a small NB201 cell (0.07 M params, ~1 M activation elements per image) on an H200: 1/8
    small = pick_gpus_per_trial(73_306, 1_000_000, 256, 141 * GB)
    assert small.gpus_per_trial == 0.125 and small.trials_per_gpu == 8 and small.fits
    assert "8 trials per GPU" in small.reason and "utilisation" in small.reason
    # the heaviest NB201 cell (1.53 M params): 1/4
    heavy = pick_gpus_per_trial(1_531_546, 2_700_000, 256, 141 * GB)
    assert heavy.gpus_per_trial == 0.25 and heavy.utilisation_limit == 4 and heavy.memory_limit > 4
    # memory binds on a 16 GB GPU: ~5.5 GB per trial -> 2 fit in 0.9 * 16 GB
    small_gpu = pick_gpus_per_trial(1_531_546, 2_700_000, 256, 16 * GB)
    assert small_gpu.memory_limit == 2 and small_gpu.gpus_per_trial == 0.5 and "bound by memory" in small_gpu.reason
    # 3 fit by memory (0.9 * 20 GB / 5.3 GB) -> rounded down to 2 (packs tile a GPU)
    three = pick_gpus_per_trial(1_531_546, 2_700_000, 256, 20 * GB)
    assert three.memory_limit == 3 and three.trials_per_gpu == 2
    # CPUs bind: 2 CPUs per GPU at 1 CPU per trial
    cpu_bound = pick_gpus_per_trial(73_306, 1_000_000, 256, 141 * GB, cpus_per_gpu=2)
    assert cpu_bound.gpus_per_trial == 0.5 and cpu_bound.cpu_limit == 2 and "bound by CPUs" in cpu_bound.reason
    # tiers: 5 M -> 2 per GPU; 20 M -> a whole GPU
    assert pick_gpus_per_trial(5_000_000, 1e6, 128, 80 * GB).gpus_per_trial == 0.5
    big = pick_gpus_per_trial(20_000_000, 1e6, 128, 80 * GB)
    assert big.gpus_per_trial == 1.0 and "whole GPU" in big.reason
    assert pick_gpus_per_trial(73_306, 1e6, 256, 141 * GB, max_trials_per_gpu=4).gpus_per_trial == 0.25
    # does not fit at all: one per GPU, flagged
    huge = pick_gpus_per_trial(1_000_000, 50_000_000, 512, 16 * GB)
    assert huge.gpus_per_trial == 1.0 and not huge.fits and "lower the batch size" in huge.reason
    with pytest.raises(ValueError):
        pick_gpus_per_trial(0, 1, 1, GB)
    with pytest.raises(ValueError):
        pick_gpus_per_trial(1, 1, 1, GB, max_trials_per_gpu=0)


def test_packing_for_a_built_nb201_network():
    from raynas.models import build_model
    from raynas.resources import activation_elements, local_gpu_memory, packing_for_model

    small = build_model(NB201, NB201.make(["none"] * 6), num_classes=10, in_channels=3, channels=16,
                        cells_per_stage=5)
    heavy = build_model(NB201, NB201.make(["nor_conv_3x3"] * 6), num_classes=10, in_channels=3, channels=16,
                        cells_per_stage=5)
    heavy.train()
    acts = activation_elements(heavy, (3, 32, 32))
    assert heavy.training and acts > activation_elements(small, (3, 32, 32)) > 3 * 32 * 32
    assert packing_for_model(small, (3, 32, 32), 256, gpu_memory_bytes=141 * GB).gpus_per_trial == 0.125
    packing = packing_for_model(heavy, (3, 32, 32), 256, gpu_memory_bytes=141 * GB, data_bytes=154_000_000)
    assert packing.gpus_per_trial == 0.25 and "1.53 M parameters" in packing.reason
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            local_gpu_memory()


def test_fake_size_defaults_to_the_environment(monkeypatch):
    """``raynas search --dataset fake`` sizes its data through $RAYNAS_FAKE_SIZE (benchmarks/gpu_check.py)."""
    from raynas.trainables import ImageTrainable

    config = {k: v for k, v in _fake_config(epochs=1).items() if k != "fake_size"}
    monkeypatch.setenv("RAYNAS_FAKE_SIZE", "50")
    assert ImageTrainable(config=config).train_size == 45
    assert ImageTrainable(config={**config, "fake_size": 30}).train_size == 27  # the config wins
    monkeypatch.setenv("RAYNAS_FAKE_SIZE", "lots")
    with pytest.raises(ValueError, match="RAYNAS_FAKE_SIZE must be an integer"):
        ImageTrainable(config=config)
    monkeypatch.delenv("RAYNAS_FAKE_SIZE")
    assert ImageTrainable(config=config).settings["fake_size"] == 1024
