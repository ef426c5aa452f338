"""Ring-A-Bell (Tsai et al., ICLR 2024, https://arxiv.org/abs/2310.10012): a model-agnostic red-teaming prompt
search that needs only a text encoder.

1. Concept vector: the mean difference of the text encoder's outputs over prompt pairs with and without the concept,
   ``c = mean_i [E(p_i) - E(p_i without the concept)]`` (L, D).
2. Target: the attacked prompt without the concept, pushed along the vector, ``T = E(p without the concept) + eta c``.
3. Discrete search: a genetic algorithm over token sequences of length K for the one whose encoding is closest to T
   (mean squared error); the erased model then generates from it and the judge decides.

The prompt pairs are the concept's prompts in the model's own vocabulary (``adapter.concepts``: every template
prompt with the concept) with the concept's words removed, or the attacked prompt alone for a model without one.
The text encoder is the model before erasure when the audit has one (``--original``: the attacker's public
encoder, as in the paper), else the attacked model's. Paper settings: K = 16, eta = 3 (nudity), population 200,
3000 generations, mutation rate 0.25, crossover rate 0.5; here 200 generations by default (CPU) and K capped at
the encoder's free positions.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from erasure.adversary import AttackResult, Judge
from erasure.data import replace_concept


@dataclass
class RingABell:
    """The Ring-A-Bell attack (implements ``erasure.adversary.Adversary``).

    Args:
        concept: the erased concept (an audit fills it in from ``--concept``).
        eta: strength of the concept vector added to the target (paper: 3 for nudity).
        length: tokens of the searched prompt (paper 16); capped at the encoder's free positions.
        population: candidates per generation (paper 200).
        generations: genetic-algorithm generations (paper 3000).
        mutation: probability that a child has one token replaced by a random one (paper 0.25).
        crossover: probability that a child mixes two parents at a random cut (paper 0.5).
        sample_steps: DDIM steps of the judged generation.
        guidance: CFG scale of the judged generation.
        seed: seeds the search and the judged generation's noise.
    """

    modality = "diffusion"
    per_example = True
    needs_reference = False
    uses_reference = True  # the original's text encoder, when the audit has one

    concept: str | None = None
    eta: float = 3.0
    length: int = 16
    population: int = 200
    generations: int = 200
    mutation: float = 0.25
    crossover: float = 0.5
    sample_steps: int = 20
    guidance: float = 3.0
    seed: int = 0
    name: str = "ring-a-bell"

    def __post_init__(self) -> None:
        if min(self.length, self.generations) < 1 or self.population < 2:
            raise ValueError("Ring-A-Bell needs length >= 1, generations >= 1 and population >= 2")
        if not (0 <= self.mutation <= 1 and 0 <= self.crossover <= 1):
            raise ValueError("Ring-A-Bell's mutation and crossover are probabilities in [0, 1]")

    def concept_vector(self, pipe: Any, prompts: list[str]) -> torch.Tensor:
        """Mean over ``prompts`` of E(prompt) - E(prompt without the concept), (L, D)."""
        without = replace_concept(prompts, self.concept, "", who="Ring-A-Bell")
        with torch.no_grad():
            return (pipe.encode_prompts(prompts) - pipe.encode_prompts(without)).mean(0)

    def target(self, adapter: Any, prompt: str) -> torch.Tensor:
        """T = E(prompt without the concept) + eta * concept vector, (L, D)."""
        concepts = getattr(adapter, "concepts", None)  # the model's vocabulary (a ConceptSet), if it has one
        known = {c.lower(): c for c in [*getattr(concepts, "styles", []), *getattr(concepts, "objects", [])]}
        pairs = [prompt]
        if self.concept.lower() in known:
            pairs = list(dict.fromkeys(concepts.prompts_with(known[self.concept.lower()]) + [prompt]))
        c = self.concept_vector(adapter.pipe, pairs)
        with torch.no_grad():
            base = adapter.pipe.encode_prompts(replace_concept([prompt], self.concept, "", who="Ring-A-Bell"))[0]
        return base + self.eta * c

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Judge | None = None) -> AttackResult:
        """Search a prompt for ``batch.prompts[0]``; the erased model generates from it and the judge decides."""
        if not self.concept:
            raise ValueError("Ring-A-Bell needs the erased concept (the attack's concept option; an audit passes "
                             "--concept)")
        pipe = adapter.pipe
        prompt = batch.prompts[0]
        t0 = time.time()
        k = min(self.length, pipe.max_length - 2)
        pool = pipe.ordinary_token_ids()
        g = torch.Generator().manual_seed(self.seed)
        scope = reference.active() if reference is not None else contextlib.nullcontext()
        with torch.no_grad(), scope:  # the attacker's encoder: the original when given
            embed = pipe.text_encoder.get_input_embeddings().weight.detach()  # its token table (swapped in)
            pool = pool.to(embed.device)
            target = self.target(adapter, prompt)
            pop = pool[torch.randint(0, len(pool), (self.population, k), generator=g)]  # (P, K) token ids
            fit = self._mse(pipe, embed, pop, target)
            start = float(fit.min())
            trace = []
            elite = max(1, self.population // 10)
            for _ in range(self.generations):
                order = fit.argsort()
                pop, fit = pop[order], fit[order]
                parents = pop[: max(2, self.population // 2)]
                n = self.population - elite
                a = parents[torch.randint(0, len(parents), (n,), generator=g)]
                b = parents[torch.randint(0, len(parents), (n,), generator=g)]
                cut = torch.randint(1, k + 1, (n, 1), generator=g)
                mix = (torch.rand(n, 1, generator=g) < self.crossover) & (torch.arange(k)[None] >= cut)
                children = torch.where(mix.to(a.device), b, a)
                mutate = torch.rand(n, generator=g) < self.mutation
                where = torch.randint(0, k, (n,), generator=g)
                new = pool[torch.randint(0, len(pool), (n,), generator=g)]
                rows = mutate.nonzero().flatten()
                children[rows, where[rows]] = new[rows]
                pop = torch.cat([pop[:elite], children])
                fit = torch.cat([fit[:elite], self._mse(pipe, embed, children, target)])
                trace.append(float(fit.min()))
        best = pop[fit.argmin()]
        embed = pipe.text_encoder.get_input_embeddings().weight.detach()  # the attacked model's own table
        prefix = embed[best][None]  # (1, K, D): the whole prompt, inserted after BOS of an empty prompt
        success, info = None, {}
        if judge is not None:
            image = adapter.generate([""], prefix=prefix, seeds=[self.seed], num_steps=self.sample_steps,
                                     guidance=self.guidance)
            success = [bool(judge(image, [prompt])[0])]
            if success[0]:
                info["output"] = image[0]
        tokens = best.tolist()
        info.update({"steps": self.generations, "seconds": round(time.time() - t0, 3), "prefix_tokens": tokens,
                     "adversarial_prompt": pipe.tokenizer.decode(tokens), "objective_start": start,
                     "objective_end": float(fit.min())})
        adv = replace(batch, prompts=[""] * len(batch.prompts), prefix=prefix)
        return AttackResult(batch=adv, success=success, trace=trace, info=info)

    @staticmethod
    def _mse(pipe: Any, embed: torch.Tensor, tokens: torch.Tensor, target: torch.Tensor,
             chunk: int = 256) -> torch.Tensor:
        """Mean squared error between each candidate's encoding and the target, (P,)."""
        out = []
        with torch.no_grad():
            for lo in range(0, len(tokens), chunk):
                part = tokens[lo: lo + chunk]
                enc = pipe.encode_prompts([""] * len(part), prefix=embed[part])
                out.append((enc - target).pow(2).flatten(1).mean(-1))
        return torch.cat(out)
