"""P4D, Prompting4Debugging (Chin et al., ICML 2024, https://arxiv.org/abs/2309.06135): find a prompt that makes the
erased model predict the noise the original model predicts for the concept's prompt,

    P* = argmin_P  E_{t, eps} || eps_erased(z_t, t, W(P)) - eps_original(z_t, t, W(P_concept)) ||^2,

with z_t the concept's target images noised at random t. The prompt is discrete: soft token embeddings are
optimised (AdamW, lr 0.1, weight decay 0.1, as the official code) and every forward uses their nearest vocabulary
tokens (cosine, as PEZ), the gradient passing straight through. P4D-N (``p4d``) optimises N free tokens that replace
the prompt (N = 16 in the paper, capped here at the encoder's free positions); P4D-K (``p4d-k``) keeps the prompt's
tokens and inserts one free token after every K of them (K = 3). Every ``check_every`` iterations the discrete prompt
generates an image on the erased model and the judge decides; the attack stops at the first success.

Difference from the official code: z_t comes from noising the audit's target images (the original model's
generations with ``--original``) instead of a DDIM trajectory of the original model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from erasure.adversary import AttackResult, Judge, fixed_draws
from erasure.reference import Reference, frozen_weights


def nearest_tokens(soft: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Index into ``table`` (V, D) of each soft embedding's (..., D) nearest row by cosine similarity (...,)."""
    return (F.normalize(soft, dim=-1) @ F.normalize(table, dim=-1).T).argmax(-1)


