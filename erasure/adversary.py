"""The Adversary protocol: one object is both the inner maximisation of adversarial unlearning and the
attack of an audit.

An adversary rewrites a batch (prompt embeddings, prefix tokens, fine-tuning data...) so that the model
shows the forgotten concept again. During adversarial training (AdvUnlearn) the loop calls it on every
forget batch after warm-up and trains on what it returns; during an audit ``evals.robustness`` calls it on
each target and asks a judge whether the concept came back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class AttackResult:
    """What an attack produced.

    Args:
        batch: the adversarial batch (same type the adapter's ``collate`` makes), ready to score or sample.
        success: per example, whether the judge saw the concept (None when no judge was asked).
        trace: the attack objective after each iteration (lower = stronger attack).
        info: anything else worth reporting (adversarial prompt text, steps taken, seconds).
    """

    batch: Any
    success: list[bool] | None = None
    trace: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Adversary(Protocol):
    """``attack(adapter, batch, generator, reference=..., judge=...) -> AttackResult``.

    ``reference`` is the frozen original (``erasure.reference``), for attacks whose objective needs it;
    ``judge`` maps generated outputs to "concept present?" for early stopping and success. An attack must
    not change the model's weights.
    """

    name: str

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Any = None) -> AttackResult: ...
