"""CLIP score and the zero-shot CLIP judge: a hand-computed score on a tiny CLIP, the shipped CLIP's ranking bar."""

from __future__ import annotations

import json

import pytest
import torch

from evals.clip import ClipJudge, LocalClip, clip_score


@pytest.fixture
def tiny_clip():
    from canvas_data.clip_train import build_clip
    from diffusion.tiny import build_tokenizer

    tok = build_tokenizer("a image in style neon sketch star circle".split(), model_max_length=12)
    return LocalClip(build_clip(tok, image_size=8, width=16, layers=1), tok, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_clip_score_is_100_times_the_clipped_cosine(tiny_clip):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 8, 8, generator=g)
    captions = ["a star image in neon style", "a circle image in sketch style", "a star image"]
    got = clip_score(images, captions, clip=tiny_clip)
    model = tiny_clip.model
    with torch.no_grad():  # by hand: the projected embeddings straight from the model
        img = model.get_image_features(pixel_values=(images - 0.5) / 0.5)
        img = img if torch.is_tensor(img) else img.pooler_output
        tok = tiny_clip.tokenizer(captions, padding=True, return_tensors="pt")
        txt = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        txt = txt if torch.is_tensor(txt) else txt.pooler_output
    hand = 100 * torch.nn.functional.cosine_similarity(img, txt)
    assert torch.allclose(torch.tensor(got["value_by_index"]), hand, atol=1e-4)
    # torchmetrics' CLIPScore: the mean over the images, clamped at 0
    assert got["agg_value"] == pytest.approx(max(float(hand.mean()), 0.0), abs=1e-3)
    assert clip_score(images[:1], captions[:1], clip=tiny_clip)["agg_value"] == pytest.approx(
        max(float(hand[0]), 0.0), abs=1e-3)
    with pytest.raises(ValueError, match="one caption per image"):
        clip_score(images, captions[:2], clip=tiny_clip)


def test_local_clip_refuses_what_is_not_a_clip_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="not a CLIP folder"):
        LocalClip.load(tmp_path)
    with pytest.raises(ValueError, match="config.json missing"):
        LocalClip.load(tmp_path / "nothing")


def test_shipped_clip_ranks_the_right_caption_first():
    """The bar: among all 100 mini-canvas captions, the held-out image's own caption ranks first >= 90% of the time."""
    from canvas_data.clip_train import heldout_top1
    from evals.clip import load_clip

    assert heldout_top1(load_clip("mini-canvas-clip"), per_pair=3, start=20_000) >= 0.9


def test_clip_judge_labels_the_shipped_models_generations():
    """As a zero-shot judge, it agrees with the prompt on the shipped text-to-image model's images mostly."""
    from diffusion.pipeline import T2IPipeline
    from erasure.models import resolve_model_path

    pipe = T2IPipeline.load(resolve_model_path("mini-canvas"))
    c = pipe.concepts
    pairs = [(s, o) for s in c.styles[:5] for o in c.objects[:4]]
    images = pipe.sample([c.prompt(o, s) for s, o in pairs], num_steps=10, seed=0)
    judge = ClipJudge("mini-canvas-clip", {"style": c.styles, "object": c.objects})
    pred = judge.predict(images)
    style_acc = (pred["style"] == torch.tensor([c.styles.index(s) for s, _ in pairs])).float().mean()
    assert style_acc >= 0.6, style_acc
