"""AdvUnlearn's inner attack (Zhang et al., NeurIPS 2024, https://arxiv.org/abs/2405.15234): k continuous prefix
token embeddings that make the current model reproduce the frozen original's noise prediction for the concept,

    delta* = argmin_delta || eps(z_t, E([delta; c])) - eps_o(z_t, c) ||^2,

at one z_t sampled per call (as in the paper's code). It is the inner maximisation of ``advunlearn`` and an
audit attack (``erasure audit --attack advunlearn-prefix --original MODEL``): the audit asks the judge about the
image the prefixed prompt makes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from erasure.adversary import AttackResult
from erasure.reference import Reference


@dataclass
class PrefixAttack:
    """AdvUnlearn's prefix attack (implements ``erasure.adversary.Adversary``).

    Args:
        k: prefix tokens (paper: 1).
        steps: attack iterations (paper: 30; fast-AT uses fewer).
        lr: Adam step size (1e-3), or the sign-gradient step size when ``fast``.
        fast: fast adversarial training: signed-gradient steps instead of Adam.
        ddim_steps: DDIM schedule z_t is sampled from (as in ESD).
        guidance: CFG scale of that sampling.
    """

    modality = "diffusion"
    per_example = True
    needs_reference = True  # the target is the frozen original's prediction

    k: int = 1
    steps: int = 30
    lr: float = 1e-3
    fast: bool = False
    ddim_steps: int = 50
    guidance: float = 3.0
    name: str = "advunlearn-prefix"

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Reference | None = None,
               judge: Any = None) -> AttackResult:
        if reference is None:
            raise ValueError("the AdvUnlearn attack needs the frozen original model (a reference)")
        pipe = adapter.pipe
        t0 = time.time()
        # z_t from the adapter's trajectory bank when training with frozen sampling (with the frozen prediction
        # there), else sampled with the current model
        xt, t, frozen = adapter.esd_latents(batch.prompts, generator, self.ddim_steps, self.guidance,
                                            shard=batch.shard)
        target = adapter.reference_noise(xt, t, batch.prompts, reference, frozen)  # eps_o(z_t, c)
        embed = pipe.text_encoder.get_input_embeddings().weight.detach()  # (V, D)
        pool = pipe.ordinary_token_ids()
        start = pool[torch.randint(0, len(pool), (self.k,), generator=generator)]
        delta = embed[start].clone().requires_grad_(True)  # (k, D)
        opt = None if self.fast else torch.optim.Adam([delta], lr=self.lr)
        trace = []
        for _ in range(self.steps):
            loss = F.mse_loss(pipe.predict_noise(xt, t, pipe.encode_prompts(batch.prompts, prefix=delta[None])), target)
            (grad,) = torch.autograd.grad(loss, [delta])  # only delta: no parameter gradients accumulate
            with torch.no_grad():
                if self.fast:
                    delta -= self.lr * grad.sign()
                else:
                    delta.grad = grad
                    opt.step()
            trace.append(float(loss.detach()))
        adv = replace(batch, prefix=delta.detach()[None], xt=(xt, t), frozen=frozen)
        return AttackResult(batch=adv, trace=trace, info={"steps": self.steps, "seconds": round(time.time() - t0, 3)})
