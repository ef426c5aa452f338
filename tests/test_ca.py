"""Concept Ablation (model-based): the concept prompt's prediction moves onto the anchor prompt's."""

from __future__ import annotations

import pytest
import torch

from erasure import erase


def _gap(pipe, prompts, anchors, seed=0):
    """Mean squared distance between the predictions for the concept prompts and their anchors on fixed x_t."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((len(prompts), *pipe.latent_shape), generator=g)
    with torch.no_grad():
        xt, t, _ = pipe.noise(x0, g)
        return (pipe.predict_noise(xt, t, pipe.encode_prompts(prompts)) -
                pipe.predict_noise(xt, t, pipe.encode_prompts(anchors))).pow(2).mean().item()


def test_ca_regresses_the_concept_onto_its_anchor(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter
    from diffusion.uce import prompt_pairs

    prompts = tiny_pipe.concepts.prompts_with("Neon")
    anchors = [a for _, a in prompt_pairs(prompts, "Neon", "Sketch")]
    before_weights = {n: p.detach().clone() for n, p in tiny_pipe.unet.named_parameters()}
    gap_before = _gap(tiny_pipe, prompts, anchors)
    result = erase(DiffusionAdapter(tiny_pipe), "Neon", method="ca", anchor="Sketch", steps=30, lr=1e-3,
                   ddim_steps=3, train={"show_progress": False})
    assert result.method_config["concept"] == "Neon" and result.method_config["anchor"] == "Sketch"
    assert _gap(tiny_pipe, prompts, anchors) < 0.6 * gap_before  # measured 0.44x
    changed = {n for n, p in tiny_pipe.unet.named_parameters() if not torch.equal(p, before_weights[n])}
    assert changed == {n for n in before_weights if ".attn2.to_k." in n or ".attn2.to_v." in n}


def test_ca_needs_the_concept_in_its_prompts(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    with pytest.raises(ValueError, match="give the concept"):
        erase(DiffusionAdapter(tiny_pipe), method="ca", forget=["A Circle image in Neon style."], steps=1)
    with pytest.raises(ValueError, match="does not contain 'Neon'"):
        erase(DiffusionAdapter(tiny_pipe), "Neon", method="ca", forget=["A Circle image in Sketch style."], steps=1,
              ddim_steps=2, train={"show_progress": False})
