"""Forget-Me-Not: the concept's token positions, the recorded attention, and its fall under training."""

from __future__ import annotations

import pytest
import torch

from diffusion.fmn import concept_positions, recorded_cross_attention
from erasure import erase


def test_concept_positions_mark_the_concepts_tokens_and_the_first_eos(tiny_pipe):
    prompts = ["A Circle image in Neon style.", "A Neon image in Neon style."]
    ids = tiny_pipe.tokenize(prompts)[0].tolist()
    pos = concept_positions(tiny_pipe, prompts, "Neon")
    neon = tiny_pipe.tokenizer("Neon", add_special_tokens=False)["input_ids"][0]
    eos = ids.index(tiny_pipe.tokenizer.eos_token_id)
    assert pos[0].nonzero().flatten().tolist() == [ids.index(neon), eos]
    assert pos[1].sum() == 3  # both occurrences and the end-of-text token
    assert concept_positions(tiny_pipe, prompts, "Neon", use_pooler=False)[0].sum() == 1
    with pytest.raises(ValueError, match="does not contain"):
        concept_positions(tiny_pipe, ["A Circle image in Sketch style."], "Neon")


def _attention_on_concept(pipe, prompts):
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand((len(prompts), *pipe.latent_shape), generator=g)
    with torch.no_grad():
        xt, t, _ = pipe.noise(x0, g)
        with recorded_cross_attention(pipe.unet, concept_positions(pipe, prompts, "Neon")) as probs:
            out = pipe.predict_noise(xt, t, pipe.encode_prompts(prompts))
    return torch.cat(probs).norm().item(), out


def test_recording_leaves_the_prediction_and_processors_unchanged(tiny_pipe):
    prompts = tiny_pipe.concepts.prompts_with("Neon")
    processors = {n: type(p) for n, p in tiny_pipe.unet.attn_processors.items()}
    norm, recorded_out = _attention_on_concept(tiny_pipe, prompts)
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand((len(prompts), *tiny_pipe.latent_shape), generator=g)
    with torch.no_grad():
        xt, t, _ = tiny_pipe.noise(x0, g)
        plain = tiny_pipe.predict_noise(xt, t, tiny_pipe.encode_prompts(prompts))
    assert norm > 0 and torch.allclose(recorded_out, plain, atol=1e-5)
    assert {n: type(p) for n, p in tiny_pipe.unet.attn_processors.items()} == processors
    assert not any("get_attention_scores" in vars(m) for m in tiny_pipe.unet.modules())


def test_fmn_steers_attention_away_from_the_concept(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    prompts = tiny_pipe.concepts.prompts_with("Neon")
    before, _ = _attention_on_concept(tiny_pipe, prompts)
    text = {n: p.detach().clone() for n, p in tiny_pipe.text_encoder.named_parameters()}
    result = erase(DiffusionAdapter(tiny_pipe), "Neon", method="fmn", steps=20, lr=1e-2, ddim_steps=3,
                   train={"show_progress": False})
    after, _ = _attention_on_concept(tiny_pipe, prompts)
    assert after < 0.7 * before, (before, after)
    assert all(torch.equal(p, text[n]) for n, p in tiny_pipe.text_encoder.named_parameters())
    assert result.loop.history[-1]["loss"] < result.loop.history[0]["loss"]


def test_fmn_refuses_gradient_checkpointing_with_a_clear_error(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    processors = {n: type(p) for n, p in tiny_pipe.unet.attn_processors.items()}
    with pytest.raises(ValueError, match="without --gradient-checkpointing"):
        erase(DiffusionAdapter(tiny_pipe), "Neon", method="fmn", steps=1, ddim_steps=2,
              train={"show_progress": False, "gradient_checkpointing": True})
    assert {n: type(p) for n, p in tiny_pipe.unet.attn_processors.items()} == processors


def test_fmn_only_cross_attention_trains_attn2_only(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    unet = {n: p.detach().clone() for n, p in tiny_pipe.unet.named_parameters()}
    erase(DiffusionAdapter(tiny_pipe), "Neon", method="fmn", steps=3, lr=1e-2, ddim_steps=3,
          train={"show_progress": False}, only_cross_attention=True)
    changed = {n for n, p in tiny_pipe.unet.named_parameters() if not torch.equal(p, unet[n])}
    assert changed and all(".attn2." in n for n in changed), sorted(changed)[:3]


def _retain_attention(pipe, prompts):
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand((len(prompts), *pipe.latent_shape), generator=g)
    every = torch.ones(pipe.tokenize(prompts).shape, dtype=torch.bool)
    with torch.no_grad():
        xt, t, _ = pipe.noise(x0, g)
        with recorded_cross_attention(pipe.unet, every) as probs:
            pipe.predict_noise(xt, t, pipe.encode_prompts(prompts))
    return torch.cat(probs)


def test_fmn_attention_keep_holds_the_retain_prompts_attention():
    from diffusion.adapter import DiffusionAdapter
    from tests.conftest import make_tiny_pipeline

    moved = {}
    for weight in (0.0, 5.0):
        pipe = make_tiny_pipeline()
        retain = pipe.concepts.prompts_without("Neon")
        before = _retain_attention(pipe, retain)
        result = erase(DiffusionAdapter(pipe), "Neon", method="fmn", steps=15, lr=1e-2, ddim_steps=3,
                       train={"show_progress": False}, attention_weight=weight)
        moved[weight] = (_retain_attention(pipe, retain) - before).norm().item()
        if weight:
            logs = result.loop.history
            assert logs[0]["attention_keep"] == pytest.approx(0.0, abs=1e-6)  # nothing trained yet
            assert max(row["attention_keep"] for row in logs) > 0
    assert moved[5.0] < 0.7 * moved[0.0], moved
    with pytest.raises(ValueError, match="attention_weight must be >= 0"):
        erase(DiffusionAdapter(make_tiny_pipeline()), "Neon", method="fmn", steps=1, attention_weight=-1.0,
              train={"show_progress": False})
