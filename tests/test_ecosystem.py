"""Round-trips with the libraries users come from: diffusers pipeline folders, peft adapters, datasets types."""

from __future__ import annotations

import json

import pytest
import torch

from erasure import erase

QUIET = {"show_progress": False}


def _sd_layout(tmp_path):
    """A tiny diffusers ``StableDiffusionPipeline`` (VAE, PNDM scheduler, feature extractor, no safety checker and
    ``requires_safety_checker=False``) saved with diffusers' own ``save_pretrained``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor

    from tests.conftest import make_tiny_pipeline

    pixel = make_tiny_pipeline(seed=0)
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=16)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=8)
    scheduler = PNDMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", skip_prk_steps=True)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=pixel.text_encoder, tokenizer=pixel.tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=CLIPImageProcessor(crop_size=16, size=16),
                                   requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "sd", safe_serialization=True)
    return pipe, tmp_path / "sd"


def _configs(folder):
    """Every config file of a pipeline folder (model_index.json without the diffusers version)."""
    out = {}
    for f in sorted(folder.rglob("*.json")):
        if f.name in ("erasure.json",):
            continue
        data = json.loads(f.read_text())
        for bookkeeping in ("_diffusers_version", "_name_or_path", "transformers_version", "is_local",
                            "local_files_only"):  # what the libraries themselves add when they re-save a loaded one
            data.pop(bookkeeping, None)
        out[str(f.relative_to(folder))] = data
    return out


def test_a_diffusers_folder_round_trips_through_the_cli_and_the_api_alike(tmp_path):
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    from erasure.cli import main

    pipe, folder = _sd_layout(tmp_path)
    args = ["erase", "--model", str(folder), "--concept", "neon", "--method", "esd-x", "--steps", "1",
            "--option", "ddim_steps=2", "--out", str(tmp_path / "cli")]
    assert main(args) == 0
    loaded = StableDiffusionPipeline.from_pretrained(tmp_path / "cli", use_safetensors=True)
    assert isinstance(loaded.scheduler, PNDMScheduler) and loaded.safety_checker is None
    assert loaded.config.requires_safety_checker is False
    before, after = _configs(folder), _configs(tmp_path / "cli")
    assert after == before  # every config kept: scheduler class and settings, feature extractor, model_index
    # only the trained weights moved (ESD-x: the UNet's cross-attention)
    changed = [n for n, p in loaded.unet.named_parameters() if not torch.equal(p, pipe.unet.get_parameter(n))]
    assert changed and all(".attn2." in n for n in changed)
    for n, p in loaded.text_encoder.named_parameters():
        assert torch.equal(p, pipe.text_encoder.get_parameter(n))

    # the Python API on a live diffusers pipeline, loaded as a user does, writes the same folder
    live = StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True)
    erase(live, concept="neon", method="esd-x", steps=1, ddim_steps=2, train=QUIET, out=tmp_path / "api")
    assert _configs(tmp_path / "api") == before
    again = StableDiffusionPipeline.from_pretrained(tmp_path / "api", use_safetensors=True)
    for n, p in again.unet.named_parameters():
        assert torch.equal(p, loaded.unet.get_parameter(n)), n


def test_training_noise_follows_the_scheduler_betas_whatever_its_class(tmp_path):
    from diffusers import DDPMScheduler

    from diffusion.pipeline import T2IPipeline

    _, folder = _sd_layout(tmp_path)
    pipe = T2IPipeline.load(folder)
    ddpm = DDPMScheduler.from_config(pipe.scheduler.config)
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"
    assert torch.equal(pipe.noise_scheduler.alphas_cumprod, ddpm.alphas_cumprod)
    x0 = torch.zeros(2, 4, 8, 8)
    xt, t, noise = pipe.noise(x0, torch.Generator().manual_seed(0))
    a = ddpm.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, (1 - a).sqrt() * noise)


def test_an_unknown_scheduler_class_is_a_clear_error(tmp_path):
    from diffusion.pipeline import T2IPipeline

    _, folder = _sd_layout(tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "NoSuchScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="NoSuchScheduler.*not a diffusers scheduler"):
        T2IPipeline.load(folder)
