"""The learned embedding kernel: it learns (held-out log-likelihood), and it saves, loads and transfers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raynas.surrogates.esnac import (
    FEATURE_DIM, ESNACKernel, fit_kernel, heldout_log_likelihood, layer_features, load_kernels, make_kernel,
    pad_sequences, save_kernels,
)


def synthetic_set(space, n=50, seed=0):
    """Random compressions and a smooth objective of their widths and layer counts, standardised."""
    rng = np.random.default_rng(seed)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(3 * n)))[:n]
    values = []
    for arch in archs:
        d = space.descriptors(arch)
        values.append(sum(np.log2(x.out_channels) for x in d if x.kind in ("conv", "fc"))
                      - 1.5 * sum(x.kind == "bn" for x in d) + rng.normal(0, 0.1))
    y = np.asarray(values)
    table, lengths = pad_sequences([layer_features(space.descriptors(a)) for a in archs])
    return archs, (y - y.mean()) / y.std(), table, lengths


def test_features_and_kernel_shapes(tiny_space):
    features = layer_features(tiny_space.descriptors(tiny_space.teacher_arch))
    assert features.shape == (len(tiny_space.layers), FEATURE_DIM)
    _, _, table, lengths = synthetic_set(tiny_space, n=6)
    kernel = make_kernel(seed=0)
    kernel.base_kernel.set_table(table, lengths)
    x = torch.arange(6, dtype=torch.float64).reshape(-1, 1)
    K = kernel(x, x).to_dense()
    assert K.shape == (6, 6) and torch.allclose(K, K.T)
    assert torch.linalg.eigvalsh(K).min() > -1e-8
    batched = kernel(x.reshape(6, 1, 1), x.reshape(6, 1, 1)).to_dense()  # acquisition-style batch
    torch.testing.assert_close(batched.reshape(6), K.diagonal())
    with pytest.raises(RuntimeError, match="set_table"):
        ESNACKernel()(x, x).to_dense()


def test_learned_embedding_beats_untrained_on_heldout(tiny_space):
    torch.set_num_threads(1)
    _, y, table, lengths = synthetic_set(tiny_space, n=50)
    train, test = list(range(30)), list(range(30, 50))
    scores = {}
    for learn in (False, True):
        lls = []
        for seed in range(2):
            model = fit_kernel(make_kernel(seed=seed), table, lengths, train, y[train], iters=80,
                               train_embedding=learn)
            lls.append(heldout_log_likelihood(model, test, y[test]))
        scores[learn] = float(np.mean(lls))
    assert scores[True] > scores[False] + 0.2, scores


def test_save_load_roundtrip_and_errors(tiny_space, tmp_path):
    _, y, table, lengths = synthetic_set(tiny_space, n=12)
    kernels = [make_kernel(seed=s) for s in range(2)]
    fit_kernel(kernels[0], table, lengths, list(range(12)), y, iters=5)
    path = tmp_path / "kernels.pt"
    save_kernels(path, kernels)
    loaded = load_kernels(path)
    x = torch.arange(12, dtype=torch.float64).reshape(-1, 1)
    for a, b in zip(kernels, loaded):
        a.base_kernel.set_table(table, lengths)
        b.base_kernel.set_table(table, lengths)
        torch.testing.assert_close(a(x, x).to_dense(), b(x, x).to_dense())
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an ESNAC kernels file"):
        load_kernels(tmp_path / "other.pt")
