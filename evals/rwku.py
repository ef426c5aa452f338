"""mini-RWKU metrics (after RWKU, Jin et al. 2024, https://arxiv.org/abs/2406.10890): answer match of probes and
perplexity. Pure functions over generated answers / summed NLLs.

Registered (at import of this module): ``rwku_answer_match``, ``perplexity``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Sequence

from evals.metrics import register_metric


def normalise(text: str) -> str:
    """Lower case, Unicode NFKD without accents (so "mc²" reads "mc2", "Léonard" "leonard"), every
    non-alphanumeric run replaced by one space, padded with spaces (for whole-word search)."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()
    return " " + re.sub(r"[^0-9a-z]+", " ", text).strip() + " "


def answered(answer: str, accepted: Sequence[str]) -> bool:
    """Whether one of the ``accepted`` answers appears in ``answer`` as whole words (both ``normalise``d)."""
    text = normalise(answer)
    return any(normalise(a) in text for a in accepted)


@register_metric("rwku_answer_match")
def answer_match(answers: Sequence[str], accepted: Sequence[Sequence[str]]) -> dict:
    """Share of probes answered: answer i counts when one of ``accepted[i]`` appears in it as whole words.

    Args:
        answers: N generated answers.
        accepted: N lists of accepted answers.

    Returns:
        ``{"agg_value": share answered, "value_by_index": N 0/1 values}``.
    """
    if len(answers) != len(accepted):
        raise ValueError(f"{len(answers)} answers but {len(accepted)} accepted-answer lists")
    values = [float(answered(a, acc)) for a, acc in zip(answers, accepted)]
    return {"agg_value": sum(values) / len(values) if values else float("nan"), "value_by_index": values}


@register_metric("perplexity")
def perplexity(nll_sums: Sequence[float], token_counts: Sequence[int]) -> dict:
    """Perplexity over a set of texts: exp(total NLL / total predicted tokens).

    Args:
        nll_sums: per text, the summed next-token NLL.
        token_counts: per text, how many tokens were predicted.

    Returns:
        ``{"agg_value": perplexity, "value_by_index": per-text perplexities}``.
    """
    if len(nll_sums) != len(token_counts) or not nll_sums:
        raise ValueError("perplexity needs as many token counts as NLL sums, and at least one text")
    if any(n <= 0 for n in token_counts):
        raise ValueError("every text must predict at least one token")
    total = math.exp(sum(nll_sums) / sum(token_counts))
    return {"agg_value": total, "value_by_index": [math.exp(s / n) for s, n in zip(nll_sums, token_counts)]}
