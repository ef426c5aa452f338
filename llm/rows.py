"""The row shapes the causal-LM adapter reads (``CausalLMAdapter.collate`` / ``generate``), built in one place.
Torch-free: benchmarks import it while the CLI parses."""

from __future__ import annotations

from typing import Sequence


def qa_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows reduced to their ``question`` and ``answer`` (what training and likelihood scores read)."""
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def plain_rows(rows: Sequence[dict]) -> list[dict]:
    """Passage rows -> plain-text rows: the prefix is continued as it is (no chat template, no end token)."""
    return [{"question": r["question"], "answer": r["answer"], "plain": True} for r in rows]
