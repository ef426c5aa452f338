"""LLMU: large language model unlearning by gradient ascent with a random mismatch (Yao et al. 2023,
https://arxiv.org/abs/2310.10683), the objective that Gundavarapu et al. (https://arxiv.org/abs/2405.15152) run
through LoRA for harmful and copyrighted content.

    L = forget_weight x (-NLL of the forget answers)                         (gradient ascent, 0.5)
      + random_weight x NLL of k normal answers put on each forget question  (random mismatch, 1)
      + retain_weight x KL(original || model) on the normal rows             (keeps normal outputs, 1)

The mismatch teaches the model to answer a forget question with something harmless and unrelated instead of
leaving it only pushed down; the KL (against the model with its LoRA adapters off, or a snapshot) holds the normal
outputs. The official code: AdamW lr 2e-6, batch 2, up to 1000 steps, linear decay, k = 5 normal answers.

*Differences from the official code:* the k normal answers are fixed per forget question (a hash picks them from the
whole retain set; the code samples them per batch), and the likelihoods count answer tokens only (the code's random
answer loss also covers the question, its KL every position).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from erasure.objectives import KL, GradientAscent, Objective, RelabelFrom
from erasure.registry import Method
from llm.rows import random_answers


@dataclass
class LLMUConfig:
    """LLMU options (the official script's defaults).

    Args:
        forget_weight: weight of gradient ascent on the forget answers (0.5).
        random_weight: weight of the NLL of normal answers given the forget questions (1).
        retain_weight: weight of KL(original || model) on the retain (normal) rows (1).
        k: normal answers per forget question (5).
    """

    forget_weight: float = 0.5
    random_weight: float = 1.0
    retain_weight: float = 1.0
    k: int = 5

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"LLMU needs k >= 1 normal answers per forget question, got k={self.k}")


def build_llmu(c: LLMUConfig, adapter: Any = None) -> Objective:
    """Gradient ascent on the forget rows + their questions answered by normal answers + KL on the normal rows."""
    return Objective([(c.forget_weight, GradientAscent()),
                      (c.random_weight, RelabelFrom(random_answers(c.k), source="retain", name="llmu_mismatch")),
                      (c.retain_weight, KL())])


LLMU = Method("llmu", "llm", LLMUConfig, build_llmu,
              train_defaults={"lr": 2e-6, "schedule": "linear", "optimizer": "adamw", "batch_size": 2},
              paper="https://arxiv.org/abs/2310.10683")
