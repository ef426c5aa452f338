"""Modality-agnostic methods built only from core loss terms (they run on any adapter)."""

from __future__ import annotations

from dataclasses import dataclass

from erasure.guard import ECOConfig, eco_selector, solve_eco
from erasure.objectives import NPO, GradientAscent, Objective, SimNPO, retain_term
from erasure.registry import Method


@dataclass
class GAConfig:
    """Gradient ascent has no options."""


@dataclass
class GradDiffConfig:
    """GradDiff: -NLL_forget + alpha * retain term.

    Args:
        alpha: retain weight.
        retain_loss: "nll" (likelihood on retain) or "kl" (KL to the reference on retain).
    """

    alpha: float = 1.0
    retain_loss: str = "nll"


@dataclass
class NPOConfig:
    """NPO options (Zhang et al. 2024).

    Args:
        beta: inverse temperature (paper: 0.1).
        retain_weight: weight of the retain term (0 disables it).
        retain_loss: "nll" or "kl".
    """

    beta: float = 0.1
    retain_weight: float = 1.0
    retain_loss: str = "nll"


@dataclass
class SimNPOConfig:
    """SimNPO options (Fan et al. 2024); defaults are the TOFU forget10 ones.

    Args:
        beta: inverse temperature (4.5).
        gamma: reward margin (0).
        forget_weight: weight of the forget term (0.125).
        retain_weight: weight of the retain term (1).
        retain_loss: "nll" or "kl".
    """

    beta: float = 4.5
    gamma: float = 0.0
    forget_weight: float = 0.125
    retain_weight: float = 1.0
    retain_loss: str = "nll"


GA = Method(
    name="ga", modality="any", config_cls=GAConfig,
    build=lambda c, adapter=None: Objective([(1.0, GradientAscent())]),
    train_defaults={"lr": 1e-5, "optimizer": "adamw"},
    paper="https://arxiv.org/abs/2210.01504",
)
GRADDIFF = Method(
    name="graddiff", modality="any", config_cls=GradDiffConfig,
    build=lambda c, adapter=None: Objective([(1.0, GradientAscent()), (c.alpha, retain_term(c.retain_loss))]),
    train_defaults={"lr": 1e-5, "optimizer": "adamw"},
    paper="https://arxiv.org/abs/2401.06121",
)
NPO_METHOD = Method(
    name="npo", modality="any", config_cls=NPOConfig,
    build=lambda c, adapter=None: Objective([(1.0, NPO(beta=c.beta)), (c.retain_weight, retain_term(c.retain_loss))]),
    train_defaults={"lr": 1e-5, "optimizer": "adamw"},
    paper="https://arxiv.org/abs/2404.05868",
)
SIMNPO_METHOD = Method(
    name="simnpo", modality="any", config_cls=SimNPOConfig,
    build=lambda c, adapter=None: Objective([(c.forget_weight, SimNPO(beta=c.beta, gamma=c.gamma)),
                               (c.retain_weight, retain_term(c.retain_loss))]),
    train_defaults={"lr": 1e-5, "optimizer": "adamw"},
    paper="https://arxiv.org/abs/2410.07163",
)
ECO = Method(
    name="eco", modality="any", config_cls=ECOConfig, build=None, selector=eco_selector, solve=solve_eco,
    paper="https://arxiv.org/abs/2406.07933",
)
