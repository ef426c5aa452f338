"""ESD on the shipped mini-canvas model: the erased concept's denoising error rises, others' much less."""

from __future__ import annotations

import pytest
import torch

from canvas_data.dataset import to_tensor
from canvas_data.mini_canvas import OBJECTS, make_prompt, render
from diffusion.pipeline import T2IPipeline
from erasure import erase
from erasure.models import resolve_model_path


def denoising_error(pipe: T2IPipeline, style: str, n_per_object: int = 2, seed: int = 0) -> float:
    """Mean noise-prediction MSE on real mini-canvas images of ``style`` (fixed noise and timesteps)."""
    images = to_tensor([render(style, o, 50_000 + i) for o in OBJECTS for i in range(n_per_object)])
    prompts = [make_prompt(o, style) for o in OBJECTS for _ in range(n_per_object)]
    g = torch.Generator().manual_seed(seed)
    x0 = pipe.encode_images(images)
    t = torch.randint(50, 700, (len(prompts),), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    a = pipe.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        eps = pipe.predict_noise(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, pipe.encode_prompts(prompts))
    return float((eps - noise).pow(2).mean())


def test_esd_x_raises_the_erased_styles_denoising_error():
    pipe = T2IPipeline.load(resolve_model_path("mini-canvas"))
    before = {s: denoising_error(pipe, s) for s in ("Neon", "Sketch")}
    erase(pipe, concept="Neon", method="esd-x", steps=30, lr=1e-3, ddim_steps=10, seed=0,
          train={"show_progress": False})
    after = {s: denoising_error(pipe, s) for s in ("Neon", "Sketch")}
    rise = {s: after[s] - before[s] for s in before}
    assert rise["Neon"] > 0.01, f"erased style's error did not rise: {before} -> {after}"
    assert rise["Neon"] > 3 * max(rise["Sketch"], 0.0), f"other style hurt as much: {before} -> {after}"


@pytest.mark.parametrize("method", ["esd-u", "esd-all", "esd-x-strict"])
def test_esd_variants_train_their_own_parameter_sets(method, tiny_pipe):
    before = {n: p.clone() for n, p in tiny_pipe.unet.named_parameters()}
    te_before = {n: p.clone() for n, p in tiny_pipe.text_encoder.named_parameters()}
    erase(tiny_pipe, concept="Neon", method=method, steps=2, lr=1e-2, ddim_steps=3, train={"show_progress": False})
    changed = {n for n, p in tiny_pipe.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed
    if method == "esd-u":
        assert not any(".attn2." in n for n in changed)
    if method == "esd-x-strict":
        assert all(".attn2.to_k." in n or ".attn2.to_v." in n for n in changed)
    assert all(torch.equal(p, te_before[n]) for n, p in tiny_pipe.text_encoder.named_parameters())


def test_per_image_seeds_give_the_same_noise_alone_or_in_a_batch(tiny_pipe):
    prompts = ["a photo of a dog", "a photo of a cat"]
    batch = tiny_pipe.sample(prompts, num_steps=2, seeds=[7, 3])
    alone = tiny_pipe.sample(prompts[1:], num_steps=2, seed=3)
    torch.testing.assert_close(batch[1], alone[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batch[0], tiny_pipe.sample(prompts[:1], num_steps=2, seed=3)[0])
    with pytest.raises(ValueError, match="1 seeds for 2 images"):
        tiny_pipe.sample(prompts, num_steps=2, seeds=[1])
