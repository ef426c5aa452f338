"""AdvUnlearn (Zhang et al., NeurIPS 2024, https://arxiv.org/abs/2405.15234): adversarial training of the
text encoder for robust concept erasure.

    outer: min_theta  L_ESD(E_theta([delta*; c])) + gamma * E_{c~retain} || eps(z_t, E_theta(c)) - eps_o(z_t, c) ||^2
    inner: delta* = argmin_delta || eps(z_t, E_theta([delta; c])) - eps_o(z_t, c) ||^2

The UNet stays frozen; the text encoder's transformer blocks and final layer norm train (selector
``text-encoder``; ``layers`` picks single blocks), so the saved ``text_encoder/`` can be swapped into another
pipeline of the same tokenizer family ("plug-and-play"). The inner attack is the registered attack
``advunlearn-prefix`` (``attacks/advunlearn_prefix.py``, also an audit attack); ESD's loss term is reused as is, on
the z_t the inner attack drew (from ESD's trajectory bank of the frozen model, or sampled with the model being
trained: ``sampling``, as ESD's); the retain term is the core's KL term (for
a diffusion adapter: the mean squared difference to the frozen original's noise prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusion.esd import esd_loss
from erasure.objectives import KL, Objective
from erasure.registry import Method, get_attack
from erasure.selectors import Selector, resolve_selector


@dataclass
class AdvUnlearnConfig:
    """AdvUnlearn options.

    Args:
        gamma: retain weight (0.3 nudity, 0.5 style/object).
        eta: ESD negative guidance.
        guidance: CFG scale when sampling z_t.
        ddim_steps: DDIM schedule length for z_t.
        attack_k: adversarial prefix tokens.
        attack_steps: inner steps (30; fast-AT: e.g. 3 signed steps).
        attack_lr: inner step size.
        fast: fast-AT variant (signed gradient steps).
        layers: which text-encoder layers train: "all" (every transformer block + final layer norm, the
            paper's default) or comma-separated block indices, e.g. "0" (the paper's first-layer ablation).
        sampling: where z_t comes from, as ESD's option (shared by the inner attack, the ESD term and the retain
            term): "trained" (default: a fresh partial trajectory every step, as the paper's code), "rolling"
            (trajectories of the model being trained, one DDIM step per training step) or "frozen" (a trajectory
            bank of the frozen model).
        bank_trajectories, bank_cache, pool_trajectories: ESD's options of the same names.
    """

    gamma: float = 0.5
    eta: float = 1.0
    guidance: float = 3.0
    ddim_steps: int = 50
    attack_k: int = 1
    attack_steps: int = 30
    attack_lr: float = 1e-3
    fast: bool = False
    layers: str = "all"
    sampling: str = "trained"
    bank_trajectories: int = 4
    bank_cache: bool = True
    pool_trajectories: int = 1


def advunlearn_selector(adapter: Any, c: AdvUnlearnConfig) -> Selector:
    """The trainable text-encoder weights of ``c.layers`` (indices checked against the model's config)."""
    if c.layers == "all":
        return resolve_selector("text-encoder")
    n = adapter.pipe.text_encoder.config.num_hidden_layers
    try:
        idx = sorted({int(i) for i in c.layers.split(",")})
    except ValueError:
        raise ValueError(f"AdvUnlearn layers must be 'all' or comma-separated block indices, got {c.layers!r}") from None
    if not idx or idx[0] < 0 or idx[-1] >= n:
        raise ValueError(f"AdvUnlearn layers {c.layers!r}: the text encoder has blocks 0..{n - 1}")
    return Selector(include=[rf"^text_encoder\..*encoder\.layers\.({'|'.join(map(str, idx))})\."])


def build_advunlearn(c: AdvUnlearnConfig, adapter: Any = None) -> Objective:
    return Objective([(1.0, esd_loss(c)),
                      (c.gamma, KL(split="retain"))])


def advunlearn_adversary(c: AdvUnlearnConfig) -> Any:
    """The inner maximisation: the registered ``advunlearn-prefix`` attack (the same object ``erasure audit`` runs)."""
    return get_attack("advunlearn-prefix", k=c.attack_k, steps=c.attack_steps, lr=c.attack_lr, fast=c.fast,
                      ddim_steps=c.ddim_steps, guidance=c.guidance)


@dataclass
class AdvUnlearnFastConfig(AdvUnlearnConfig):
    """AdvUnlearn with fast adversarial training: a few signed-gradient inner steps."""

    attack_steps: int = 3
    attack_lr: float = 1e-2
    fast: bool = True


_PAPER = "https://arxiv.org/abs/2405.15234"
ADVUNLEARN = Method("advunlearn", "diffusion", AdvUnlearnConfig, build_advunlearn, selector=advunlearn_selector,
                    train_defaults={"lr": 1e-5, "steps": 1000, "batch_size": 1, "optimizer": "adam",
                                    "adversary_warmup": 200},
                    paper=_PAPER, adversary=advunlearn_adversary)
ADVUNLEARN_FAST = Method("advunlearn-fast", "diffusion", AdvUnlearnFastConfig, build_advunlearn,
                         selector=advunlearn_selector, train_defaults=ADVUNLEARN.train_defaults, paper=_PAPER,
                         adversary=advunlearn_adversary)
