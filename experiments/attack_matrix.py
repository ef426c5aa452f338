"""Every attack against every erasure method (and the smoothing defence) on mini-canvas: pre- and post-attack ASR.

    python experiments/attack_matrix.py --out out/attack-matrix                 # defaults below, ~1 h on 2 cores
    python experiments/attack_matrix.py --methods esd-x uce --attacks unlearndiff ring-a-bell --out out/am-small
    python experiments/attack_matrix.py --models out/advunlearn-all --resume --out out/attack-matrix

For each method and concept: `erasure erase` with the method's recommended mini-canvas settings (or the model already
at MODELS/<method>/<concept>/model, e.g. from canvas_benchmark.py), then one `erasure audit` with every attack
against it (targets and P4D's reference: the shipped model before erasure). Methods named in --smooth-methods get a
second row "<method>+smooth": the same erased model audited behind the smoothing defence (--smooth SIGMA, --smooth-n).
Writes results.json (after every audit; --resume keeps what is there), table.md (ASR pre -> post per method and
attack, mean over the concepts, and which attacks rank the methods differently) and matrix.png (post-attack ASR).
One model's row of the matrix is what `erasure audit --attack A B ...` writes to robustness.md for any model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python experiments/...`
from evals.report import add_table_options, markdown_table, publish_table, resumable_results, save_results  # noqa: E402
from experiments.canvas_benchmark import run_cli  # noqa: E402

ATTACKS = ["unlearndiff", "p4d", "p4d-k", "ring-a-bell", "cce", "random"]


def erased_model(method: str, concept: str, out: Path, models: Path | None, seed: int) -> Path:
    """The erased model's folder: MODELS/<method>/<concept>/model (canvas_benchmark.py's layout) or
    MODELS/<concept>/<method>/model (advunlearn_vs_esd.py's) when it exists, else erased into OUT."""
    for there in ([models / method / concept / "model", models / concept / method / "model"] if models else []):
        if (there / "erasure.json").is_file():
            return there
    model = out / "models" / method / concept / "model"
    if not (model / "erasure.json").is_file():
        run_cli(["erase", "--model", "mini-canvas", "--concept", concept, "--method", method, "--out", str(model),
                 "--seed", str(seed), "--overwrite"])
    return model


def audit(model: Path, concept: str, attacks: list[str], out: Path, seed: int, smooth: list[str]) -> dict:
    """One audit of ``model`` with every attack; {attack: {"pre", "post", "n", "seconds"}}."""
    run_cli(["audit", "--model", str(model), "--concept", concept, "--attack", *attacks, "--original", "mini-canvas",
             "--no-utility", "--seed", str(seed), "--out", str(out), "--overwrite", *smooth])
    summary = json.loads((out / "robustness.json").read_text())
    return {a: {"pre": r["pre_asr"], "post": r["post_asr"], "n": r["n"], "seconds": r["seconds"]}
            for a, r in summary["attacks"].items()}


def utility(model: Path, concept: str, out: Path, seed: int, smooth: list[str]) -> dict:
    """UA / IRA / CRA / FID of ``model`` (behind the defence with ``smooth``): a defence must keep the model useful."""
    run_cli(["eval", "--model", str(model), "--concept", concept, "--seed", str(seed), "--out", str(out), "--overwrite",
             *smooth])
    ev = json.loads((out / "eval.json").read_text())
    return {k: ev.get(k) for k in ("ua", "ira", "cra", "fid")}


def means(results: dict) -> dict:
    """row -> attack -> {"pre", "post"} averaged over the concepts the row has."""
    out = {}
    for row, by_concept in results.items():
        runs = [r for r in by_concept.values() if isinstance(r, dict) and "attacks" in r]
        attacks = list(dict.fromkeys(a for r in runs for a in r["attacks"]))
        out[row] = {a: {k: sum(r["attacks"][a][k] for r in runs if a in r["attacks"])
                        / sum(a in r["attacks"] for r in runs) for k in ("pre", "post")} for a in attacks}
    return out


def ranking_changes(mean: dict, margin: float = 0.1) -> list[str]:
    """Pairs of rows whose order by post-attack ASR flips between two attacks, each difference larger than
    ``margin`` (one prompt of ten is 0.1 of a concept's ASR: smaller gaps are noise, not a ranking)."""
    rows = list(mean)
    attacks = list(dict.fromkeys(a for r in rows for a in mean[r]))
    found = []
    for x, y in itertools.combinations(rows, 2):
        order = {a: mean[x][a]["post"] - mean[y][a]["post"] for a in attacks if a in mean[x] and a in mean[y]}
        lower = [a for a, d in order.items() if d < -margin]  # x more robust under these
        higher = [a for a, d in order.items() if d > margin]
        if lower and higher:
            found.append(f"{x} vs {y}: {x} more robust under {', '.join(lower)}; {y} under {', '.join(higher)}")
    return found


def table(results: dict, margin: float = 0.1) -> str:
    mean = means(results)
    attacks = list(dict.fromkeys(a for r in mean.values() for a in r))
    rows = [[row, len(results[row]), *(f"{mean[row][a]['pre']:.2f} -> {mean[row][a]['post']:.2f}"
                                       if a in mean[row] else "" for a in attacks)] for row in mean]
    per = [[row, c, *(f"{r['attacks'][a]['pre']:.2f} -> {r['attacks'][a]['post']:.2f}" if a in r["attacks"] else ""
                      for a in attacks)] for row, by in results.items() for c, r in by.items()]
    changes = ranking_changes(mean, margin) or [f"none: no two attacks rank two methods apart by more than {margin}"]
    kept = [[row, c, *(r["utility"].get(k) for k in ("ua", "ira", "cra", "fid"))]
            for row, by in results.items() for c, r in by.items() if r.get("utility")]
    return ("ASR pre-attack -> post-attack, mean over the concepts:\n\n"
            + markdown_table(["method", "concepts", *attacks], rows)
            + "\n\nPer concept:\n\n" + markdown_table(["method", "concept", *attacks], per)
            + f"\n\nRanking changes between attacks (post-attack ASR, mean over the concepts, gaps over {margin} "
            "each way):\n\n" + "\n".join(f"- {c}" for c in changes)
            + ("\n\nUtility behind the defence (unattacked):\n\n"
               + markdown_table(["row", "concept", "UA", "IRA", "CRA", "FID"], kept) if kept else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="*", default=["esd-x", "advunlearn", "uce", "ca"])
    p.add_argument("--concepts", nargs="*", default=["Impressionism", "Square"])
    p.add_argument("--attacks", nargs="*", default=ATTACKS)
    p.add_argument("--models", help="take erased models from MODELS/<method>/<concept>/model when there")
    p.add_argument("--smooth-methods", nargs="*", default=["esd-x"], help="methods also audited behind smoothing")
    p.add_argument("--smooth", type=float, default=1.0, help="the smoothing defence's sigma")
    p.add_argument("--smooth-n", type=int, default=2, help="the smoothing defence's perturbations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--margin", type=float, default=0.1, help="a ranking change needs gaps above this each way")
    add_table_options(p, "out/attack-matrix", "attack-matrix", kept="audits")
    args = p.parse_args()
    unknown = set(args.smooth_methods) - set(args.methods)
    if unknown:
        raise SystemExit(f"--smooth-methods {sorted(unknown)} are not among --methods")
    out = Path(args.out)
    done = out / "results.json"
    results = resumable_results(out, args.resume)
    smooth_flags = ["--smooth", str(args.smooth), "--smooth-n", str(args.smooth_n)]
    for method in args.methods:
        for concept in args.concepts:
            rows = [(method, [])] + ([(f"{method}+smooth", smooth_flags)] if method in args.smooth_methods else [])
            for row, flags in rows:
                setting = {"attack_names": args.attacks, "seed": args.seed, "smooth": flags, "models": args.models}
                earlier = results.get(row, {}).get(concept)
                if earlier is not None:
                    if {k: earlier[k] for k in setting} != setting:
                        raise SystemExit(f"--resume: {row} on {concept} in {done} ran with other attacks, seed or "
                                         "smoothing; give another --out")
                    continue
                model = erased_model(method, concept, out, Path(args.models) if args.models else None, args.seed)
                found = audit(model, concept, args.attacks, out / "audits" / row / concept, args.seed, flags)
                results.setdefault(row, {})[concept] = {**setting, "model": str(model), "attacks": found}
                if flags:  # the defence's cost in utility, beside its robustness
                    results[row][concept]["utility"] = utility(model, concept, out / "evals" / row / concept,
                                                               args.seed, flags)
                save_results(out, results)
                print(f"{row} {concept}: " + ", ".join(f"{a} {r['pre']:.2f}->{r['post']:.2f}"
                                                       for a, r in found.items()), flush=True)
    from erasure.plots import value_matrix

    publish_table(out, table(results, args.margin), args.readme, "attack-matrix")
    value_matrix({row: {a: r["post"] for a, r in by.items()} for row, by in means(results).items()},
                 out / "matrix.png", title="post-attack ASR (mean over concepts)")
    print(table(results, args.margin))


if __name__ == "__main__":
    main()
