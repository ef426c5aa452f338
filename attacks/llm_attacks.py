"""Attacks on unlearned LLMs: a soft-prompt (embedding-space) attack and a relearning attack.

Both implement ``erasure.adversary.Adversary`` and leave the attacked model's weights untouched (relearning
fine-tunes a copy). The judge is an answer matcher: the greedy answer recalls the forgotten answer.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch

from erasure.adversary import AttackResult


def answer_matcher(rows: Sequence[dict], threshold: float = 0.5) -> Callable[[list[str]], list[bool]]:
    """Generated answers -> [ROUGE-L recall of the true answer >= threshold] (the concept "came back")."""
    from evals.tofu import rouge_l

    return lambda answers: [rouge_l(a, r["answer"])["recall"] >= threshold for a, r in zip(answers, rows)]


@torch.no_grad()
def greedy_with_prefix(adapter: Any, rows: Sequence[dict], prefix: torch.Tensor | None,
                       max_new_tokens: int = 32) -> list[str]:
    """Greedy answers to each row's question, with an optional soft prompt (1, k, D) in front."""
    from evals.tofu_run import room_to_generate

    model, tok = adapter.model, adapter.tokenizer
    out = []
    for r in rows:
        ids = tok(adapter.format_prompt(r["question"]), return_tensors="pt")["input_ids"].to(model.device)
        emb = model.get_input_embeddings()(ids)
        if prefix is not None:
            emb = torch.cat([prefix.to(emb.dtype), emb], dim=1)
        gen = model.generate(inputs_embeds=emb, attention_mask=torch.ones(emb.shape[:2], dtype=torch.long,
                                                                          device=emb.device),
                             max_new_tokens=room_to_generate(adapter, emb.shape[1], max_new_tokens),
                             do_sample=False, pad_token_id=adapter.pad_id, eos_token_id=tok.eos_token_id)
        out.append(tok.decode(gen[0], skip_special_tokens=True).strip())
    return out


@dataclass
class SoftPromptAttack:
    """Optimise k input embeddings, prepended to every forget question, to recover the forget answers.

    Args:
        k: soft-prompt tokens.
        steps: Adam steps.
        lr: Adam learning rate.
        seed: seeds the initialisation (random vocabulary embeddings).
    """

    k: int = 5
    steps: int = 50
    lr: float = 1e-2
    seed: int = 0
    name: str = "soft-prompt"

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Callable[[list[str]], list[bool]] | None = None, rows: Sequence[dict] | None = None
               ) -> AttackResult:
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
        if judge is not None and rows is not None:
            success = judge(greedy_with_prefix(adapter, rows, adv.prefix))
        return AttackResult(batch=adv, success=success, trace=trace,
                            info={"steps": self.steps, "seconds": round(time.time() - t0, 3)})


@dataclass
class RelearnAttack:
    """Fine-tune a copy of the model for a few steps on forget-related rows, then re-measure.

    Args:
        steps: fine-tuning steps on ``batch`` (the relearning data).
        lr: AdamW learning rate.
    """

    steps: int = 10
    lr: float = 1e-3
    name: str = "relearn"

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Callable[[list[str]], list[bool]] | None = None, rows: Sequence[dict] | None = None
               ) -> AttackResult:
        from llm.adapter import CausalLMAdapter

        t0 = time.time()
        twin = CausalLMAdapter(copy.deepcopy(adapter.model), adapter.tokenizer, template=adapter.template,
                               use_chat_template=adapter.use_chat_template)
        twin.model.train().requires_grad_(True)
        opt = torch.optim.AdamW(twin.model.parameters(), lr=self.lr)
        trace = []
        for _ in range(self.steps):
            nll, length = twin.per_example_nll(batch)
            loss = nll.sum() / length.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(float(loss.detach()))
        twin.model.eval()
        success = judge(greedy_with_prefix(twin, rows, None)) if judge is not None and rows is not None else None
        return AttackResult(batch=batch, success=success, trace=trace,
                            info={"steps": self.steps, "seconds": round(time.time() - t0, 3), "model": twin})
