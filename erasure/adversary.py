"""The Adversary protocol: one object is both the inner maximisation of adversarial unlearning and the
attack of an audit.

An adversary rewrites a batch (prompt embeddings, prefix tokens, fine-tuning data...) so that the model
shows the forgotten concept again. During adversarial training (AdvUnlearn, or any method with
``erase(..., adversary=NAME)``) the loop calls it on every forget batch after warm-up and trains on what it
returns; during an audit ``evals.robustness`` calls it on the audit's rows and asks a judge whether the concept
came back. Attacks are registered in ``erasure.registry`` (``get_attack(name, **options)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing the protocols stays cheap (the CLI's --help)
    import torch

# (outputs of ``adapter.generate`` -- images (B, 3, H, W) or texts -- and the rows they answer) -> concept present?
Judge = Callable[[Any, Sequence[Any]], list[bool]]


@dataclass
class AttackResult:
    """What an attack produced.

    Args:
        batch: the adversarial batch (same type the adapter's ``collate`` makes), ready to score or generate
            from (its ``prefix`` carries a prompt perturbation).
        success: per example of the batch, whether the judge saw the concept; None for an example the attack
            used as data and did not judge (relearning); the whole list None when no judge was asked.
        trace: the attack objective after each iteration (lower = stronger attack).
        info: anything else worth reporting (adversarial prompt text, steps taken, seconds).
    """

    batch: Any
    success: list[bool | None] | None = None
    trace: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Adversary(Protocol):
    """``attack(adapter, batch, generator, reference=..., judge=...) -> AttackResult``.

    Attributes:
        name: its registry name.
        modality: "any", or the modality whose adapters it attacks.
        per_example: True when it attacks one example at a time (UnlearnDiff: a prefix per prompt), so an audit
            calls it once per row; False when it attacks the whole set at once (a universal soft prompt).
        needs_reference: True when it needs the frozen original (``reference``): adversarial training always has
            one; an audit builds it from ``--original``. An attack may also set ``uses_reference = True``: it uses the
            original when the audit has one (Ring-A-Bell's text encoder) and works without it.

    ``batch`` is what ``adapter.collate(rows)`` made (it carries the rows' text: prompts, or ``rows`` with the
    questions and answers for LLMs). ``judge(outputs, rows) -> [concept present?]`` takes what
    ``adapter.generate(rows, prefix=...)`` returns. An attack must not change the model's weights.

    A ``per_example`` attack may also offer ``attack_each(adapter, batches, generators, seeds, *, reference,
    judge) -> [AttackResult]``: every example at once (one batch per example, its own generator and seed), each
    result the one ``attack`` gives on that example alone; an audit then makes one call for all its rows.
    """

    name: str
    modality: str
    per_example: bool
    needs_reference: bool

    def attack(self, adapter: Any, batch: Any, generator: torch.Generator, *, reference: Any = None,
               judge: Any = None) -> AttackResult: ...


FIXED_DRAW_SEED = 10_000  # the seeds of fixed_draws: far from any training or evaluation seed


def fixed_draws(objective: Callable[[int], "torch.Tensor"], draws: int = 4) -> "torch.Tensor":
    """An attack's objective averaged over ``draws`` fixed (t, noise) draws, so its value before and after the
    attack compare: ``objective(seed)`` draws its randomness from ``seed`` (seeds 10_000, 10_001, ...), no gradient.

    Args:
        objective: seed -> the objective (any shape) computed with randomness drawn from that seed.
        draws: how many seeds to average over.

    Returns:
        The mean over the draws, detached.
    """
    import torch

    with torch.no_grad():
        return sum(objective(FIXED_DRAW_SEED + d) for d in range(draws)) / draws
