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
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPImageProcessor

    from tests.conftest import make_tiny_latent_parts, make_tiny_pipeline

    pixel = make_tiny_pipeline(seed=0)
    vae, unet = make_tiny_latent_parts(seed=0)
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


# ---------------------------------------------------------------------------------------------------------- data
def _npo_weights(forget, retain=None):
    from tests.conftest import QA, make_tiny_lm

    model, tok = make_tiny_lm()
    result = erase(model, tokenizer=tok, forget=forget, retain=QA[2:] if retain is None else retain, method="npo",
                   steps=3, lr=1e-2, batch_size=2, train=QUIET)
    return {n: p.detach().clone() for n, p in result.model.named_parameters()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_datasets_type_a_user_holds_trains_the_same_model(tmp_path):
    from datasets import Dataset, DatasetDict, IterableDataset

    from tests.conftest import QA

    rows = QA[:2]
    plain = _npo_weights(rows)
    ds = Dataset.from_list(rows)
    assert _same(plain, _npo_weights(ds))
    assert _same(plain, _npo_weights(DatasetDict({"train": ds})))
    assert _same(plain, _npo_weights(IterableDataset.from_generator(lambda: iter(rows))))
    DatasetDict({"forget": ds, "retain": Dataset.from_list(QA[2:])}).save_to_disk(str(tmp_path / "saved"))
    assert _same(plain, _npo_weights(str(tmp_path / "saved" / "forget"), retain=str(tmp_path / "saved" / "retain")))
    assert _same(plain, _npo_weights(tmp_path / "saved" / "forget"))
    # load_dataset("json") gives a DatasetDict with one "train" split
    from datasets import load_dataset

    (tmp_path / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _same(plain, _npo_weights(load_dataset("json", data_files=str(tmp_path / "forget.jsonl"))))


def test_an_ambiguous_or_unknown_data_source_is_a_clear_error(tmp_path):
    from datasets import Dataset, DatasetDict

    from erasure.data import as_rows
    from tests.conftest import QA

    two = DatasetDict({"forget10": Dataset.from_list(QA[:2]), "retain90": Dataset.from_list(QA[2:])})
    with pytest.raises(ValueError, match=r"forget is a dataset dict with splits \['forget10', 'retain90'\]"):
        _npo_weights(two)
    assert as_rows(two, split="retain90")[0] == QA[2]
    with pytest.raises(ValueError, match="no split 'forget01'"):
        as_rows(two, split="forget01")
    with pytest.raises(ValueError, match="retain: expected rows"):
        as_rows(42, "retain")


def test_load_tofu_reads_a_save_to_disk_folder(tmp_path):
    from datasets import DatasetDict

    from llm.tofu_data import build_mini_tofu, load_tofu

    mini = build_mini_tofu(num_authors=10, qa_per_author=4, seed=0)
    DatasetDict({k: mini[k] for k in ("forget10", "retain90")}).save_to_disk(str(tmp_path / "tofu"))
    assert load_tofu(tmp_path / "tofu", "forget10", perturbed=True).to_list() == mini["forget10"].to_list()
    assert load_tofu(tmp_path / "tofu", "retain90").to_list() == mini["retain90"].to_list()


def test_a_users_own_model_is_scored_on_mini_tofu_only_against_a_matching_reference(tmp_path):
    from erasure.cli import main
    from erasure.models import named_model_of
    from llm.tofu_benchmark import MINI_TOFU
    from tests.conftest import make_tiny_lm

    model, tok = make_tiny_lm()
    model.save_pretrained(tmp_path / "mine")
    tok.save_pretrained(tmp_path / "mine")
    from llm.modality import LLM

    with pytest.raises(ValueError, match="give --retain-model"):
        MINI_TOFU.reference_for(LLM.load(str(tmp_path / "mine")), str(tmp_path / "mine"), "forget10")
    assert main(["eval", "--model", str(tmp_path / "mine"), "--forget", "forget10", "--out",
                 str(tmp_path / "ev")]) == 2
    assert not (tmp_path / "ev").exists()
    # an erasure of a named model (and an erasure of that) is scored against the named model's retain model
    assert main(["erase", "--model", "mini-tofu", "--forget", "forget10", "--method", "ga", "--steps", "1",
                 "--out", str(tmp_path / "ga")]) == 0
    assert named_model_of(tmp_path / "ga") == "mini-tofu"
    again = LLM.load(str(tmp_path / "ga"))
    assert MINI_TOFU.reference_for(again, str(tmp_path / "ga"), "forget10") == "mini-tofu-retain90"
    retain = LLM.load("mini-tofu-retain90")  # the retain model is its own reference
    assert MINI_TOFU.reference_for(retain, "mini-tofu-retain90", "forget10") == "mini-tofu-retain90"


# ---------------------------------------------------------------------------------------------------------- LoRA
def test_an_llm_lora_erasure_saves_a_peft_adapter_that_reproduces_the_model(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tests.conftest import QA, make_tiny_lm

    model, tok = make_tiny_lm()
    result = erase(model, tokenizer=tok, forget=QA[:2], retain=QA[2:], method="graddiff", steps=3, lr=5e-2,
                   batch_size=2, lora={"rank": 2, "alpha": 4}, train=QUIET, out=tmp_path / "out")
    assert not hasattr(result.model, "peft_config")  # merged and unloaded: a plain model again
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        trained = result.model(ids).logits
        base, _ = make_tiny_lm()
        assert not torch.allclose(base(ids).logits, trained, atol=1e-4)  # the adapter did something
        adapted = PeftModel.from_pretrained(base, tmp_path / "out" / "lora")
        torch.testing.assert_close(adapted(ids).logits, trained, atol=1e-5, rtol=1e-5)
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out")  # the folder itself: the merged model
        torch.testing.assert_close(merged(ids).logits, trained, atol=1e-5, rtol=1e-5)


def test_a_diffusion_lora_erasure_saves_weights_load_lora_weights_reads(tmp_path):
    from diffusers import StableDiffusionPipeline

    _, folder = _sd_layout(tmp_path)
    live = StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True)
    result = erase(live, concept="neon", method="esd-x", steps=2, lr=1e-2, ddim_steps=2, lora={"rank": 2, "alpha": 2},
                   train=QUIET, out=tmp_path / "out")
    assert not hasattr(result.model.unet, "peft_config")
    original = StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True)
    x, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([10])
    cond = torch.randn(1, 12, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        trained = result.model.unet(x, t, encoder_hidden_states=cond).sample
        assert not torch.allclose(original.unet(x, t, encoder_hidden_states=cond).sample, trained, atol=1e-5)
        original.load_lora_weights(tmp_path / "out" / "lora")
        torch.testing.assert_close(original.unet(x, t, encoder_hidden_states=cond).sample, trained, atol=1e-5,
                                   rtol=1e-4)


def test_a_users_peft_model_trains_only_its_adapter_and_saves_what_was_trained(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    from tests.conftest import QA, make_tiny_lm

    model, tok = make_tiny_lm()
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn", "c_fc"],
                                                  init_lora_weights=False))
    base_before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" not in n}
    result = erase(peft_model, tokenizer=tok, forget=QA[:2], retain=QA[2:], method="graddiff", steps=3, lr=5e-2,
                   batch_size=2, train=QUIET, out=tmp_path / "out")
    after = dict(result.model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in base_before.items())  # base weights byte-identical
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        trained = result.model(ids).logits
        base, _ = make_tiny_lm()
        reloaded = PeftModel.from_pretrained(base, tmp_path / "out")
        torch.testing.assert_close(reloaded(ids).logits, trained, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="already carries a peft adapter"):
        erase(result.model, tokenizer=tok, forget=QA[:2], method="ga", steps=1, lora={"rank": 2}, train=QUIET)


# ----------------------------------------------------------------------------------------------------------- CLI
def test_every_subcommand_has_a_description_examples_and_help_for_every_option():
    import argparse

    from erasure.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"concepts", "erase", "mask", "eval", "audit", "demo"}
    for name, command in sub.choices.items():
        text = command.format_help()
        assert command.description and "examples:\n  erasure " + name in text, name
        assert "ERASURE_NO_PROGRESS" in text and "ERASURE_CACHE" in text
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
    assert "(default: esd-x)" in sub.choices["erase"].format_help()


