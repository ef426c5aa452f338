"""CCE, Circumventing Concept Erasure (Pham et al., ICLR 2024, https://arxiv.org/abs/2308.01508): textual inversion
against the erased model. A new word embedding v* is learned on images of the concept with the erased model's own
denoising loss (Gal et al. 2022's objective, the weights frozen),

    v* = argmin_v  E_{x, t, eps} || eps - eps_erased(x_t, t, E([v; p without the concept])) ||^2,

then every prompt of the concept is generated with v* in place of the concept's words and the judge decides. One
token serves every prompt of the audit (a universal attack, as a textual-inversion concept is).

Documented differences: v* sits right after BOS (the toolkit's prefix slot) with the concept's words removed from
the prompt, where the paper writes the placeholder where the words were; it starts from a random vocabulary token
(textual inversion starts from a word the user picks); Adam at lr 5e-3 without decay, batch 4, 200 steps by default
(textual inversion: a 5e-3 base rate scaled by the batch, 5000 steps). An audit judges each distinct prompt once,
prompt j with seed + j (the audit's seeds when its rows are distinct prompts and the seed option is the audit's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from erasure.adversary import AttackResult, Judge, fixed_draws
from erasure.data import replace_concept
from erasure.reference import frozen_weights


@dataclass
class CCE:
    """The CCE attack (implements ``erasure.adversary.Adversary``).

    Args:
        concept: the erased concept (an audit fills it in from ``--concept``).
        tokens: vectors of the learned word (textual inversion: 1).
        steps: optimisation steps.
        lr: Adam learning rate.
        batch_size: target images per step.
        sample_steps: DDIM steps of the judged generations.
        guidance: CFG scale of the judged generations.
        seed: seeds the initialisation and the image draws; prompt j of the batch is judged with seed + j (an
            audit's seeds).
    """

    modality = "diffusion"
    per_example = False  # one learned word for every prompt of the concept
    needs_reference = False

    concept: str | None = None
    tokens: int = 1
    steps: int = 200
    lr: float = 5e-3
    batch_size: int = 4
    sample_steps: int = 20
    guidance: float = 3.0
    seed: int = 0
    name: str = "cce"

    def __post_init__(self) -> None:
        if min(self.tokens, self.steps, self.batch_size) < 1:
            raise ValueError("CCE's tokens, steps and batch_size must be >= 1")

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Judge | None = None) -> AttackResult:
        """Learn v* on ``batch.images`` (each under its prompt, the concept removed); judge each distinct prompt."""
        if not self.concept:
            raise ValueError("CCE needs the erased concept (the attack's concept option; an audit passes --concept)")
        if batch.images is None:
            raise ValueError("CCE learns its word from images of the concept (batch.images)")
        pipe = adapter.pipe
        t0 = time.time()
        stripped = replace_concept(batch.prompts, self.concept, "", who="CCE")
        pipe.tokenize(stripped, reserve=self.tokens)  # a clear error when the word does not fit
        embed = pipe.text_encoder.get_input_embeddings().weight.detach()
        pool = pipe.ordinary_token_ids()
        init = torch.Generator().manual_seed(self.seed)
        word = embed[pool[torch.randint(0, len(pool), (self.tokens,), generator=init)]].clone().requires_grad_(True)
        with torch.no_grad():
            x0 = pipe.encode_images(batch.images)
        opt = torch.optim.Adam([word], lr=self.lr)
        draws = torch.Generator().manual_seed(self.seed + 1)

        def loss_on(rows: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            xt, t, noise = pipe.noise(x0[rows], g)
            cond = pipe.encode_prompts([stripped[i] for i in rows.tolist()], prefix=word[None])
            return F.mse_loss(pipe.predict_noise(xt, t, cond), noise)

        def fixed_loss() -> float:  # over every image, comparable before and after
            return float(fixed_draws(lambda seed: loss_on(torch.arange(len(x0)), torch.Generator().manual_seed(seed)),
                                     draws=1))

        trace = []
        with frozen_weights(list(adapter.modules().values())):
            start = fixed_loss()
            for _ in range(self.steps):
                rows = torch.randperm(len(x0), generator=draws)[: self.batch_size]
                loss = loss_on(rows, generator)
                opt.zero_grad()
                loss.backward()
                opt.step()
                trace.append(float(loss.detach()))
            end = fixed_loss()
        originals = list(dict.fromkeys(batch.prompts))  # the audit's rows: one judged generation per distinct prompt
        heads = replace_concept(originals, self.concept, "", who="CCE")
        success = None
        if judge is not None:
            seeds = [self.seed + j for j in range(len(heads))]  # an audit's seeds (row j: seed + j)
            images = adapter.generate(heads, prefix=word.detach()[None], seeds=seeds, num_steps=self.sample_steps,
                                      guidance=self.guidance)
            success = [bool(v) for v in judge(images, originals)]
        info = {"steps": self.steps, "seconds": round(time.time() - t0, 3), "objective_start": start,
                "objective_end": end, "adversarial_prompts": [f"<v*> {h}" for h in heads]}
        adv = replace(batch, prompts=stripped, prefix=word.detach()[None])
        return AttackResult(batch=adv, success=success, trace=trace, info=info)
