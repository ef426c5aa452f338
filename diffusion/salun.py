"""SalUn for diffusion: Saliency Unlearning (Fan et al. 2023, https://arxiv.org/abs/2310.12508).

Two parts. A weight mask keeps the UNet weights whose forget-loss gradient is largest (``erasure/masks.py``, kind
``salun``: | grad_f | over the forget images, top 50% of the whole UNet); only those train. The forgetting objective
relabels the concept ("random labelling" in the paper; the official SD script takes the next class):

    L = || eps_theta(x_t, c, t) - sg(eps_theta(x_t, c', t)) ||^2  +  alpha * || eps_theta(x_r,t, c_r, t) - eps ||^2

x_t = a forget image noised at a uniform t, c the prompt with the concept, c' the same prompt with the concept
replaced by another concept of its domain (the next one in the model's vocabulary unless ``pseudo`` names it), the
target from the model being trained under stop-gradient (the official ``random_label.py``); the second term is the
plain denoising loss on retain images with their own prompts. Forget and retain images are generated once, before
training, by the original model (the official code uses the dataset's images of the class).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from diffusion.ca import generate_latents
from diffusion.pipeline import share_of
from erasure.objectives import Objective, StepScores
from erasure.registry import Method

logger = logging.getLogger(__name__)


def pseudo_concept(adapter: Any, concept: str) -> str:
    """The concept after ``concept`` (any case) in its domain of the model's vocabulary (styles or objects, wrapping
    round)."""
    vocab = getattr(adapter, "concepts", None)
    for pool in (vocab.styles, vocab.objects) if vocab is not None else ():
        names = [c.lower() for c in pool]
        if concept.lower() in names:
            if len(pool) < 2:
                raise ValueError(f"SalUn relabels {concept!r} as another concept of its domain, and there is none")
            return pool[(names.index(concept.lower()) + 1) % len(pool)]
    raise ValueError(f"SalUn relabels {concept!r} as another concept, and the model's vocabulary does not hold it: "
                     "name the replacement with --option pseudo=...")


@dataclass
class _Images:
    """Each distinct prompt's images, drawn by the model before training; a step picks one per row."""

    per_prompt: int = 1
    ddim_steps: int = 20
    guidance: float = 3.0

    def draw(self, adapter: Any, prompts: Sequence[str], seed: int) -> None:
        self.latents = generate_latents(adapter.pipe, prompts, self.per_prompt, self.ddim_steps, self.guidance, seed)

    def finish(self) -> None:
        self.latents = {}

    def noised(self, s: StepScores, split: str) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, x_t, t, noise) for the split's rows, from their prompts' images."""
        batch, g = s.batch(split), s.generator(split)
        rows, total = share_of(batch.shard, len(batch.prompts))  # draw for the whole batch, keep this share
        pick = torch.randint(0, self.per_prompt, (total,), generator=g)[rows].tolist()
        x0 = torch.stack([self.latents[p][k] for p, k in zip(batch.prompts, pick)])
        xt, t, noise = s.adapter.pipe.noise(x0, g, shard=batch.shard)
        return batch, xt, t, noise


@dataclass
class RandomLabelLoss(_Images):
    """The concept prompt's prediction regressed onto the relabelled prompt's, on noised forget images."""

    concept: str = ""
    pseudo: str = ""
    split: str = "forget"
    name: str = "salun_forget"
    needs_reference: bool = False

    def prepare(self, adapter: Any, reference: Any, data: dict[str, Sequence[Any]], splits: set[str],
                seed: int = 0) -> None:
        from diffusion.adapter import prompt_of
        from diffusion.uce import prompt_pairs

        prompts = [prompt_of(r) for r in data[self.split]]
        self.relabelled = dict(prompt_pairs(prompts, self.concept, self.pseudo))
        self.draw(adapter, prompts, seed)

    def __call__(self, s: StepScores) -> torch.Tensor:
        batch, xt, t, _ = self.noised(s, self.split)
        pipe = s.adapter.pipe
        with torch.no_grad():
            target = pipe.predict_noise(xt, t, pipe.encode_prompts([self.relabelled[p] for p in batch.prompts]))
        return F.mse_loss(pipe.predict_noise(xt, t, batch.cond(pipe)), target)


@dataclass
class RetainDenoiseLoss(_Images):
    """The denoising loss on the retain prompts' images (drawn by the original model)."""

    split: str = "retain"
    name: str = "salun_retain"
    needs_reference: bool = False

    def prepare(self, adapter: Any, reference: Any, data: dict[str, Sequence[Any]], splits: set[str],
                seed: int = 0) -> None:
        from diffusion.adapter import prompt_of

        self.draw(adapter, [prompt_of(r) for r in data[self.split]], seed + 1)

    def __call__(self, s: StepScores) -> torch.Tensor:
        batch, xt, t, noise = self.noised(s, self.split)
        return F.mse_loss(s.adapter.pipe.predict_noise(xt, t, batch.cond(s.adapter.pipe)), noise)


@dataclass
class SalUnConfig:
    """SalUn options.

    Args:
        concept: the erased concept's words (filled with the erased concept by ``erase()``).
        pseudo: the concept it is relabelled as (default: the next concept of its domain in the model's vocabulary).
        alpha: the retain term's weight (official README run: 0.5; script default 0.1).
        mask_ratio: the fraction of UNet weights the saliency mask keeps trainable (official: 0.5); used when
            ``erase`` gets no mask of its own.
        images: images the original model draws per forget / retain prompt before training.
        ddim_steps, guidance: how they are drawn.
    """

    concept: str | None = None
    pseudo: str | None = None
    alpha: float = 0.5
    mask_ratio: float = 0.5
    images: int = 1
    ddim_steps: int = 20
    guidance: float = 3.0


def build_salun(c: SalUnConfig, adapter: Any = None) -> Objective:
    if not c.concept:
        raise ValueError("SalUn relabels the concept's prompts: give the concept (--concept)")
    pseudo = c.pseudo or pseudo_concept(adapter, c.concept)
    images = dict(per_prompt=c.images, ddim_steps=c.ddim_steps, guidance=c.guidance)
    return Objective([(1.0, RandomLabelLoss(concept=c.concept, pseudo=pseudo, **images)),
                      (c.alpha, RetainDenoiseLoss(**images))])


# the official README's SD run: the whole UNet under the 50% saliency mask, lr 1e-5, batch 8, Adam
SALUN = Method("salun", "diffusion", SalUnConfig, build_salun, selector="esd-all",
               train_defaults={"lr": 1e-5, "steps": 100, "batch_size": 8, "optimizer": "adam"},
               paper="https://arxiv.org/abs/2310.12508",
               mask=lambda c: {"kind": "salun", "ratio": c.mask_ratio})
