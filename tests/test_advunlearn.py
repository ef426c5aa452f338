"""AdvUnlearn on the shipped mini-canvas model: the erased text encoder is plug-and-play."""

from __future__ import annotations

import torch
from transformers import CLIPTextModel

from diffusion.pipeline import T2IPipeline
from erasure import erase
from erasure.models import resolve_model_path
from tests.test_esd import denoising_error


def _variant_unet(pipe: T2IPipeline, steps: int = 10):
    """A sibling model of the same family: the UNet fine-tuned a little more on mini-canvas (like SD 1.4 -> 1.5)."""
    from canvas_data.dataset import to_tensor
    from canvas_data.mini_canvas import OBJECTS, STYLES, make_prompt, render

    variant = T2IPipeline.load(resolve_model_path("mini-canvas"))
    opt = torch.optim.AdamW(variant.unet.parameters(), lr=2e-4)
    g = torch.Generator().manual_seed(5)
    pairs = [(s, o) for s in STYLES for o in OBJECTS]
    for step in range(steps):
        pick = [pairs[i] for i in torch.randint(0, len(pairs), (16,), generator=g)]
        x0 = variant.encode_images(to_tensor([render(s, o, 70_000 + step) for s, o in pick]))
        t = torch.randint(0, 1000, (16,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = variant.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        with torch.no_grad():
            cond = variant.encode_prompts([make_prompt(o, s) for s, o in pick])
        loss = (variant.predict_noise(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, cond) - noise).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    variant.unet.requires_grad_(False)
    return variant


def test_advunlearn_text_encoder_survives_a_swap_into_a_sibling_pipeline(tmp_path):
    pipe = T2IPipeline.load(resolve_model_path("mini-canvas"))
    result = erase(pipe, concept="Neon", method="advunlearn", steps=30, lr=1e-3, ddim_steps=10, attack_steps=3,
                   seed=0, train={"show_progress": False, "adversary_warmup": 10})
    result.save(tmp_path)
    variant = _variant_unet(pipe)
    before = {s: denoising_error(variant, s) for s in ("Neon", "Sketch")}
    variant.text_encoder = CLIPTextModel.from_pretrained(tmp_path / "text_encoder")  # plug-and-play swap
    after = {s: denoising_error(variant, s) for s in ("Neon", "Sketch")}
    rise = {s: after[s] - before[s] for s in before}
    assert rise["Neon"] > 0.01, (before, after)
    assert rise["Neon"] > 3 * max(rise["Sketch"], 0.0), (before, after)
