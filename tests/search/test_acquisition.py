"""Scoring candidates from one joint posterior (raynas.bo.acquisition) equals BoTorch's own batch evaluation."""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition.analytic import LogExpectedImprovement, UpperConfidenceBound
from botorch.models import SingleTaskGP

from raynas.bo.acquisition import MarginalPosterior, marginals, score_candidates


def _model() -> SingleTaskGP:
    generator = torch.Generator().manual_seed(0)
    X = torch.rand(12, 3, generator=generator, dtype=torch.float64)
    Y = (X.sin().sum(-1, keepdim=True) + 0.05 * torch.randn(12, 1, generator=generator, dtype=torch.float64))
    model = SingleTaskGP(X, Y)
    model.eval()
    return model


@pytest.mark.parametrize("make", [lambda m: LogExpectedImprovement(m, best_f=1.2),
                                  lambda m: UpperConfidenceBound(m, beta=4.0)], ids=["logei", "ucb"])
def test_scores_equal_the_batch_evaluation(make):
    model = _model()
    candidates = torch.rand(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        batch = make(model)(candidates.unsqueeze(-2)).reshape(-1)
    fast = score_candidates(model, candidates, make)
    assert fast.shape == (50,)
    assert torch.allclose(fast, batch, rtol=1e-9, atol=1e-9)
    assert int(fast.argmax()) == int(batch.argmax())


def test_given_marginals_are_used_and_other_points_are_refused():
    model = _model()
    candidates = torch.rand(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mean, variance = marginals(model, candidates)
    assert mean.shape == variance.shape == (5,) and bool((variance > 0).all())
    # a higher mean at the same variance scores higher: the given marginals, not the model's, are read
    shifted = score_candidates(model, candidates, lambda m: UpperConfidenceBound(m, beta=1.0),
                               mean=mean + torch.arange(5.0, dtype=torch.float64), variance=variance)
    plain = score_candidates(model, candidates, lambda m: UpperConfidenceBound(m, beta=1.0))
    assert torch.allclose(shifted - plain, torch.arange(5.0, dtype=torch.float64))
    fixed = MarginalPosterior(candidates, mean, variance)
    with pytest.raises(ValueError, match="only for the candidates it was built with"):
        fixed.posterior(candidates[:2].unsqueeze(-2))
    with pytest.raises(ValueError, match="5 candidates, but mean"):
        MarginalPosterior(candidates, mean[:4], variance[:4])
    assert score_candidates(model, candidates[:0], lambda m: UpperConfidenceBound(m, beta=1.0)).shape == (0,)