def test_verbosity_goes_anywhere_and_floats_are_rounded(tmp_path, capsys):
    import logging

    from erasure.cli import _log_level, build_parser, main

    parser = build_parser()
    assert _log_level(parser.parse_args(["-v", "concepts"])) == logging.INFO
    assert _log_level(parser.parse_args(["concepts", "-vv"])) == logging.DEBUG
    assert _log_level(parser.parse_args(["concepts", "-q"])) == logging.ERROR
    assert _log_level(parser.parse_args(["concepts"])) == logging.WARNING
    assert main(["erase", "--model", "mini-tofu", "--forget", "forget10", "--method", "ga", "--steps", "2", "-q",
                 "--mixed-precision", "bf16", "--out", str(tmp_path / "ga")]) == 0
    record = json.loads((tmp_path / "ga" / "erasure.json").read_text())
    assert record["train_config"]["mixed_precision"] == "bf16"
    losses = [h["loss"] for h in record["history"]]
    assert losses and all(v == float(f"{v:.6g}") for v in losses)  # six significant digits
    printed = json.loads(capsys.readouterr().out)
    assert printed["final_loss"] == float(f"{printed['final_loss']:.6g}")


def test_fp16_without_a_gpu_is_refused_before_anything_runs(tmp_path, monkeypatch):
    from erasure.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["erase", "--model", "mini-tofu", "--forget", "forget10", "--method", "ga", "--steps", "1",
                 "--mixed-precision", "fp16", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # accelerate launch --mixed_precision fp16
    assert main(["erase", "--model", "mini-tofu", "--forget", "forget10", "--method", "ga", "--steps", "1",
                 "--out", str(tmp_path / "y")]) == 2


def test_rounded_keeps_six_significant_digits():
    from erasure.files import rounded

    assert rounded({"a": [0.18000000715255737, 2, True], "b": 123456789.0, "c": 1.234567e-9, "d": "x"}) == \
        {"a": [0.18, 2, True], "b": 123457000.0, "c": 1.23457e-09, "d": "x"}
    assert rounded(float("nan")) != rounded(float("nan"))  # NaN stays NaN


# ------------------------------------------------------------------------------------------------------- reports
def test_plots_are_written_from_histories_tradeoffs_and_verdicts(tmp_path):
    from PIL import Image

    from erasure.plots import attack_heatmap, loss_curves, tradeoff_plot

    history = [{"step": i + 1, "loss": 1.0 / (i + 1), "forget/npo": 0.5 * i} for i in range(5)]
    paths = [loss_curves(history, tmp_path / "loss.png"),
             tradeoff_plot([("a", 0.9, 1e-5), ("b", 1.0, 0.4), ("c", 0.8, 0.0)], tmp_path / "t.png", "MU", "FQ",
                           log_y=True),
             attack_heatmap({"unlearndiff": [True, False, None], "random": [False, False]}, tmp_path / "h.png",
                            example_labels=["a neon image", "b", "c"])]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300
    with pytest.raises(ValueError, match="history is empty"):
        loss_curves([], tmp_path / "x.png")


def test_tradeoff_labels_of_close_points_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from erasure.plots import label_offsets

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    points = [("advunlearn", 1.0, 0.79), ("advunlearn-fast", 0.99, 0.797), ("esd-x", 0.5, 0.2)]
    ax.scatter([p[1] for p in points], [p[2] for p in points])
    spots = {name: (dx, dy, ha) for name, _, _, dx, dy, ha in label_offsets(ax, points)}
    plt.close(fig)
    assert spots["advunlearn-fast"] == spots["esd-x"] == (5.0, 4.0, "left")  # the upper and the lone point: above right
    assert spots["advunlearn"] != spots["advunlearn-fast"]  # the close one moves elsewhere


def test_a_saved_erasure_has_its_loss_curve(tmp_path):
    from tests.conftest import QA, make_tiny_lm

    model, tok = make_tiny_lm()
    erase(model, tokenizer=tok, forget=QA[:2], method="ga", steps=2, lr=1e-3, train=QUIET, out=tmp_path / "o")
    assert (tmp_path / "o" / "loss.png").stat().st_size > 0


def test_image_grid_writes_a_caption_under_each_image():
    from evals.report import image_grid

    tiles = [[torch.zeros(3, 8, 8), torch.ones(3, 8, 8)]]
    plain = image_grid(tiles)
    captioned = image_grid(tiles, captions=[["neon: back @3", "held"]])
    assert captioned.size[1] == plain.size[1] + 12 and captioned.size[0] > plain.size[0]
    strip = captioned.crop((0, 24, captioned.size[0], captioned.size[1])).convert("L")
    assert min(strip.getdata()) < 128  # text was drawn in the caption strip


def test_the_cli_parser_and_the_packages_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, erasure, diffusion, llm, erasure.cli; erasure.cli.build_parser(); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


def test_a_live_pipelines_safety_checker_is_saved_where_diffusers_finds_it(tmp_path):
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    from diffusion.pipeline import T2IPipeline

    _, folder = _sd_layout(tmp_path)
    live = StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True)
    tiny = {"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1}
    checker = StableDiffusionSafetyChecker(CLIPConfig(text_config=tiny, projection_dim=8,
                                                      vision_config={**tiny, "image_size": 16, "patch_size": 8}))
    live.register_modules(safety_checker=checker)
    T2IPipeline.from_diffusers(live).save(tmp_path / "saved")
    again = StableDiffusionPipeline.from_pretrained(tmp_path / "saved", use_safetensors=True)
    assert isinstance(again.safety_checker, StableDiffusionSafetyChecker)
    assert json.loads((tmp_path / "saved" / "model_index.json").read_text())["safety_checker"] == \
        ["stable_diffusion", "StableDiffusionSafetyChecker"]


def test_checkpointing_without_a_folder_is_refused_up_front():
    from erasure.config import TrainConfig

    with pytest.raises(ValueError, match="need a checkpoint_dir"):
        TrainConfig(checkpoint_every=5)
