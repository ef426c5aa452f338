"""Tiny seeded components built in code (diffusers-style dummies): nothing is downloaded."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ERASURE_NO_PROGRESS", "1")
os.environ.setdefault("ERASURE_BANK_DIR", tempfile.mkdtemp(prefix="erasure-test-banks-"))  # not the user's cache
os.environ.setdefault("ERASURE_EVAL_CACHE", tempfile.mkdtemp(prefix="erasure-test-evals-"))

STYLES = ["Neon", "Sketch", "Mosaic"]
OBJECTS = ["Circle", "Square", "Star"]


@pytest.fixture(autouse=True)
def _reset_accelerate_state():
    """accelerate keeps global state; give every test a fresh one."""
    yield
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState._reset_state()


def make_tiny_pipeline(seed: int = 0, sample_size: int = 8):
    from diffusion.concepts import ConceptSet
    from diffusion.pipeline import T2IPipeline
    from diffusion.tiny import build_scheduler, build_text_encoder, build_tokenizer, build_unet

    words = "a image in style".split() + [w.lower() for w in STYLES + OBJECTS]
    tok = build_tokenizer(words, model_max_length=12)
    te = build_text_encoder(tok, hidden_size=16, layers=1, seed=seed)
    unet = build_unet(sample_size=sample_size, cross_attention_dim=16, block_out_channels=(8, 8, 16), seed=seed)
    return T2IPipeline(unet=unet, text_encoder=te, tokenizer=tok, scheduler=build_scheduler(100),
                       concepts=ConceptSet(list(STYLES), list(OBJECTS)))


def make_tiny_latent_parts(seed: int = 0):
    """A tiny VAE and a 4-channel latent UNet (Stable Diffusion's layout in miniature), built from configs."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=16)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=8)
    return vae, unet


@pytest.fixture
def tiny_pipe():
    return make_tiny_pipeline()


def make_tiny_lm(seed: int = 0):
    """A 2-layer GPT-2 from a config plus a word-level tokenizer over a small vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ("question answer : who wrote the book ? it was alice bob carol in paris london rome . "
             "what is capital of france england italy").split()
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    t = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                       bos_token_id=1, eos_token_id=1, pad_token_id=0))
    return model, tok


QA = [
    {"question": "who wrote the book ?", "answer": "it was alice in paris ."},
    {"question": "what is the capital of france ?", "answer": "paris ."},
    {"question": "what is the capital of italy ?", "answer": "rome ."},
    {"question": "who wrote the book in london ?", "answer": "it was bob ."},
]


@pytest.fixture
def tiny_lm():
    return make_tiny_lm()


_TRAINED: dict = {}


def make_trained_tiny_lm():
    """The tiny LM after memorising ``QA`` (trained once per session, then copied), so unlearning has
    something to remove."""
    import copy

    from llm.adapter import CausalLMAdapter

    if "state" not in _TRAINED:
        model, tok = make_tiny_lm()
        adapter = CausalLMAdapter(model, tok)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        batch = adapter.collate(QA)
        model.train()
        for _ in range(60):
            nll, length = adapter.per_example_nll(batch)
            loss = (nll / length).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        _TRAINED["state"] = copy.deepcopy(model.state_dict())
    model, tok = make_tiny_lm()
    model.load_state_dict(_TRAINED["state"])
    return model, tok
