"""A learned soft prompt for a frozen causal LM: k input embeddings placed before every input, saved as the peft
prompt-tuning adapter that ``PeftModel.from_pretrained(base_model, folder)`` loads (Lester et al. 2021,
https://arxiv.org/abs/2104.08691; SPUL trains one to unlearn, https://arxiv.org/abs/2406.12038).

The adapter (``llm.adapter.CausalLMAdapter``) carries it as its ``prompt`` component: every forward, generation and
text likelihood then sees ``[prompt, tokens]``, exactly as peft's ``PeftModelForCausalLM`` with a
``PromptTuningConfig`` prepends its virtual tokens. The model's own weights never change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PROMPT_KEY = "prompt_embeddings"  # peft's key for a prompt-learning adapter's embeddings


ENCODERS = ("none", "mlp")


def check_encoder(encoder: str) -> None:
    """Raise a ValueError naming the choices unless ``encoder`` is one of ``ENCODERS``."""
    if encoder not in ENCODERS:
        raise ValueError(f"soft prompt encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")


class SoftPrompt(nn.Module):
    """k trainable input embeddings (k, D); ``enable_adapters(False)`` switches them off (the model computes as
    if there were no prompt: the frozen reference of the loop's ``PeftReference``).

    With ``encoder="mlp"`` the embeddings are reparameterised as P-tuning does (Liu et al. 2021,
    https://arxiv.org/abs/2103.10385; peft's ``PromptEncoder`` with its MLP head): the inputs see
    ``mlp(embeddings)``, Linear(D, D) -> ReLU -> Linear(D, D) -> ReLU -> Linear(D, D), and both train. What is saved
    is the encoded (k, D) prompt, as peft saves a P-tuning prompt, so the folder is a plain prompt adapter.

    Args:
        embeddings: (k, D) initial values.
        encoder: "none" (the embeddings are the prompt) or "mlp".
    """

    switchable_adapter = True  # erasure.reference: a module whose ``enable_adapters`` gives the original model

    def __init__(self, embeddings: torch.Tensor, encoder: str = "none"):
        super().__init__()
        if embeddings.dim() != 2 or embeddings.shape[0] < 1:
            raise ValueError(f"a soft prompt is a (k, D) tensor with k >= 1, got shape {tuple(embeddings.shape)}")
        check_encoder(encoder)
        self.embeddings = nn.Parameter(embeddings.detach().clone())
        d = embeddings.shape[1]
        self.encoder = (nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
                        .to(embeddings) if encoder == "mlp" else None)
        self.enabled = True

    @property
    def num_tokens(self) -> int:
        return int(self.embeddings.shape[0])

    def enable_adapters(self, enabled: bool) -> None:
        self.enabled = bool(enabled)

    def values(self) -> torch.Tensor:
        """(k, D): the prompt the inputs see (the embeddings, or their encoding)."""
        return self.embeddings if self.encoder is None else self.encoder(self.embeddings)

    def prefix(self) -> torch.Tensor | None:
        """(1, k, D), or None while switched off."""
        return self.values()[None] if self.enabled else None


def init_prompt(model: Any, num_tokens: int, seed: int = 0, encoder: str = "none") -> SoftPrompt:
    """A soft prompt of ``num_tokens`` embeddings of vocabulary tokens drawn with ``seed`` (the usual prompt-tuning
    start: the prompt lies where real tokens lie, unlike peft's N(0, 1) "RANDOM" start); an ``encoder``'s
    weights are drawn with the same seed."""
    if num_tokens < 1:
        raise ValueError(f"a soft prompt needs at least 1 token, got {num_tokens}")
    table = model.get_input_embeddings().weight.detach()  # (V, D)
    ids = torch.randint(0, table.shape[0], (num_tokens,), generator=torch.Generator().manual_seed(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SoftPrompt(table[ids].float().clone(), encoder).to(table.device)


def save_prompt(path: str | os.PathLike, prompt: SoftPrompt, model: Any, base: str | None,
                save_base: Any = None) -> None:
    """Write ``prompt`` as a peft prompt-tuning adapter folder (``adapter_config.json`` + safetensors) for
    ``model``; ``base`` is recorded as ``base_model_name_or_path`` (what ``load_prompt`` loads it onto). A model
    from no folder (``base`` None) is written by ``save_base(folder)`` into the adapter's ``base/`` subfolder,
    recorded as that relative path."""
    from peft import PromptTuningConfig
    from safetensors.torch import save_file

    from erasure.guard import record_base

    c = model.config
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=prompt.num_tokens,
                                token_dim=prompt.embeddings.shape[1], num_transformer_submodules=1,
                                num_attention_heads=c.num_attention_heads, num_layers=c.num_hidden_layers,
                                base_model_name_or_path=base, inference_mode=True)
    path = Path(path)
    config.base_model_name_or_path = record_base(path, base, save_base)
    config.save_pretrained(path)
    save_file({PROMPT_KEY: prompt.values().detach().cpu().contiguous()}, path / ADAPTER_WEIGHTS,
              metadata={"format": "pt"})


def is_prompt_adapter(path: Path) -> bool:
    """Whether ``path`` is a peft prompt-tuning adapter folder of a causal LM."""
    config = Path(path) / ADAPTER_CONFIG
    if not config.is_file():
        return False
    try:
        c = json.loads(config.read_text())
    except ValueError:
        return False
    return c.get("peft_type") == "PROMPT_TUNING" and c.get("task_type") == "CAUSAL_LM"


def load_prompt(path: str | os.PathLike) -> tuple[torch.Tensor, str]:
    """(the (k, D) embeddings, the base model's name or folder) of a prompt adapter folder (safetensors only).

    Raises:
        ValueError: naming the folder when it is not a prompt adapter, lacks its weights or names no base model.
    """
    from safetensors.torch import load_file

    from erasure.guard import resolve_base

    path = Path(path)
    if not is_prompt_adapter(path):
        raise ValueError(f"{path} is not a peft prompt-tuning adapter folder (adapter_config.json with peft_type "
                         "PROMPT_TUNING, task_type CAUSAL_LM)")
    config = json.loads((path / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path / ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    weights = path / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ValueError(f"{path} has no {ADAPTER_WEIGHTS} (prompt adapters load from safetensors only)")
    state = load_file(weights)
    if PROMPT_KEY not in state:
        raise ValueError(f"{weights} holds no {PROMPT_KEY!r} tensor")
    emb = state[PROMPT_KEY]
    if emb.shape[0] != config.get("num_virtual_tokens", emb.shape[0]):
        raise ValueError(f"{weights} holds {emb.shape[0]} prompt tokens, its config says "
                         f"{config['num_virtual_tokens']}")
    return emb, resolve_base(path, str(base))
