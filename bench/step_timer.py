"""Per-step wall times of the unlearning loop, for the benches: every step builds one ``StepScores`` first, so the
times between those constructions (and the end) are the steps' durations. Also the memory benches' sampler of
peak resident memory per phase."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Iterator


def phase_peaks(interval: float = 0.01) -> tuple[list[str], dict[str, int]]:
    """Start a daemon thread that samples this process's resident set (/proc/self/statm, Linux) every ``interval``
    seconds. Returns ``phase`` (a one-item list: set ``phase[0]`` to name the phase now running, "imports" at first)
    and ``peaks`` (phase name -> the highest resident bytes seen while it ran)."""
    phase, peaks = ["imports"], {}

    def sample() -> None:
        while True:
            now, name = int(Path("/proc/self/statm").read_text().split()[1]) * 4096, phase[0]
            peaks[name] = max(peaks.get(name, 0), now)
            time.sleep(interval)

    threading.Thread(target=sample, daemon=True).start()
    return phase, peaks


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