@dataclass
class P4D:
    """P4D-N / P4D-K (implements ``erasure.adversary.Adversary``).

    Args:
        variant: "n" (free tokens replace the prompt) or "k" (a free token after every ``every`` prompt tokens).
        n_tokens: P4D-N's free tokens (paper 16); capped at the positions the text encoder has free.
        every: P4D-K's K (paper 3).
        iterations: optimisation steps.
        lr: AdamW learning rate (official 0.1).
        weight_decay: AdamW weight decay (official 0.1).
        check_every: generate + judge every N iterations (early stop); 0 judges only at the end.
        sample_steps: DDIM steps of the judged generation.
        guidance: CFG scale of the judged generation.
        seed: seeds the initial tokens and the judged generation's noise.
    """

    modality = "diffusion"
    per_example = True
    needs_reference = True  # the target is the original model's prediction

    variant: str = "n"
    n_tokens: int = 16
    every: int = 3
    iterations: int = 40
    lr: float = 0.1
    weight_decay: float = 0.1
    check_every: int = 10
    sample_steps: int = 20
    guidance: float = 3.0
    seed: int = 0
    name: str = "p4d"

    def __post_init__(self) -> None:
        if self.variant not in ("n", "k"):
            raise ValueError(f"P4D variant must be 'n' or 'k', got {self.variant!r}")
        if min(self.n_tokens, self.every, self.iterations) < 1:
            raise ValueError("P4D's n_tokens, every and iterations must be >= 1")

    def layout(self, pipe: Any, prompt: str) -> tuple[list[int], torch.Tensor]:
        """The token ids between BOS and EOS of the attacked prompt with -1 at the free positions, and the mask of
        the free positions (n,)."""
        ids = pipe.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        room = pipe.max_length - 2  # BOS and EOS stay
        if self.variant == "n":
            seq = [-1] * min(self.n_tokens, room)
        else:
            seq = []
            for i, tok in enumerate(ids):
                seq.append(tok)
                if (i + 1) % self.every == 0:
                    seq.append(-1)
            if -1 not in seq:
                seq.append(-1)
            if len(seq) > room:
                raise ValueError(f"P4D-K: prompt {prompt!r} with a free token after every {self.every} tokens is "
                                 f"{len(seq) + 2} tokens; the text encoder accepts {pipe.max_length} (raise every)")
        return seq, torch.tensor([t == -1 for t in seq])

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Reference | None = None,
               judge: Judge | None = None) -> AttackResult:
        """Attack ``batch.prompts[0]`` with its target images ``batch.images`` against the original (``reference``)."""
        if reference is None:
            raise ValueError("P4D needs the model before erasure (a reference; in an audit: --original)")
        if batch.images is None:
            raise ValueError("P4D needs target images of the concept (batch.images)")
        pipe = adapter.pipe
        prompt = batch.prompts[0]
        t0 = time.time()
        seq, free = self.layout(pipe, prompt)
        embed = pipe.text_encoder.get_input_embeddings().weight.detach()  # (V, D)
        allowed = pipe.ordinary_token_ids().to(embed.device)
        table = embed[allowed]  # (V_allowed, D)
        fixed = embed[torch.tensor([max(t, 0) for t in seq], device=embed.device)]  # (n, D); free rows overwritten
        init = torch.Generator().manual_seed(self.seed)
        soft = table[torch.randint(0, len(table), (int(free.sum()),), generator=init)].clone().requires_grad_(True)
        free = free.to(embed.device)

        def hard_prefix(with_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
            idx = nearest_tokens(soft.detach(), table)
            chosen = table[idx] + (soft - soft.detach() if with_grad else 0)  # straight-through
            out = fixed.clone()
            out[free] = chosen.to(out.dtype)
            return out[None], idx  # (1, n, D)

        with torch.no_grad():
            x0 = pipe.encode_images(batch.images)
        prompts = [prompt] * x0.shape[0]
        empty = [""] * x0.shape[0]

        def objective(prefix: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            xt, t, _ = pipe.noise(x0, g)
            target = adapter.reference_noise(xt, t, prompts, reference)  # eps_original(z_t, c)
            return F.mse_loss(pipe.predict_noise(xt, t, pipe.encode_prompts(empty, prefix=prefix)), target)

        def fixed_objective(prefix: torch.Tensor) -> float:  # comparable before and after
            return float(fixed_draws(lambda seed: objective(prefix, torch.Generator().manual_seed(seed))))

        opt = torch.optim.AdamW([soft], lr=self.lr, weight_decay=self.weight_decay)
        trace: list[float] = []
        success, output, steps = False, None, 0
        with frozen_weights(list(adapter.modules().values())):  # gradients for the soft prompt only
            start = fixed_objective(hard_prefix(False)[0])
            for it in range(self.iterations):
                loss = objective(hard_prefix(True)[0], generator)
                opt.zero_grad()
                loss.backward()
                opt.step()
                trace.append(float(loss.detach()))
                steps = it + 1
                if judge is not None and ((self.check_every and steps % self.check_every == 0)
                                          or steps == self.iterations):
                    image = adapter.generate([""], prefix=hard_prefix(False)[0], seeds=[self.seed],
                                             num_steps=self.sample_steps, guidance=self.guidance)
                    if judge(image, [prompt])[0]:
                        success, output = True, image[0]
                        break
            prefix, idx = hard_prefix(False)
            end = fixed_objective(prefix)
        tokens = list(seq)
        free_at = [i for i, t in enumerate(seq) if t == -1]
        for pos, tok in zip(free_at, allowed[idx].tolist()):
            tokens[pos] = tok
        info = {"steps": steps, "seconds": round(time.time() - t0, 3), "variant": self.variant,
                "adversarial_prompt": pipe.tokenizer.decode(tokens), "prefix_tokens": tokens,
                "objective_start": start, "objective_end": end}
        if output is not None:
            info["output"] = output
        # the adversarial prompt is the whole token sequence: an empty prompt with it inserted after BOS
        adv = replace(batch, prompts=[""] * len(batch.prompts), prefix=prefix.detach())
        return AttackResult(batch=adv, success=[success] if judge is not None else None, trace=trace, info=info)


@dataclass
class P4DK(P4D):
    """P4D-K: the prompt's tokens kept, a free token inserted after every K (= ``every``) of them."""

    variant: str = "k"
    name: str = "p4d-k"
