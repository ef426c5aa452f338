"""FID (Heusel et al. 2017, https://arxiv.org/abs/1706.08500) offline, through torchmetrics'
``FrechetInceptionDistance`` with a feature extractor that needs no download:

- by default the penultimate features of a judge trained here (``CanvasClassifier.embed``: the mini-canvas
  evaluator), so the number is comparable between models evaluated with the same judge, not with published FIDs;
- the standard Inception-v3 pool features when the user has their weights locally (``inception_weights``: the
  torch-fidelity ``pt_inception-2015-12-05`` file); torchmetrics needs the optional ``torch-fidelity`` package for
  that (which needs torchvision; see the README).

FID = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) over the two sets' features.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from evals.metrics import register_metric


class JudgeFeatures(nn.Module):
    """A judge's penultimate features as torchmetrics' feature extractor (images in [0, 1])."""

    def __init__(self, judge: Any):
        super().__init__()
        if not hasattr(judge, "embed"):
            raise ValueError(f"FID features: the judge {type(judge).__name__} has no embed(images) method")
        self.judge = judge
        self.num_features = int(judge.num_features)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        was = self.judge.training
        self.judge.eval()
        dev = next(self.judge.parameters()).device
        out = self.judge.embed(images.float().to(dev)).double().cpu()
        self.judge.train(was)
        return out


def fid_metric(judge: Any = None, inception_weights: str | os.PathLike | None = None) -> Any:
    """A torchmetrics ``FrechetInceptionDistance`` on ``judge``'s features, or on Inception-v3 from a local file.

    Args:
        judge: a judge with ``embed`` (e.g. ``CanvasClassifier``); used when ``inception_weights`` is None.
        inception_weights: a local Inception-v3 FID weights file (nothing is downloaded).

    Returns:
        The metric; ``update(images in [0, 1], real=...)`` then ``compute()``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if inception_weights is not None:
        if not os.path.isfile(inception_weights):
            raise ValueError(f"FID: Inception weights file {str(inception_weights)!r} does not exist")
        try:
            import torch_fidelity  # noqa: F401
        except ImportError as err:
            raise ValueError("FID with Inception features needs the optional package torch-fidelity "
                             "(pip install torch-fidelity; it needs a working torchvision)") from err
        return FrechetInceptionDistance(feature=2048, normalize=True,
                                        feature_extractor_weights_path=str(inception_weights))
    if judge is None:
        raise ValueError("FID needs a judge with embed() or inception_weights")
    return FrechetInceptionDistance(feature=JudgeFeatures(judge), normalize=True)


@register_metric("fid")
def frechet_distance(real: torch.Tensor, fake: torch.Tensor, judge: Any = None,
                     inception_weights: str | os.PathLike | None = None, batch_size: int = 256) -> dict:
    """FID between two image sets in [0, 1] (N, 3, H, W); ``value_by_index`` is empty (a set-level metric).

    Args:
        real: the reference images (e.g. held-out mini-canvas renderings).
        fake: the model's generations.
        judge, inception_weights: the features (``fid_metric``).
        batch_size: images per feature-extractor call.
    """
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"FID needs at least two images per set, got {len(real)} real and {len(fake)} generated")
    metric = fid_metric(judge, inception_weights)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, len(images), batch_size):
            metric.update(images[i: i + batch_size], real=is_real)
    return {"agg_value": float(metric.compute()), "value_by_index": []}
