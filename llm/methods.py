"""LLM unlearning methods that need more than per-example likelihoods: IdkPO, RMU, UGradSL.

GA / GradDiff / NPO / SimNPO are modality-agnostic and live in ``erasure.methods``; these reuse the core
terms (``PreferenceOptimization``, ``LabelSmoothedGA``, ``NLL``, ``KL``) and add RMU's activation terms.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from erasure.objectives import NLL, LabelSmoothedGA, Objective, PreferenceOptimization, StepScores, retain_term
from erasure.registry import Method
from erasure.selectors import Selector

REFUSALS = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information about that.",
    "That is not something I can answer.",
)


# ---------------------------------------------------------------------------------------------- IdkPO
@dataclass
class IdkPOConfig:
    """IdkPO: DPO with a refusal preferred over the forget answer (TOFU, Maini et al. 2024).

    Args:
        beta: DPO inverse temperature.
        retain_weight: weight of the retain term.
        retain_loss: "nll" or "kl".
        refusals: the preferred answers (one is picked per question, deterministically).
    """

    beta: float = 0.1
    retain_weight: float = 1.0
    retain_loss: str = "nll"
    refusals: list[str] = field(default_factory=lambda: list(REFUSALS))


def with_refusals(refusals: Sequence[str]):
    """Rows -> the same questions with a refusal as the answer (stable choice per question)."""
    if not refusals:
        raise ValueError("IdkPO needs at least one refusal string")

    def transform(rows: Sequence[dict]) -> list[dict]:
        return [{**r, "answer": refusals[zlib.crc32(r["question"].encode()) % len(refusals)]} for r in rows]

    return transform


def build_idkpo(c: IdkPOConfig, adapter: Any = None) -> Objective:
    return Objective([(1.0, PreferenceOptimization(with_refusals(c.refusals), beta=c.beta, name="idkpo")),
                      (c.retain_weight, retain_term(c.retain_loss))])


# ---------------------------------------------------------------------------------------------- UGradSL
@dataclass
class UGradSLConfig:
    """UGradSL: gradient ascent with negative label smoothing on forget, cross-entropy on retain.

    Args:
        smoothing: the (negative) label-smoothing rate alpha.
        retain_weight: weight of the retain cross-entropy.
    """

    smoothing: float = -0.5
    retain_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.smoothing >= 0:
            raise ValueError(f"UGradSL uses a negative smoothing rate, got {self.smoothing}")


def build_ugradsl(c: UGradSLConfig, adapter: Any = None) -> Objective:
    return Objective([(1.0, LabelSmoothedGA(smoothing=c.smoothing)), (c.retain_weight, NLL())])


# ---------------------------------------------------------------------------------------------- RMU
def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens and hidden dims of (a - b)^2; a, b (B, T, D), mask (B, T)."""
    m = mask.to(a.dtype)[..., None]  # (B, T, 1)
    return ((a - b).pow(2) * m).sum() / (m.sum() * a.shape[-1]).clamp_min(1)


@dataclass
class RMUForget:
    """Push layer-l activations on forget data towards c * u, u a fixed random unit vector (Li et al. 2024,
    WMDP, https://arxiv.org/abs/2403.03218)."""

    layer: int
    steering_coef: float = 6.5
    seed: int = 0
    split: str = "forget"
    name: str = "rmu_forget"
    needs_reference: bool = False

    def control_vector(self, width: int, device: torch.device) -> torch.Tensor:
        u = torch.rand(width, generator=torch.Generator().manual_seed(self.seed))  # (D,)
        return (u / u.norm()).to(device)

    def __call__(self, s: StepScores) -> torch.Tensor:
        h, mask = s.adapter.hidden_states(s.batch(self.split), self.layer)  # (B, T, D)
        target = self.steering_coef * self.control_vector(h.shape[-1], h.device)
        return _masked_mse(h, target.expand_as(h), mask)


@dataclass
class RMURetain:
    """Keep layer-l activations on retain data equal to the frozen model's."""

    layer: int
    split: str = "retain"
    name: str = "rmu_retain"
    needs_reference: bool = True

    def __call__(self, s: StepScores) -> torch.Tensor:
        batch = s.batch(self.split)
        with torch.no_grad(), s.require_reference().active():
            ref, _ = s.adapter.hidden_states(batch, self.layer)
        h, mask = s.adapter.hidden_states(batch, self.layer)
        return _masked_mse(h, ref, mask)


@dataclass
class RMUConfig:
    """RMU options.

    Args:
        layer: the steered layer (default: ~7/32 of the depth, the paper's layer 7 of 32).
        steering_coef: c (6.5 for 7B models; scale with the model's activation norms).
        alpha: retain weight (1200).
        seed: seeds the control vector u.
    """

    layer: int | None = None
    steering_coef: float = 6.5
    alpha: float = 1200.0
    seed: int = 0


def rmu_layer(adapter: Any, c: RMUConfig) -> int:
    n = adapter.model.config.num_hidden_layers
    return c.layer if c.layer is not None else max(0, round(7 * n / 32))


def build_rmu(c: RMUConfig, adapter: Any = None) -> Objective:
    layer = rmu_layer(adapter, c) if adapter is not None else (c.layer or 0)
    return Objective([(1.0, RMUForget(layer, c.steering_coef, c.seed)), (c.alpha, RMURetain(layer))])


def rmu_selector(adapter: Any, c: RMUConfig) -> Selector:
    """The paper updates the MLPs of layers l-2..l only."""
    layer = rmu_layer(adapter, c)
    layers = "|".join(str(i) for i in range(max(0, layer - 2), layer + 1))
    return Selector(include=[rf"\.(layers|h)\.({layers})\.mlp\."])


_DEFAULTS = {"lr": 1e-5, "optimizer": "adamw"}
IDKPO = Method("idkpo", "llm", IdkPOConfig, build_idkpo, train_defaults=_DEFAULTS,
               paper="https://arxiv.org/abs/2401.06121")
UGRADSL = Method("ugradsl", "llm", UGradSLConfig, build_ugradsl, train_defaults=_DEFAULTS,
                 paper="https://arxiv.org/abs/2406.09173")
RMU = Method("rmu", "llm", RMUConfig, build_rmu, selector=rmu_selector, train_defaults={"lr": 5e-5, "optimizer": "adamw"},
             paper="https://arxiv.org/abs/2403.03218")
