"""Tiny text-to-image components built from configs (no download): the embedded default's architecture.

The layout follows ../shared/ENVIRONMENT.md: pixel space, cross-attention only in the lower-resolution
blocks (attention at full resolution dominates CPU time), a 2-layer CLIP text encoder of width 64 and a
word-level tokenizer built from a vocabulary in code.
"""

from __future__ import annotations

from typing import Iterable

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")

# Words beyond the mini-canvas prompts, so that retain prompts ("a photo of a tree") and adversarial
# token searches have a real vocabulary to work with.
EXTRA_WORDS = (
    "a an the of in on with and or by at to for from painting photo picture drawing art artwork "
    "sketch render style image scene view portrait landscape picture abstract bright dark colorful "
    "red green blue yellow black white pink purple orange brown gray golden silver old new big small "
    "tree house dog cat bird car boat flower mountain river sea sky city street forest field castle "
    "person man woman child face hand horse fish bridge tower window door road garden lake sun moon "
    "night day light shadow line shape pattern texture paper canvas oil ink pencil digital modern "
    "classic famous beautiful simple detailed soft sharp"
).split()


def build_tokenizer(words: Iterable[str], model_max_length: int = 16) -> PreTrainedTokenizerFast:
    """Build a lower-casing word-level tokenizer (``[BOS] words [EOS]``) over ``words``.

    Args:
        words: the vocabulary (case-insensitive; duplicates are ignored).
        model_max_length: the longest token sequence the text encoder accepts, BOS/EOS included.

    Returns:
        A ``PreTrainedTokenizerFast`` that saves and loads with ``save_pretrained``/``from_pretrained``.
    """
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in list(words) + list(EXTRA_WORDS) + [".", ","]:
        w = w.lower()
        if w not in vocab:
            vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=model_max_length,
    )


def build_text_encoder(tokenizer: PreTrainedTokenizerFast, hidden_size: int = 64, layers: int = 2, seed: int = 0):
    """A small CLIP text encoder whose vocabulary and special ids come from ``tokenizer``."""
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=hidden_size,
    )
    return CLIPTextModel(config)


def build_unet(
    sample_size: int = 32,
    cross_attention_dim: int = 64,
    block_out_channels: tuple[int, ...] = (32, 32, 64),
    layers_per_block: int = 1,
    seed: int = 0,
) -> UNet2DConditionModel:
    """A pixel-space conditional UNet with cross-attention only below full resolution."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        layers_per_block=layers_per_block,
        block_out_channels=block_out_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=2,
        norm_num_groups=8,
    )


def build_scheduler(num_train_timesteps: int = 1000) -> DDPMScheduler:
    """Cosine-schedule DDPM scheduler (epsilon prediction); sampling converts it to DDIM."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon"
    )
