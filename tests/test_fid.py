"""FID offline: torchmetrics' Frechet distance on a judge's features, checked by hand and on the shipped model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evals.fid import frechet_distance


class MeanPixel(nn.Module):
    """A one-feature 'judge': the mean pixel value of each image."""

    num_features = 1

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def embed(self, images):
        return images.flatten(1).mean(-1, keepdim=True)


def test_fid_matches_the_one_dimensional_formula():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(40, 3, 4, 4, generator=g)
    fake = (torch.rand(30, 3, 4, 4, generator=g) * 0.5 + 0.2)
    a = real.flatten(1).mean(-1).double()
    b = fake.flatten(1).mean(-1).double()
    # 1-D FID: (mu_a - mu_b)^2 + var_a + var_b - 2 sqrt(var_a var_b), unbiased variances as torchmetrics
    hand = (a.mean() - b.mean()) ** 2 + a.var() + b.var() - 2 * (a.var() * b.var()).sqrt()
    got = frechet_distance(real, fake, judge=MeanPixel())
    assert got["agg_value"] == pytest.approx(float(hand), rel=1e-4, abs=1e-8)
    assert frechet_distance(real, real, judge=MeanPixel())["agg_value"] == pytest.approx(0.0, abs=1e-6)


def test_fid_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="at least two images"):
        frechet_distance(torch.rand(1, 3, 4, 4), torch.rand(5, 3, 4, 4), judge=MeanPixel())
    with pytest.raises(ValueError, match="has no embed"):
        frechet_distance(torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4), judge=nn.Linear(1, 1))
    with pytest.raises(ValueError, match="does not exist"):
        frechet_distance(torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4), inception_weights=tmp_path / "nope.pth")


def test_fid_ranks_the_shipped_model_above_a_damaged_one():
    """The sanity bar: held-out renderings are closer to the shipped model's generations than to those of the same
    model with visibly damaged weights."""
    from canvas_data.benchmark import _load_judge, reference_fid
    from diffusion.pipeline import T2IPipeline
    from erasure.models import resolve_model_path

    judge = _load_judge("mini-canvas-evaluator")
    pipe = T2IPipeline.load(resolve_model_path("mini-canvas"))
    concepts = pipe.concepts
    pairs = [(s, o) for s in concepts.styles[:4] for o in concepts.objects[:8]]
    prompts = [concepts.prompt(o, s) for s, o in pairs]
    good = reference_fid(judge, concepts, pipe.sample(prompts, num_steps=10, seed=0), pairs)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.add_(0.3 * p.std().nan_to_num() * torch.randn(p.shape, generator=g))
    damaged = reference_fid(judge, concepts, pipe.sample(prompts, num_steps=10, seed=0), pairs)
    assert good is not None and 2 * good < damaged, (good, damaged)
