"""The row shapes the causal-LM adapter reads (``CausalLMAdapter.collate`` / ``generate``), built in one place.
Torch-free: benchmarks import it while the CLI parses."""

from __future__ import annotations

import zlib
from typing import Sequence


def qa_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows reduced to their ``question`` and ``answer`` (what training and likelihood scores read)."""
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


def plain_rows(rows: Sequence[dict]) -> list[dict]:
    """Passage rows -> plain-text rows: the prefix is continued as it is (no chat template, no end token)."""
    return [{"question": r["question"], "answer": r["answer"], "plain": True} for r in rows]


def random_answers(k: int):
    """(batch rows, a pool of rows) -> each question answered by ``k`` of the pool's answers other than its own
    (fixed per question by a hash of it, so a resumed run repeats; the pool's order and duplicates do not matter).
    SKU draws from the other harmful answers, Yao et al.'s random mismatch from the normal ones."""

    def transform(rows: Sequence[dict], pool: Sequence[dict]) -> list[dict]:
        answers = sorted({r["answer"] for r in pool})
        out = []
        for r in rows:
            others = [a for a in answers if a != r["answer"]]
            if not others:
                raise ValueError("random answers need at least one answer in the pool other than the row's own")
            h = zlib.crc32(r["question"].encode())
            out += [{**r, "answer": others[(h + j) % len(others)]} for j in range(k)]
        return out

    return transform
