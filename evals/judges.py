"""Judges: classifiers that say which concept an image shows.

The UnlearnCanvas metrics need a classifier that recognises *style* and *object*. Any object with the
``ConceptJudge`` interface plugs in (a ViT trained on real UnlearnCanvas, a zero-shot CLIP judge...);
``CanvasClassifier`` is the small CNN shipped for mini-canvas.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class ConceptJudge(Protocol):
    """Anything that labels images along named domains (e.g. "style" and "object")."""

    labels: dict[str, list[str]]  # domain -> class names

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images in [0, 1] (B, 3, H, W) -> {domain: predicted class index (B,)}."""
        ...


class CanvasClassifier(nn.Module):
    """A small CNN with one head per domain (style, object) for 32x32-ish images.

    Args:
        labels: domain -> class names; one linear head per domain.
        width: channels of the first conv block (doubled twice).
        image_size: side the classifier resizes its inputs to.
    """

    def __init__(self, labels: dict[str, list[str]], width: int = 32, image_size: int = 32):
        super().__init__()
        if not labels or any(len(v) < 2 for v in labels.values()):
            raise ValueError("labels must map each domain to at least two class names")
        self.labels = {k: list(v) for k, v in labels.items()}
        self.width = width
        self.image_size = image_size

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
            )

        self.features = nn.Sequential(
            block(3, width), nn.MaxPool2d(2),
            block(width, 2 * width), nn.MaxPool2d(2),
            block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.heads = nn.ModuleDict({d: nn.Linear(4 * width, len(names)) for d, names in self.labels.items()})

    @property
    def num_features(self) -> int:
        """Width of the penultimate features (``embed``)."""
        return 4 * self.width

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, 3, H, W) -> penultimate features (B, 4w) (the FID features, ``evals.fid``)."""
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = nn.functional.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                               antialias=True, align_corners=False)
        return self.features(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images in [0, 1] (B, 3, H, W) -> {domain: logits (B, n_classes)}."""
        h = self.embed(images)  # (B, 4w)
        return {d: head(h) for d, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        outs: dict[str, list[torch.Tensor]] = {d: [] for d in self.labels}
        for i in range(0, images.shape[0], batch_size):
            logits = self(images[i : i + batch_size].to(dev))
            for d in self.labels:
                outs[d].append(logits[d].argmax(-1).cpu())
        self.train(was)
        return {d: torch.cat(v) if v else torch.empty(0, dtype=torch.long) for d, v in outs.items()}

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, path / "model.safetensors")
        cfg = {"class": "CanvasClassifier", "labels": self.labels, "width": self.width, "image_size": self.image_size}
        (path / "config.json").write_text(json.dumps(cfg, indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CanvasClassifier":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no classifier at {str(path)!r} (config.json missing)")
        cfg = json.loads((path / "config.json").read_text())
        model = cls(cfg["labels"], width=cfg["width"], image_size=cfg["image_size"])
        model.load_state_dict(load_file(path / "model.safetensors"))
        return model.eval()


def accuracy(pred: torch.Tensor, target: Sequence[int] | torch.Tensor) -> float:
    """Fraction of ``pred`` equal to ``target`` (0.0 for empty input)."""
    target = torch.as_tensor(target)
    return float((pred == target).float().mean()) if len(pred) else 0.0


def judge_index(judge: ConceptJudge, domain: str, name: str) -> int:
    """The judge's class id for ``name`` in ``domain``; ``ValueError`` if the judge cannot recognise it."""
    names = judge.labels.get(domain)
    if names is None:
        raise ValueError(f"the judge has no {domain!r} head; it knows: {', '.join(judge.labels)}")
    if name not in names:
        raise ValueError(f"concept {name!r} is unknown to the judge's {domain} classifier ({', '.join(names)})")
    return names.index(name)


def concept_judge(judge: ConceptJudge, domain: str, concept: str) -> Callable[[torch.Tensor, Sequence[Any]], list[bool]]:
    """``(images, rows) -> [judge sees concept in its domain head]`` (``ValueError`` if the judge cannot)."""
    target = judge_index(judge, domain, concept)
    return lambda images, rows=None: (judge.predict(images)[domain] == target).tolist()


def answer_matcher(threshold: float = 0.5) -> Callable[[Sequence[str], Sequence[dict]], list[bool]]:
    """``(answers, rows) -> [ROUGE-L recall of the row's true answer >= threshold]`` (the knowledge came back)."""
    from evals.tofu import rouge_l

    return lambda answers, rows: [rouge_l(a, r["answer"])["recall"] >= threshold for a, r in zip(answers, rows)]


def probe_matcher() -> Callable[[Sequence[str], Sequence[dict]], list[bool]]:
    """``(answers, rows) -> [one of the row's accepted "answers" appears in the answer]`` (mini-RWKU's answer
    match, ``evals.rwku.answered``)."""
    from evals.rwku import answered

    return lambda answers, rows: [answered(a, r["answers"]) for a, r in zip(answers, rows)]
