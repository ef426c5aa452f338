"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al. 2023, https://arxiv.org/abs/2303.07345).

    L = || eps_theta(x_t, c, t) - [ eps*(x_t, "", t) - eta * (eps*(x_t, c, t) - eps*(x_t, "", t)) ] ||^2

theta* is the frozen original (the loop's reference strategy), x_t comes from DDIM-sampling the model being
trained with prompt c (guidance 3) and stopping at a random step of ``ddim_steps``. The variants differ only
in which parameters train (selector presets): esd-x = cross-attention, esd-u = everything but cross-attention,
esd-all = the whole UNet, esd-x-strict = cross-attention keys/values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from erasure.objectives import KL, Objective, StepScores
from erasure.registry import Method


@dataclass
class ESDLoss:
    """ESD's negative-guidance regression target, as a loss term over the forget prompts.

    Args:
        eta: negative guidance strength (paper 1.0; later code 2.0).
        guidance: CFG scale used to sample x_t.
        ddim_steps: length of the DDIM schedule x_t is sampled from.
    """

    eta: float = 1.0
    guidance: float = 3.0
    ddim_steps: int = 50
    split: str = "forget"
    name: str = "esd"
    needs_reference: bool = True

    def target(self, s: StepScores, xt: torch.Tensor, t: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """eps*(x_t, "") - eta * (eps*(x_t, c) - eps*(x_t, "")) from the frozen reference, (B, C, H, W)."""
        pipe = s.adapter.pipe
        with torch.no_grad(), s.require_reference().active():
            cond = pipe.encode_prompts(prompts)
            uncond = pipe.encode_prompts([""]).expand_as(cond)
            eps = pipe.predict_noise(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([uncond, cond]))
            eps_u, eps_c = eps.chunk(2)
        return eps_u - self.eta * (eps_c - eps_u)

    def __call__(self, s: StepScores) -> torch.Tensor:
        batch = s.batch(self.split)
        if batch.xt is not None:  # sampled by the adversary this step (AdvUnlearn): the same z_t
            xt, t = batch.xt
        else:
            xt, t = s.adapter.sample_xt(batch.prompts, s.generator(self.split), self.ddim_steps, self.guidance,
                                        shard=batch.shard)
        target = self.target(s, xt, t, batch.prompts)
        # The target comes from the clean concept prompt; the prediction uses the batch's conditioning, which
        # carries the adversary's prefix during adversarial training (AdvUnlearn).
        pred = s.adapter.pipe.predict_noise(xt, t, batch.cond(s.adapter.pipe))
        return F.mse_loss(pred, target)


@dataclass
class ESDConfig:
    """ESD options.

    Args:
        eta: negative guidance (paper: 1.0).
        guidance: CFG scale when sampling x_t (paper: 3).
        ddim_steps: DDIM schedule length for x_t (paper: 50).
        retain_weight: optional output-preservation term on retain prompts (0 = the paper's ESD).
    """

    eta: float = 1.0
    guidance: float = 3.0
    ddim_steps: int = 50
    retain_weight: float = 0.0


def build_esd(c: ESDConfig, adapter: object = None) -> Objective:
    terms = [(1.0, ESDLoss(eta=c.eta, guidance=c.guidance, ddim_steps=c.ddim_steps))]
    if c.retain_weight:
        terms.append((c.retain_weight, KL()))
    return Objective(terms)


_PAPER = "https://arxiv.org/abs/2303.07345"
_DEFAULTS = {"lr": 1e-5, "steps": 1000, "batch_size": 1, "optimizer": "adam"}
ESD_X = Method("esd-x", "diffusion", ESDConfig, build_esd, selector="esd-x", train_defaults=_DEFAULTS, paper=_PAPER)
ESD_U = Method("esd-u", "diffusion", ESDConfig, build_esd, selector="esd-u", train_defaults=_DEFAULTS, paper=_PAPER)
ESD_ALL = Method("esd-all", "diffusion", ESDConfig, build_esd, selector="esd-all", train_defaults=_DEFAULTS,
                 paper=_PAPER)
ESD_X_STRICT = Method("esd-x-strict", "diffusion", ESDConfig, build_esd, selector="esd-x-strict",
                      train_defaults=_DEFAULTS, paper=_PAPER)
