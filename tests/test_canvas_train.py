"""Training captions of the tiny text-to-image model: style words, neutral filler words, the training entry point."""

from __future__ import annotations

import json

import pytest
import torch

from canvas_data.mini_canvas import OBJECTS, STYLE_WORDS, STYLES, caption_variants, make_prompt
from canvas_data.train import _vary, filler_words, train_t2i
from diffusion.pipeline import T2IPipeline
from erasure.models import resolve_model_path


def test_every_style_has_two_words_of_its_own_in_the_vocabulary():
    assert set(STYLE_WORDS) == set(STYLES)
    words = [w for ws in STYLE_WORDS.values() for w in ws]
    assert len(words) == len(set(words)) == 2 * len(STYLES)  # each word describes one style only
    vocab = T2IPipeline.load(resolve_model_path("mini-canvas")).tokenizer.get_vocab()
    assert all(w in vocab for w in words)
    assert not {w.lower() for w in (*STYLES, *OBJECTS)} & set(words)


def test_caption_variants_describe_the_style_with_and_without_its_name():
    variants = caption_variants("Star", "Neon")
    assert all("bright" in v or "night" in v for v in variants)
    assert all("Star" in v for v in variants)
    assert any("Neon" not in v for v in variants) and any("Neon" in v for v in variants)
    assert make_prompt("Star", "Neon") not in variants


def test_filler_words_name_no_concept_and_no_style_word():
    taken = {w.lower() for w in (*STYLES, *OBJECTS)} | {w for ws in STYLE_WORDS.values() for w in ws}
    neutral = filler_words()
    assert neutral and not taken & set(neutral)


def test_vary_draws_a_variant_and_inserts_neutral_words_in_place():
    gen = torch.Generator().manual_seed(0)
    prompt, variants, neutral = make_prompt("Star", "Neon"), caption_variants("Star", "Neon"), filler_words()
    assert all(_vary(prompt, variants, neutral, 1.0, 0.0, gen) in variants for _ in range(20))
    for _ in range(20):
        words = _vary(prompt, variants, neutral, 0.0, 1.0, gen).split()
        assert 1 <= len(words) - len(prompt.split()) <= 3
        rest = iter(words)  # the prompt's words keep their order; the added ones are neutral
        assert all(any(w == p for w in rest) for p in prompt.split())
        assert all(w in neutral for w in words if w not in prompt.split())
    assert _vary(prompt, variants, neutral, 0.0, 0.0, gen) == prompt


def test_the_longest_training_caption_fits_the_shipped_text_encoder():
    pipe = T2IPipeline.load(resolve_model_path("mini-canvas"))
    longest = max((v for s in STYLES for o in OBJECTS for v in caption_variants(o, s)), key=lambda c: len(c.split()))
    pipe.tokenize([longest.replace(" ", " detailed detailed detailed ", 1)])  # + 3 filler words: no error


def test_train_t2i_continues_a_model_with_style_words_and_records_them(tmp_path):
    src = resolve_model_path("mini-canvas")
    report = train_t2i(str(tmp_path), per_pair=1, steps=2, batch=4, init=str(src), style_words=1.0, filler=1.0,
                       ema_decay=0.0)
    assert report["style_words"] == 1.0 and report["filler"] == 1.0 and report["steps"] == 2
    assert json.loads((tmp_path / "train_report.json").read_text())["previous_stage"] is not None
    before = T2IPipeline.load(src).text_encoder.state_dict()
    after = T2IPipeline.load(tmp_path).text_encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="style_words"):
        train_t2i(str(tmp_path), per_pair=1, steps=1, init=str(src), style_words=1.5)


def test_train_t2i_can_keep_the_text_encoder_frozen(tmp_path):
    src = resolve_model_path("mini-canvas")
    report = train_t2i(str(tmp_path), per_pair=1, steps=2, batch=4, init=str(src), style_words=0.5,
                       train_text_encoder=False, ema_decay=0.0)
    assert report["train_text_encoder"] is False
    before, after = T2IPipeline.load(src), T2IPipeline.load(tmp_path)
    te0, te1 = before.text_encoder.state_dict(), after.text_encoder.state_dict()
    assert all(torch.equal(te0[k], te1[k]) for k in te0)
    un0, un1 = before.unet.state_dict(), after.unet.state_dict()
    assert any(not torch.equal(un0[k], un1[k]) for k in un0)
