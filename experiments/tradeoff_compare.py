"""Does a variant beat a dense baseline on the forget / retain trade-off? Seeds resampled, not eyeballed.

    python experiments/tradeoff_compare.py --concept Neon \\
        --candidate "Sophia 3e-5=out/tu12/sophia-3e5-s0/results.json,out/tu12/sophia-3e5-s6/results.json" \\
        --baseline "Adam 8e-5=out/tu12/adam-8e5-s0/results.json,out/tu12/adam-8e5-s6/results.json" \\
        --baseline "Adam 1e-4=out/tu12/adam-1e4-s0/results.json,out/tu12/adam-1e4-s6/results.json"

Each row is one or more ``results.json`` of `experiments/canvas_esd.py` (runs merged by erase seed; a seed in two
files is an error). The dense baseline's rows (several lrs) make a curve: retain metric against forget metric, the
rows' means joined by straight lines. The candidate's gap is its mean retain metric minus the curve at its mean
forget level ("same forget level, better retain"). Its uncertainty: the seeds are resampled with replacement
(bootstrap; the same seeds for every row, since rows share their erase seeds) and the gap recomputed; the script
prints the gap, its 95% interval and the share of resamples where the candidate is not better. A resample whose
candidate forget level falls outside the baseline's range is counted and reported (the curve is then held at its end
point, not extrapolated).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from erasure.files import atomic_write_text


def interpolate_at(x: float, xs: Sequence[float], ys: Sequence[float]) -> tuple[float, bool]:
    """The curve through the points (xs, ys), sorted by x and joined by straight lines, at ``x``.

    Args:
        x: where to read the curve.
        xs, ys: the baseline's points (at least two; their order does not matter).

    Returns:
        (value, inside): the value, held at the nearest end point when ``x`` lies outside [min xs, max xs], and
        whether it lay inside.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"a baseline curve needs two or more points with one y each, got {len(xs)} x and {len(ys)} y")
    order = np.argsort(np.asarray(xs, dtype=float), kind="stable")
    sx, sy = np.asarray(xs, dtype=float)[order], np.asarray(ys, dtype=float)[order]
    return float(np.interp(x, sx, sy)), bool(sx[0] <= x <= sx[-1])


def tradeoff_gap(candidate: np.ndarray, baselines: Sequence[np.ndarray], *, forget: int = 0, resamples: int = 10000,
                 seed: int = 0) -> dict:
    """The candidate's retain metrics minus the dense curve's at the candidate's forget level, with a bootstrap.

    Args:
        candidate: (seeds, metrics) per-seed values of the candidate row.
        baselines: per dense row (e.g. one lr each), (seeds, metrics) in the same seed order as ``candidate``.
        forget: the column that measures forgetting (the x of the curve); every other column is a retain metric.
        resamples: bootstrap resamples of the seeds (0: the point estimate only).
        seed: the bootstrap's generator seed.

    Returns:
        {"gap": per column (the forget column's entry is 0), "ci95": per column [low, high], "not_better": per column
        the share of resamples with gap <= 0, "outside": the share of resamples whose candidate forget level left the
        baseline's range, "n_seeds"}.
    """
    cand = np.asarray(candidate, dtype=float)
    base = [np.asarray(b, dtype=float) for b in baselines]
    if any(b.shape != cand.shape for b in base):
        raise ValueError(f"every row needs the candidate's (seeds, metrics) shape {cand.shape}, got "
                         f"{[b.shape for b in base]}")

    def gap(idx: np.ndarray) -> tuple[np.ndarray, bool]:
        c = cand[idx].mean(0)
        means = np.stack([b[idx].mean(0) for b in base])  # (rows, metrics)
        xs = means[:, forget]
        out = np.zeros(cand.shape[1])
        for k in range(cand.shape[1]):
            if k != forget:
                out[k] = c[k] - interpolate_at(c[forget], xs, means[:, k])[0]
        return out, bool(xs.min() <= c[forget] <= xs.max())

    n = cand.shape[0]
    point, _ = gap(np.arange(n))
    rng = np.random.default_rng(seed)
    draws, outside = [], 0
    for _ in range(resamples):
        g, inside = gap(rng.integers(0, n, n))
        draws.append(g)
        outside += not inside
    draws = np.asarray(draws) if draws else point[None]
    return {"gap": point.tolist(), "ci95": np.percentile(draws, [2.5, 97.5], axis=0).T.tolist(),
            "not_better": (draws <= 0).mean(0).tolist(), "outside": outside / max(resamples, 1), "n_seeds": n}


def load_runs(paths: Sequence[str], concept: str, keys: Sequence[str]) -> dict[int, list[float]]:
    """Per erase seed, the ``keys`` of the runs in `canvas_esd.py` results files (merged; a seed twice is an error)."""
    runs: dict[int, list[float]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        if concept not in data:
            raise ValueError(f"{path}: no concept {concept!r} (it has {sorted(data)})")
        for r in data[concept]["runs"]:
            if r["seed"] in runs:
                raise ValueError(f"{path}: erase seed {r['seed']} is already in another file of this row")
            runs[r["seed"]] = [float(r["after"][k]) for k in keys]
    return runs


def parse_row(text: str) -> tuple[str, list[str]]:
    name, sep, files = text.partition("=")
    if not sep or not files:
        raise ValueError(f"a row is NAME=results.json[,more.json], got {text!r}")
    return name, files.split(",")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concept", required=True)
    p.add_argument("--candidate", required=True, help="NAME=results.json[,more.json]")
    p.add_argument("--baseline", action="append", required=True, help="NAME=results.json[,...], one per dense row")
    p.add_argument("--keys", nargs="+", default=["ua", "ira", "cra"], help="the forget metric first, then retain")
    p.add_argument("--resamples", type=int, default=10000)
    p.add_argument("--out", default=None, help="write the result as JSON here (a new file)")
    args = p.parse_args()
    if args.out and Path(args.out).exists():
        p.error(f"--out {args.out} exists; choose another path")
    try:
        rows = [parse_row(args.candidate)] + [parse_row(b) for b in args.baseline]
        runs = [load_runs(files, args.concept, args.keys) for _, files in rows]
    except (ValueError, OSError, KeyError) as e:
        p.error(str(e))
    seeds = sorted(set.intersection(*(set(r) for r in runs)))
    if len(seeds) < 2:
        p.error(f"the rows share {len(seeds)} erase seed(s); the comparison needs two or more")
    arrays = [np.array([r[s] for s in seeds]) for r in runs]
    result = tradeoff_gap(arrays[0], arrays[1:], resamples=args.resamples)
    result.update({"seeds": seeds, "keys": args.keys, "rows": {name: arr.mean(0).tolist()
                                                              for (name, _), arr in zip(rows, arrays)}})
    lines = [f"erase seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}); means ({', '.join(args.keys)}):"]
    lines += [f"  {name}: " + " / ".join(f"{v:.3f}" for v in arr.mean(0)) for (name, _), arr in zip(rows, arrays)]
    for k, key in enumerate(args.keys[1:], start=1):
        lo, hi = result["ci95"][k]
        lines.append(f"{key}: {rows[0][0]} minus the dense curve at its {args.keys[0]} = {result['gap'][k]:+.3f} "
                     f"(95% interval {lo:+.3f} to {hi:+.3f}; not better in {result['not_better'][k]:.1%} of "
                     f"resamples)")
    lines.append(f"resamples whose candidate left the dense curve's {args.keys[0]} range: {result['outside']:.1%}")
    print("\n".join(lines))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2), overwrite=False)


if __name__ == "__main__":
    main()
