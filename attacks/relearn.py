"""Relearning attack on unlearned LLMs: fine-tune a copy of the model for a few steps on part of the forget set,
then ask whether the rest of it came back. The audited model's weights are untouched.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch

from erasure.adversary import AttackResult, Judge


@dataclass
class RelearnAttack:
    """Relearn on the first ``fraction`` of the batch's rows, judge the others (implements ``Adversary``).

    Args:
        steps: fine-tuning steps on the relearning rows.
        lr: AdamW learning rate.
        fraction: share of the rows used as relearning data (the rest are judged).
    """

    modality = "llm"
    per_example = False
    needs_reference = False

    steps: int = 10
    lr: float = 1e-3
    fraction: float = 0.5
    name: str = "relearn"

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Judge | None = None) -> AttackResult:
        rows = list(batch.rows)
        cut = max(1, int(len(rows) * self.fraction))
        if cut >= len(rows):
            raise ValueError("the relearning attack needs rows left to judge after its relearning split "
                             f"({len(rows)} rows, fraction {self.fraction})")
        t0 = time.time()
        twin = copy.copy(adapter)  # same tokenizer and template, its own copy of the weights
        twin.model = copy.deepcopy(adapter.model)
        twin.model.train().requires_grad_(True)
        relearn = twin.collate(rows[:cut])
        opt = torch.optim.AdamW(twin.model.parameters(), lr=self.lr)
        trace = []
        for _ in range(self.steps):
            nll, length = twin.per_example_nll(relearn)
            loss = nll.sum() / length.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(float(loss.detach()))
        twin.model.eval()
        success = None
        if judge is not None:  # the relearning rows were data, not questions: not judged
            success = [None] * cut + judge(twin.generate(rows[cut:]), rows[cut:])
        return AttackResult(batch=batch, success=success, trace=trace,
                            info={"steps": self.steps, "seconds": round(time.time() - t0, 3), "model": twin})
