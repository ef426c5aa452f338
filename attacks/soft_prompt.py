"""Soft-prompt attack on unlearned LLMs: k input embeddings, prepended to every forget question, optimised to
recover the forget answers (an embedding-space attack). The model's weights are untouched; the judge reads the
greedy answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from erasure.adversary import AttackResult, Judge


@dataclass
class SoftPromptAttack:
    """Optimise one soft prompt for the whole batch (implements ``erasure.adversary.Adversary``).

    Args:
        k: soft-prompt tokens.
        steps: Adam steps.
        lr: Adam learning rate.
        seed: seeds the initialisation (random vocabulary embeddings).
    """

    modality = "llm"
    per_example = False  # one universal prefix for every forget question
    needs_reference = False

    k: int = 5
    steps: int = 50
    lr: float = 1e-2
    seed: int = 0
    name: str = "soft-prompt"

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Judge | None = None) -> AttackResult:
        model = adapter.model
        t0 = time.time()
        embed = model.get_input_embeddings().weight.detach()  # (V, D)
        start = torch.randint(0, embed.shape[0], (self.k,), generator=torch.Generator().manual_seed(self.seed))
        prefix = embed[start].clone()[None].requires_grad_(True)  # (1, k, D)
        opt = torch.optim.Adam([prefix], lr=self.lr)
        was_training = model.training
        model.eval()
        trace = []
        for _ in range(self.steps):
            nll, length = adapter.per_example_nll(replace(batch, prefix=prefix))
            loss = (nll / length).mean()
            (grad,) = torch.autograd.grad(loss, [prefix])  # no parameter gradients
            prefix.grad = grad
            opt.step()
            trace.append(float(loss.detach()))
        model.train(was_training)
        adv = replace(batch, prefix=prefix.detach())
        success = None
        if judge is not None:
            success = judge(adapter.generate(batch.rows, prefix=adv.prefix), batch.rows)
        return AttackResult(batch=adv, success=success, trace=trace,
                            info={"steps": self.steps, "seconds": round(time.time() - t0, 3)})
