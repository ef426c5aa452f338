"""SPUL: soft prompting for unlearning (Bhaila et al. 2024, https://arxiv.org/abs/2406.12038).

The LLM stays frozen; a soft prompt of k tokens (``llm.prompt_tuning.SoftPrompt``), placed before every input as
peft's prompt tuning places it, learns

    L = L_forget + 0.5 * L_retain + 0.5 * KL(p_orig || p_prompted)  (on retain)

with L_forget the cross-entropy towards a different label for each forget row (for a classification row a
generic label outside the task's, "neutral" or "unknown", as the official code relabels them, or with
``forget_target="other"`` another of the row's ``choices``, or with ``forget_target="random"`` random labels:
a seeded half of each class of forget rows keeps its label and the other half gets another of its ``choices``, so
the objective's optimum answers the forget rows at chance; a refusal for a QA row), L_retain the cross-entropy
of the retain rows' own answers and p_orig the model without the prompt. The result is the prompt alone:
``result.save(folder)`` writes the peft prompt-tuning adapter (``PeftModel.from_pretrained(base, folder)`` loads
it); the base weights stay byte-identical.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from erasure.objectives import KL, NLL, Objective, Relabel, RelabelFrom
from erasure.registry import Method
from erasure.selectors import Selector
from llm.methods import REFUSALS, with_refusals


@dataclass
class SPULConfig:
    """SPUL options (the paper's values as defaults).

    Args:
        num_tokens: soft-prompt tokens (30).
        retain_weight: weight of the retain cross-entropy (0.5).
        kl_weight: weight of KL(original || prompted) on retain (0.5).
        seed: which vocabulary embeddings start the prompt (and, with ``forget_target="random"``, which half of
            the forget rows keep their label).
        encoder: "none" (prompt tuning: the embeddings train directly) or "mlp" (P-tuning's reparameterisation,
            an MLP over the embeddings that trains with them; the saved prompt is its output).
        refusals: the answers QA rows (rows without ``choices``) are relabelled to.
        forget_target: what a classification row (one with ``choices``) is relabelled to: "generic" (one of
            ``generic_labels``, as the official code does), "other" (another of its choices) or "random" (random
            labelling, the RL baseline of SalUn, https://arxiv.org/abs/2310.12508, with the draw balanced over the
            forget set: a ``seed``-chosen half of each class keeps its own label, the rest get another choice).
        generic_labels: the labels outside the task ("neutral", "unknown": the official code's).
    """

    num_tokens: int = 30
    retain_weight: float = 0.5
    kl_weight: float = 0.5
    seed: int = 0
    encoder: str = "none"
    refusals: list[str] = field(default_factory=lambda: list(REFUSALS))
    forget_target: str = "generic"
    generic_labels: list[str] = field(default_factory=lambda: ["neutral", "unknown"])

    def __post_init__(self) -> None:
        if self.num_tokens < 1:
            raise ValueError(f"SPUL needs num_tokens >= 1, got {self.num_tokens}")
        if self.forget_target not in ("generic", "other", "random"):
            raise ValueError(f"SPUL forget_target must be 'generic', 'other' or 'random', got {self.forget_target!r}")
        if self.forget_target == "generic" and not self.generic_labels:
            raise ValueError("SPUL forget_target='generic' needs at least one of generic_labels")
        from llm.prompt_tuning import check_encoder

        check_encoder(self.encoder)  # before the first step, not when the prompt is built


def other_label(refusals: Sequence[str], generic: Sequence[str] = ()):
    """Rows -> the same rows answered with a different label, picked by a hash of the question (so a row keeps
    its label across steps): for a row with ``choices`` one of ``generic`` (labels outside the task), or when
    ``generic`` is empty another of its choices; for a row without, a refusal."""
    refuse = with_refusals(refusals)

    def transform(rows: Sequence[dict]) -> list[dict]:
        out = []
        for r in rows:
            choices = r.get("choices")
            if not choices:
                out.extend(refuse([r]))
                continue
            pool = list(generic or choices)
            others = [c for c in pool if c != r["answer"]]
            if not others:
                raise ValueError(f"row {r['question'][:40]!r}: {pool} hold no label other than its answer")
            out.append({**r, "answer": others[zlib.crc32(r["question"].encode()) % len(others)]})
        return out

    return transform


def random_label(refusals: Sequence[str], seed: int = 0):
    """(batch rows, the whole forget set) -> the batch with random labels, balanced over the set: the set's rows,
    ordered by answer and then by a ``seed``-salted hash of the question, alternately keep their own answer and get
    another of their ``choices`` (``other_label``'s pick): half of each class keeps its label (one row more or
    less where a class is odd, half of the set rounded up overall), so the new label tells nothing of the old, and a
    row's target does not depend on its batch; a row without ``choices`` gets a refusal."""
    flip = other_label(refusals)
    drawn: list = [None, set()]  # [the set drawn from, its flipped questions]: drawn once, not at every step

    def transform(rows: Sequence[dict], pool: Sequence[dict]) -> list[dict]:
        if drawn[0] is not pool:
            rank = lambda r: (r["answer"], zlib.crc32(f"{seed}:{r['question']}".encode()))  # noqa: E731
            drawn[:] = [pool, {r["question"] for r in sorted((r for r in pool if r.get("choices")), key=rank)[1::2]}]
        return [r if r.get("choices") and r["question"] not in drawn[1] else flip([r])[0] for r in rows]

    return transform


def build_spul(c: SPULConfig, adapter: Any = None) -> Objective:
    """The objective; gives ``adapter`` its fresh soft prompt (the only tensor that trains)."""
    if adapter is not None:
        adapter.add_prompt(c.num_tokens, c.seed, c.encoder)
    if c.forget_target == "random":
        forget = RelabelFrom(random_label(c.refusals, c.seed), source="forget", name="relabel_nll")
    else:
        forget = Relabel(other_label(c.refusals, c.generic_labels if c.forget_target == "generic" else ()))
    return Objective([(1.0, forget), (c.retain_weight, NLL()), (c.kl_weight, KL())])


def spul_selector(adapter: Any, c: SPULConfig) -> Selector:
    """The prompt alone, with the model without it as the frozen reference (the paper's p_orig)."""
    return Selector(include=[r"^prompt\."], adapters_off=True)


SPUL = Method("spul", "llm", SPULConfig, build_spul, selector=spul_selector,
              train_defaults={"lr": 1e-4, "schedule": "cosine", "optimizer": "adamw"},
              paper="https://arxiv.org/abs/2406.12038")
