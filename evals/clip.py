"""CLIP score (Hessel et al. 2021, https://arxiv.org/abs/2104.08718) offline, and a zero-shot CLIP judge.

Any local transformers CLIP folder (``CLIPModel`` weights as safetensors, its tokenizer, optionally
``preprocessor_config.json``) works; the toolkit ships ``mini-canvas-clip``, a small CLIP trained here on mini-canvas
image-caption pairs (``python -m canvas_data.train clip``). Images are preprocessed as tensors (centre crop, resize to
the vision tower's size, the folder's mean/std), so no torchvision and no download is needed.

CLIPScore(I, C) = max(100 cos(E_I, E_C), 0), computed through torchmetrics' ``CLIPScore`` (given this module's
model and processor), which clamps the mean over the images (the paper clamps each image's score; the same for a
trained CLIP, whose cosines are positive); ``value_by_index`` holds each image's 100 cos before clamping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from evals.metrics import register_metric

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's preprocessing, when a folder does not say
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _features(out: Any) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features (the projected embeddings in pooler_output)."""
    return out if torch.is_tensor(out) else out.pooler_output


class LocalClip:
    """A CLIP model, tokenizer and tensor preprocessing from one local folder (nothing downloads).

    Args:
        model: a transformers ``CLIPModel``.
        tokenizer: its tokenizer.
        mean, std: the image normalisation.
    """

    def __init__(self, model: Any, tokenizer: Any, mean: Sequence[float] = OPENAI_MEAN,
                 std: Sequence[float] = OPENAI_STD):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        self.image_size = int(model.config.vision_config.image_size)
        self.max_length = int(model.config.text_config.max_position_embeddings)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LocalClip":
        """The CLIP folder at ``path`` (safetensors weights only)."""
        from transformers import AutoTokenizer, CLIPModel

        from erasure.files import require_safetensors

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"no CLIP model at {str(path)!r} (config.json missing)")
        if json.loads((path / "config.json").read_text()).get("model_type") != "clip":
            raise ValueError(f"{str(path)!r} is not a CLIP folder (its config.json model_type is not 'clip')")
        require_safetensors(path)
        pre = path / "preprocessor_config.json"
        norm = json.loads(pre.read_text()) if pre.is_file() else {}
        return cls(CLIPModel.from_pretrained(path), AutoTokenizer.from_pretrained(path),
                   norm.get("image_mean", OPENAI_MEAN), norm.get("image_std", OPENAI_STD))

    def pixel_values(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Images in [0, 1] ((B, 3, H, W) or a list of (3, H, W)) -> the vision tower's input."""
        x = torch.stack(list(images)) if not torch.is_tensor(images) else images
        side = min(x.shape[-2:])
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        x = x[..., top: top + side, left: left + side].float()
        if side != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", antialias=True,
                              align_corners=False).clamp(0, 1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def __call__(self, text: Sequence[str] | None = None, images: Any = None, return_tensors: str = "pt",
                 padding: bool = True) -> dict[str, torch.Tensor]:
        """The processor torchmetrics calls: ``pixel_values`` for images (in [0, 1]), token ids for text."""
        if images is not None:
            return {"pixel_values": self.pixel_values(images)}
        tok = self.tokenizer(list(text), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    # the model side torchmetrics calls
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _features(self.model.get_image_features(pixel_values=pixel_values.to(self.model.device)))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return _features(self.model.get_text_features(input_ids=input_ids.to(self.model.device),
                                                          attention_mask=None if attention_mask is None
                                                          else attention_mask.to(self.model.device)))

    def to(self, device: Any) -> "LocalClip":
        self.model.to(device)
        return self

    def image_embeds(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Unit-norm image embeddings (B, P)."""
        out = [self.get_image_features(self(images=images[i: i + batch_size])["pixel_values"])
               for i in range(0, len(images), batch_size)]
        return F.normalize(torch.cat(out).float(), dim=-1)

    def text_embeds(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text embeddings (T, P)."""
        return F.normalize(self.get_text_features(**self(text=texts)).float(), dim=-1)


def load_clip(clip: str | os.PathLike | LocalClip) -> LocalClip:
    """A ``LocalClip`` from a folder or built-in name (``mini-canvas-clip``), or the one given."""
    if isinstance(clip, LocalClip):
        return clip
    from erasure.models import resolve_model_path

    return LocalClip.load(resolve_model_path(str(clip)))


@register_metric("clip_score")
def clip_score(images: torch.Tensor, captions: Sequence[str], clip: Any = "mini-canvas-clip") -> dict:
    """CLIP score of each image with its caption (torchmetrics' ``CLIPScore`` for the aggregate).

    Args:
        images: (N, 3, H, W) in [0, 1].
        captions: N captions.
        clip: a CLIP folder, built-in name or ``LocalClip``.
    """
    from torchmetrics.multimodal.clip_score import CLIPScore

    if len(images) != len(captions) or not len(captions):
        raise ValueError(f"CLIP score needs one caption per image, got {len(images)} images and {len(captions)} "
                         "captions")
    model = load_clip(clip)
    metric = CLIPScore(model_name_or_path=lambda: (model, model))
    metric.update(list(images.float()), list(captions))
    per = 100 * (model.image_embeds(images) * model.text_embeds(captions)).sum(-1)
    return {"agg_value": float(metric.compute()), "value_by_index": per.tolist()}


class ClipJudge:
    """A zero-shot ``ConceptJudge``: each image's (style, object) is the template caption CLIP scores highest.

    Args:
        clip: a CLIP folder, built-in name or ``LocalClip``.
        labels: {"style": [...], "object": [...]}.
        template: the caption of a (style, object) pair.
    """

    def __init__(self, clip: Any, labels: dict[str, list[str]], template: str = "A {object} image in {style} style."):
        if set(labels) != {"style", "object"}:
            raise ValueError(f"the CLIP judge labels styles and objects, got domains {sorted(labels)}")
        self.clip = load_clip(clip)
        self.labels = {k: list(v) for k, v in labels.items()}
        self.template = template

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each image with every caption, (B, n_styles, n_objects)."""
        styles, objects = self.labels["style"], self.labels["object"]
        captions = [self.template.format(style=s, object=o) for s in styles for o in objects]
        sims = self.clip.image_embeds(images) @ self.clip.text_embeds(captions).T  # (B, S * O)
        return sims.view(len(images), len(styles), len(objects))

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = self.scores(images).flatten(1).argmax(-1)
        n_obj = len(self.labels["object"])
        return {"style": flat // n_obj, "object": flat % n_obj}
