"""Per-step wall times of the unlearning loop, for the benches: every step builds one ``StepScores`` first, so the
times between those constructions (and the end) are the steps' durations."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator


@contextlib.contextmanager
def step_starts() -> Iterator[list[float]]:
    """Within the block, the loop's step start times (``time.perf_counter()``) collect in the yielded list; the
    block's end is appended last, so ``durations(starts)`` gives every step's seconds."""
    import erasure.loop as loop

    starts: list[float] = []
    real = loop.StepScores.__init__

    def stamp(self, *a, **k):
        starts.append(time.perf_counter())
        real(self, *a, **k)

    loop.StepScores.__init__ = stamp
    try:
        yield starts
    finally:
        loop.StepScores.__init__ = real
        starts.append(time.perf_counter())


def durations(starts: list[float]) -> list[float]:
    """Seconds of each step from ``step_starts``' list."""
    return [b - a for a, b in zip(starts, starts[1:])]
