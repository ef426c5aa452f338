"""UCE: Unified Concept Editing in Diffusion Models (Gandikota et al. 2024, https://arxiv.org/abs/2308.14761).

A closed-form edit of every cross-attention key and value projection W (no training loop): for erased text
embeddings c_e, their guide embeddings c*_e, and preserved embeddings c_p,

    W' = (lambda W + s_e sum_e (W c*_e) c_e^T + s_p sum_p (W c_p) c_p^T) (lambda I + s_e sum_e c_e c_e^T + s_p sum_p c_p c_p^T)^-1

(the paper's equation 7): keys and values of the erased concept become those of the guide, the preserved ones stay
(a projection's bias, where it has one, is not edited; it cancels from the matched outputs).

Which embeddings: the official ``uce_sd_erase.py`` takes, per concept phrase, the text-encoder output at the phrase's
last token. Here the concepts live inside whole prompts (``A Circle image in Neon style.``), so each forget prompt is
paired with itself with the concept replaced by the guide (``A Circle image in  style.``), and the positions from the
concept's last token to the end of the sequence (the rest of the prompt and the padding, which a causal text encoder
fills with the prompt's information) are paired tail-aligned, as the first official release (``train_erase.py``)
aligned them. Preserved: every position of every retain prompt (the model's other concepts).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from erasure.data import replace_concept
from erasure.registry import Method

logger = logging.getLogger(__name__)


@dataclass
class UCEConfig:
    """UCE options (defaults: the official ``uce_sd_erase.py``).

    Args:
        concept: the erased concept's words (filled with the erased concept by ``erase()``).
        guide: what the concept is mapped to: ``""`` (nothing, the default for objects) or an anchor word
            (``"art"`` is the official default for artists' styles).
        erase_scale: weight of the erased pairs (1).
        preserve_scale: weight of the preserved embeddings (1).
        lamb: lambda, the pull towards the current weights (0.5).
    """

    concept: str | None = None
    guide: str = ""
    erase_scale: float = 1.0
    preserve_scale: float = 1.0
    lamb: float = 0.5

    def __post_init__(self) -> None:
        for key in ("erase_scale", "preserve_scale", "lamb"):
            if getattr(self, key) < 0:
                raise ValueError(f"UCE's {key} must be >= 0, got {getattr(self, key)}")
        if self.lamb == 0 and self.preserve_scale == 0:
            raise ValueError("UCE needs lamb > 0 or preserve_scale > 0 (otherwise its system is singular)")


def prompt_pairs(prompts: Sequence[str], concept: str, guide: str) -> list[tuple[str, str]]:
    """(prompt, prompt with ``concept`` replaced by ``guide``, case-insensitively) for each prompt; ``ValueError``
    when one lacks it."""
    return list(zip(prompts, replace_concept(prompts, concept, guide, who="the method")))


def aligned_tails(ids: torch.Tensor, guide_ids: torch.Tensor, lengths: Sequence[int],
                  guide_lengths: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per pair, (positions in the prompt, positions in the guide prompt) from the concept's last token on.

    Args:
        ids, guide_ids: (B, L) padded token ids of the prompts and of their guide versions.
        lengths, guide_lengths: each sequence's real length (BOS and EOS included).

    Returns:
        B pairs of equally long index tensors: the prompt's tail after the common prefix and suffix' split,
        aligned position by position from the last concept token (or the last prefix token when the guide is
        empty) to the end of the padded sequence.
    """
    out = []
    width = ids.shape[1]
    for a, b, n, m in zip(ids.tolist(), guide_ids.tolist(), lengths, guide_lengths):
        suffix = 0  # tokens shared at the end of the real sequences (the rest of the prompt, EOS)
        while suffix < min(n, m) - 1 and a[n - 1 - suffix] == b[m - 1 - suffix]:
            suffix += 1
        start, guide_start = n - 1 - suffix, m - 1 - suffix  # the concept's last token / the guide's
        span = width - max(start, guide_start)
        out.append((torch.arange(start, start + span), torch.arange(guide_start, guide_start + span)))
    return out


def _embeddings(pipe: Any, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) erased embeddings and (N, D) their guides' over every aligned tail position of every pair."""
    prompts, guides = [p for p, _ in pairs], [g for _, g in pairs]
    ids, guide_ids = pipe.tokenize(prompts), pipe.tokenize(guides)
    tok = pipe.tokenizer
    lengths = [len(t) for t in tok(prompts)["input_ids"]]
    guide_lengths = [len(t) for t in tok(guides)["input_ids"]]
    h, hg = pipe.encode_ids(ids), pipe.encode_ids(guide_ids)  # (B, L, D)
    tails = aligned_tails(ids, guide_ids, lengths, guide_lengths)
    c = torch.cat([h[i, k] for i, (k, _) in enumerate(tails)])
    c_star = torch.cat([hg[i, k] for i, (_, k) in enumerate(tails)])
    return c, c_star


def edited_weight(w: torch.Tensor, c: torch.Tensor, c_star: torch.Tensor, c_keep: torch.Tensor,
                  cfg: UCEConfig) -> torch.Tensor:
    """The paper's equation 7 for one projection.

    Args:
        w: (O, D) the projection's weight.
        c: (N, D) erased embeddings; c_star: (N, D) their guides'.
        c_keep: (M, D) preserved embeddings.
        cfg: the scales and lambda.

    Returns:
        (O, D) the edited weight.
    """
    w64, c64, g64, p64 = (t.detach().cpu().double() for t in (w, c, c_star, c_keep))  # float64 on the CPU (MPS has none)
    eye = torch.eye(w.shape[1], dtype=torch.float64)
    lhs = cfg.lamb * w64 + cfg.erase_scale * (g64 @ w64.T).T @ c64 + cfg.preserve_scale * (p64 @ w64.T).T @ p64
    rhs = cfg.lamb * eye + cfg.erase_scale * c64.T @ c64 + cfg.preserve_scale * p64.T @ p64  # (D, D)
    try:
        solved = torch.linalg.solve(rhs, lhs.T).T  # lhs @ rhs^-1 (rhs symmetric)
    except torch.linalg.LinAlgError as e:
        raise ValueError(f"UCE's system is singular ({len(c)} erased and {len(c_keep)} preserved embeddings of width "
                         f"{w.shape[1]}): give lamb > 0 or more retain prompts") from e
    return solved.to(device=w.device, dtype=w.dtype)


def solve_uce(adapter: Any, cfg: UCEConfig, *, forget: Sequence[Any],
              retain: Sequence[Any] | None, selected: Any) -> dict:
    """Edit, in place, every linear layer ``selected`` picks (default: the UNet's cross-attention keys and values).

    Args:
        adapter: a ``DiffusionAdapter``.
        cfg: the options (``cfg.concept``: the erased concept's words, which each forget prompt must contain).
        forget: forget prompts or rows.
        retain: retain prompts or rows (preserved); None preserves nothing but lambda's pull.
        selected: a ``Selector`` over ``component.parameter`` names.

    Returns:
        {"edited_layers", "erased_positions", "preserved_positions", "erase_residual"}: the mean relative distance
        between the edited layers' outputs on the erased embeddings and on their guides.
    """
    from diffusion.adapter import prompt_of

    if not cfg.concept:
        raise ValueError("UCE edits a named concept inside the forget prompts: give the concept (--concept)")
    pipe = adapter.model
    pairs = prompt_pairs([prompt_of(r) for r in forget], cfg.concept, cfg.guide)
    keep_prompts = [prompt_of(r) for r in retain or []]
    layers = {f"{comp}.{name}": m for comp, mod in adapter.modules().items() for name, m in mod.named_modules()
              if isinstance(m, nn.Linear) and selected.matches(f"{comp}.{name}.weight")}
    if not layers:
        raise ValueError("UCE found no linear layer to edit under the selector (default: esd-x-strict, the "
                         "cross-attention keys and values)")
    with torch.no_grad():
        c, c_star = _embeddings(pipe, pairs)
        c_keep = pipe.encode_ids(pipe.tokenize(keep_prompts)).flatten(0, 1) if keep_prompts else c[:0]
        wrong = [n for n, layer in layers.items() if layer.in_features != c.shape[-1]]
        if wrong:  # checked before any layer is edited
            raise ValueError(f"UCE edits projections of the text embeddings (width {c.shape[-1]}); {wrong[0]} takes "
                             f"{layers[wrong[0]].in_features} inputs: choose the cross-attention keys/values "
                             "(esd-x-strict)")
        residual = []
        for name, layer in layers.items():
            dev = layer.weight.device
            erased, guides = c.to(dev), c_star.to(dev)
            target = guides @ layer.weight.T  # (N, O) the guides' keys / values before the edit
            layer.weight.copy_(edited_weight(layer.weight, erased, guides, c_keep.to(dev), cfg))
            residual.append(((erased @ layer.weight.T - target).norm() / target.norm().clamp_min(1e-12)).item())
    logger.info("UCE: %d layers, %d erased and %d preserved positions", len(layers), len(c), len(c_keep))
    return {"edited_layers": len(layers), "erased_positions": len(c), "preserved_positions": len(c_keep),
            "erase_residual": sum(residual) / len(residual)}


UCE = Method("uce", "diffusion", UCEConfig, build=None, selector="esd-x-strict", solve=solve_uce,
             paper="https://arxiv.org/abs/2308.14761")
