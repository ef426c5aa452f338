"""SKU: selective knowledge negation unlearning (Liu et al. 2024, https://arxiv.org/abs/2402.10058).

Two stages, as the official code runs them:

1. Harmful knowledge acquisition: a LoRA copy of the model *learns* the forget (harmful) rows with
   ``gd_weight`` (0.5) x the answers' NLL (guided distortion) + ``rd_weight`` (1) x the NLL of ``k`` (5) other forget
   rows' answers to each forget question (random disassociation) - ``pd_weight`` (1) x KL(original || model) on the
   retain (normal) rows (preservation divergence: the acquired knowledge should not hold normal knowledge, so the
   KL is maximised). The reference is the model with the LoRA adapters off (the original).
2. Knowledge negation: the acquired task vector is subtracted, theta = theta_0 - scale * (theta_1 - theta_0): with
   LoRA, the adapters' B matrices are multiplied by -scale before they are merged (the LoRA delta is linear in B),
   so the saved peft adapter is the negation itself.

*Differences from the official code:* the k random answers come from the whole forget set but are fixed per
question (a hash picks them; the code samples 5 per batch, shared by the batch's questions), so a resumed run
repeats; the random-answer NLL and the KL count answer tokens only (the code's random-answer loss also covers the
question, and its KL averages over every position, padding included); LoRA wraps every linear layer of the blocks
(the code: q_proj and v_proj of Llama, rank 32, alpha 16), with ``lora_targets`` to narrow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from erasure.objectives import KL, NLL, Objective, RelabelFrom
from erasure.registry import Method
from erasure.selectors import LoraSpec, Selector
from llm.rows import random_answers


@dataclass
class SKUConfig:
    """SKU options (the official script's defaults).

    Args:
        gd_weight: guided distortion (NLL of the harmful answers), e1 = 0.5.
        rd_weight: random disassociation (NLL of other harmful answers), e2 = 1.
        pd_weight: preservation divergence (KL on normal rows, maximised), e3 = 1; a negative weight minimises it
            instead (the acquisition then keeps the normal rows' outputs, an ablation, not the paper's).
        k: random answers per forget question (5).
        scale: how much of the acquired task vector is subtracted (1).
        lora_rank, lora_alpha: the acquisition copy's LoRA (32, 16).
        lora_targets: module-name suffixes LoRA wraps (None: every linear layer of the blocks).
    """

    gd_weight: float = 0.5
    rd_weight: float = 1.0
    pd_weight: float = 1.0
    k: int = 5
    scale: float = 1.0
    lora_rank: int = 32
    lora_alpha: float = 16.0
    lora_targets: list[str] | None = None

    def __post_init__(self) -> None:
        if self.k < 1 or self.scale <= 0:
            raise ValueError(f"SKU needs k >= 1 and scale > 0, got k={self.k}, scale={self.scale}")


def build_sku(c: SKUConfig, adapter: Any = None) -> Objective:
    """Stage 1: learn the forget rows (GD + RD) while moving away from the original on retain (PD)."""
    return Objective([(c.gd_weight, NLL(split="forget", name="sku_gd")),
                      (c.rd_weight, RelabelFrom(random_answers(c.k), source="forget", name="sku_rd")),
                      (-c.pd_weight, KL(name="sku_pd"))])


def sku_selector(adapter: Any, c: SKUConfig) -> Selector:
    """Every weight, through LoRA (the acquisition copy; its reference is the model with the adapters off)."""
    return Selector(lora=LoraSpec(rank=c.lora_rank, alpha=c.lora_alpha, target_modules=c.lora_targets))


def negate(adapter: Any, c: SKUConfig, start: dict[str, torch.Tensor]) -> dict:
    """Stage 2: theta_0 - scale * (theta_1 - theta_0) on what trained: LoRA's B matrices times -scale (before they
    are merged), or the trained tensors against their values in ``start``."""
    from erasure.adapter import named_parameters

    live = named_parameters(adapter.modules())
    with torch.no_grad():
        if not start:  # LoRA: delta = (alpha / r) * B @ A, linear in B
            b_matrices = [p for n, p in live.items() if ".lora_B." in n]
            if not b_matrices:
                raise ValueError("SKU's negation found no LoRA adapter to negate")
            for p in b_matrices:
                p.mul_(-c.scale)
            return {"negated": "lora", "tensors": len(b_matrices), "scale": c.scale}
        for n, theta0 in start.items():
            p = live[n]
            p.copy_(theta0 - c.scale * (p - theta0))
    return {"negated": "weights", "tensors": len(start), "scale": c.scale}


SKU = Method("sku", "llm", SKUConfig, build_sku, selector=sku_selector, after=negate,
             train_defaults={"lr": 2e-5, "schedule": "linear", "optimizer": "adamw", "batch_size": 2},
             paper="https://arxiv.org/abs/2402.10058")


def rescale(result: Any, scale: float) -> dict:
    """Move an SKU result (trained through LoRA) to another negation scale in place, from the same acquisition:
    theta_0 - scale' * delta instead of theta_0 - scale * delta, without training again. The merged weights get
    ((scale' - scale) / scale) * (alpha / r) * B @ A added for every adapted layer (B as negated by ``negate``), and
    the result's adapter, options and ``second_stage`` info are updated, so it saves as if trained at ``scale``.

    Args:
        result: what ``erase(..., method="sku")`` returned.
        scale: the new scale (> 0).

    Returns:
        The result's ``second_stage`` info after the change.
    """
    from erasure.adapter import named_parameters

    if result.method != "sku" or not result.lora:
        raise ValueError("rescale needs an SKU result trained through LoRA (its adapters are what it rescales)")
    if scale <= 0:
        raise ValueError(f"SKU's scale must be > 0, got {scale}")
    old = float(result.method_config["scale"])
    live = named_parameters(result.adapter.modules())
    with torch.no_grad():
        for comp, (state, config) in result.lora.items():
            if config.rank_pattern or config.alpha_pattern:
                raise ValueError("rescale handles one LoRA rank and alpha for every layer (no rank or alpha pattern)")
            scaling = config.lora_alpha / (config.r ** 0.5 if config.use_rslora else config.r)
            for key in [k for k in state if ".lora_A." in k]:
                a, b = state[key], state[key.replace(".lora_A.", ".lora_B.")]
                name = f"{comp}.{key.removeprefix('base_model.model.').replace('.lora_A.weight', '.weight')}"
                if name not in live:
                    raise ValueError(f"rescale: no weight {name!r} for the adapter entry {key!r}")
                w = live[name]
                delta = b.to(w.dtype) @ a.to(w.dtype)  # (out, in); Conv1D layers (fan_in_fan_out) store (in, out)
                w.add_(((scale - old) / old * scaling) * (delta.T if config.fan_in_fan_out else delta))
            for key in [k for k in state if ".lora_B." in k]:
                state[key] = state[key] * (scale / old)
    result.method_config["scale"] = scale
    result.info.setdefault("second_stage", {})["scale"] = scale
    return result.info["second_stage"]
