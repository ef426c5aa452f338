"""CA: Ablating Concepts in Text-to-Image Diffusion Models (Kumari et al. 2023, https://arxiv.org/abs/2303.13516),
the model-based variant.

    L = || eps_theta(x_t, c, t) - sg(eps_theta(x_t, c*, t)) ||^2,   x_t = noised anchor image at a uniform t

c is a prompt with the concept, c* the same prompt with the concept replaced by the anchor; the anchor images are
generated once, before training, by the original model from the anchor prompts (the official ``train.py`` generates
its class images first). The target is the model being trained under stop-gradient (the official code's
``model_pred_anchor`` under ``no_grad``). Trains the cross-attention keys and values (its "cross-attn" group).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from diffusion.pipeline import share_of
from erasure.objectives import Objective, StepScores
from erasure.registry import Method

logger = logging.getLogger(__name__)


@torch.no_grad()
def generate_latents(pipe: Any, prompts: Sequence[str], per_prompt: int, ddim_steps: int, guidance: float,
                     seed: int, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """{prompt: (per_prompt, C, H, W)} model-space samples of each distinct prompt (DDIM + CFG, seeded), made by the
    model as it is now: before training, the original's images of a prompt (CA's anchors, FMN's concept images)."""
    unique = list(dict.fromkeys(prompts))
    flat = [p for p in unique for _ in range(per_prompt)]
    noise = torch.randn((len(flat), *pipe.latent_shape), generator=torch.Generator().manual_seed(seed)).to(pipe.device)
    uncond, parts = pipe.encode_prompts([""]), []
    for i in range(0, len(flat), batch_size):
        cond = pipe.encode_prompts(flat[i: i + batch_size])
        parts.append(pipe.denoise(noise[i: i + batch_size], cond, uncond.expand_as(cond), ddim_steps, guidance))
    latents = torch.cat(parts)
    logger.info("generated %d images of %d prompts", len(flat), len(unique))
    return {p: latents[i * per_prompt: (i + 1) * per_prompt] for i, p in enumerate(unique)}


@dataclass
class CALoss:
    """The concept prompt's prediction regressed onto the anchor prompt's, on noised anchor images."""

    concept: str
    anchor: str = ""
    anchor_images: int = 4
    ddim_steps: int = 20
    guidance: float = 3.0
    split: str = "forget"
    name: str = "ca"
    needs_reference: bool = False

    def prepare(self, adapter: Any, reference: Any, data: dict[str, Sequence[Any]], splits: set[str],
                seed: int = 0) -> None:
        """Generate ``anchor_images`` latents per forget prompt's anchor version with the model before training."""
        from diffusion.adapter import prompt_of
        from diffusion.uce import prompt_pairs

        pairs = prompt_pairs([prompt_of(r) for r in data[self.split]], self.concept, self.anchor)
        self.anchors = {p: a for p, a in pairs}
        self.latents = generate_latents(adapter.pipe, list(self.anchors.values()), self.anchor_images, self.ddim_steps,
                                        self.guidance, seed)

    def finish(self) -> None:
        self.latents = {}

    def __call__(self, s: StepScores) -> torch.Tensor:
        batch = s.batch(self.split)
        g = s.generator(self.split)
        pipe = s.adapter.pipe
        anchors = [self.anchors[p] for p in batch.prompts]
        rows, total = share_of(batch.shard, len(anchors))  # draw for the whole batch, keep this process's share
        pick = torch.randint(0, self.anchor_images, (total,), generator=g)[rows].tolist()
        x0 = torch.stack([self.latents[a][k] for a, k in zip(anchors, pick)])  # (B, C, H, W) anchor images
        xt, t, _ = pipe.noise(x0, g, shard=batch.shard)
        with torch.no_grad():
            target = pipe.predict_noise(xt, t, pipe.encode_prompts(anchors))
        pred = pipe.predict_noise(xt, t, batch.cond(pipe))
        return F.mse_loss(pred, target)


@dataclass
class CAConfig:
    """CA options.

    Args:
        concept: the erased concept's words (filled with the erased concept by ``erase()``).
        anchor: what replaces them in the anchor prompts: "" (the prompt without the concept; default) or an
            anchor concept (the paper's "painting" for styles, a super-category or another object for objects).
        anchor_images: anchor images generated per anchor prompt before training.
        ddim_steps, guidance: how they are generated.
    """

    concept: str | None = None
    anchor: str = ""
    anchor_images: int = 4
    ddim_steps: int = 20
    guidance: float = 3.0


def build_ca(c: CAConfig, adapter: Any = None) -> Objective:
    if not c.concept:
        raise ValueError("CA regresses the concept's prompts onto anchor prompts: give the concept (--concept)")
    return Objective([(1.0, CALoss(c.concept, c.anchor, c.anchor_images, c.ddim_steps, c.guidance))])


# the official README's style/object runs: batch 4, lr 2e-6 scaled by the batch (--scale_lr), 100 steps, AdamW
CA = Method("ca", "diffusion", CAConfig, build_ca, selector="esd-x-strict",
            train_defaults={"lr": 8e-6, "steps": 100, "batch_size": 4, "optimizer": "adamw",
                            "weight_decay": 1e-2},
            paper="https://arxiv.org/abs/2303.13516")
