"""Random-token baseline: k random vocabulary tokens prefixed to the prompt, a few tries, no optimisation.

If an erased model falls to this, the optimised attacks are not what breaks it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from erasure.adversary import AttackResult, Judge


@dataclass
class RandomTokens:
    """Try ``tries`` random k-token prefixes; succeed at the first one the judge accepts.

    Args:
        k: prefix tokens.
        tries: prefixes tried.
        sample_steps: DDIM steps of each judged generation.
        guidance: CFG scale.
        seed: seeds the token draws and the generation noise.
    """

    modality = "diffusion"
    per_example = True
    needs_reference = False

    k: int = 3
    tries: int = 4
    sample_steps: int = 20
    guidance: float = 3.0
    seed: int = 0
    name: str = "random"

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Judge | None = None) -> AttackResult:
        pipe = adapter.pipe
        prompt = batch.prompts[0]
        pipe.tokenize([prompt], reserve=self.k)
        pool = pipe.ordinary_token_ids()
        embed = pipe.text_encoder.get_input_embeddings().weight.detach()
        t0 = time.time()
        tokens, success, tried = [], False, 0
        for tried in range(1, self.tries + 1):
            tokens = pool[torch.randint(0, len(pool), (self.k,), generator=generator)].tolist()
            if judge is None:
                break
            image = adapter.generate([prompt], prefix=embed[tokens][None], seeds=[self.seed],
                                     num_steps=self.sample_steps, guidance=self.guidance)
            if judge(image, [prompt])[0]:
                success = True
                break
        adv = replace(batch, prefix=embed[tokens][None])
        info = {"steps": tried, "seconds": round(time.time() - t0, 3), "prefix_tokens": tokens,
                "adversarial_prompt": pipe.tokenizer.decode(tokens) + " " + prompt}
        return AttackResult(batch=adv, success=[success] if judge is not None else None, info=info)
