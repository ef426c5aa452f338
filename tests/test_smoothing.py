"""The smoothing defence: the mean of the UNet over perturbed text embeddings, as hooks that leave the model alone."""

from __future__ import annotations

import json

import pytest
import torch

from diffusion.smoothing import Smoothing, apply_smoothing, perturbations, smoothed, suspended


def test_smoothed_prediction_is_the_mean_over_perturbed_embeddings(tiny_pipe):
    pipe = tiny_pipe
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, *pipe.latent_shape, generator=g)
    t = torch.tensor([5, 50, 90])
    cond = pipe.encode_prompts(["a circle image in neon style .", "a star image in sketch style .", ""]).detach()
    with torch.no_grad():
        plain = pipe.predict_noise(x, t, cond)
        with smoothed(pipe, sigma=0.5, n=4, seed=7):
            smooth = pipe.predict_noise(x, t, cond)
            again = pipe.unet(x, t, encoder_hidden_states=cond, return_dict=False)[0]  # tuple output, same draws
            alone = pipe.predict_noise(x[1:2], t[1:2], cond[1:2])  # a row's noise does not depend on its batch
            scalar = pipe.unet(x[:2], 50, cond[:2]).sample  # an int timestep, positional arguments
            with suspended(pipe.unet):
                assert torch.equal(pipe.predict_noise(x, t, cond), plain)
        deltas = perturbations(Smoothing(0.5, 4, 7), t, 3, tuple(cond.shape[1:]))  # (4, 3, L, D)
        hand = torch.stack([pipe.predict_noise(x, t, cond + 0.5 * d) for d in deltas]).mean(0)
        assert torch.allclose(smooth, hand, atol=1e-5)
        assert not torch.allclose(smooth, plain, atol=1e-4)
        assert torch.allclose(again, smooth, atol=1e-6) and torch.allclose(alone, smooth[1:2], atol=1e-5)
        fifty = perturbations(Smoothing(0.5, 4, 7), 50, 2, tuple(cond.shape[1:]))
        by_hand = torch.stack([pipe.predict_noise(x[:2], 50, cond[:2] + 0.5 * d) for d in fifty]).mean(0)
        assert torch.allclose(scalar, by_hand, atol=1e-5)
        assert torch.equal(pipe.predict_noise(x, t, cond), plain)  # the hooks are gone after the block
        handle = apply_smoothing(pipe, Smoothing(sigma=1e-7, n=3))
        assert torch.allclose(pipe.predict_noise(x, t, cond), plain, atol=1e-5)
        handle.remove()
        assert torch.equal(pipe.predict_noise(x, t, cond), plain)


def test_smoothing_settings_are_checked():
    with pytest.raises(ValueError, match="sigma > 0 and n >= 1"):
        Smoothing(sigma=0.0)
    with pytest.raises(ValueError, match="sigma > 0 and n >= 1"):
        Smoothing(sigma=0.1, n=0)


def test_audit_behind_the_defence_records_it(tmp_path):
    from erasure.cli import main

    out = tmp_path / "audit"
    assert main(["audit", "--model", "mini-canvas", "--concept", "Neon", "--attack", "random", "--n", "1",
                 "--no-utility", "--smooth", "0.2", "--smooth-n", "2", "--option", "tries=1",
                 "--option", "sample_steps=2", "--out", str(out)]) == 0
    record = json.loads((out / "audit.json").read_text())
    assert record["smoothing"] == {"sigma": 0.2, "n": 2, "seed": 0}
    assert json.loads((out / "robustness.json").read_text())["smoothing"]["n"] == 2
    assert main(["audit", "--model", "mini-canvas", "--concept", "Neon", "--smooth-n", "2",
                 "--out", str(tmp_path / "b")]) == 2
