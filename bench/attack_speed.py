"""UnlearnDiff audit speed, side by side in one run: the prompts attacked one at a time (``attack`` per row, as
audits did before) and all at once (``attack_each``: one UNet call per iteration for every prompt still running,
one batched generation per check). Same models, rows, seeds and settings (the AdvUnlearn-vs-ESD comparison's
audit: discrete UnlearnDiff, k = 5, 100 iterations, judged every 10); prints the audit seconds, their ratio, and
the pre/post ASR of both, with the rows whose verdicts differ; asserts nothing.

    python bench/attack_speed.py                                  # mini-canvas: erase Impressionism with esd-x and
                                                                  # advunlearn (recommended settings), audit both
    python bench/attack_speed.py --concept Square --models out/cmp/Square/esd-x/model   # already erased models
    python bench/attack_speed.py --work out/attack-speed      # keep the erased models there (reused when present)

Against older code: copy this file into a checkout of it and run ``--modes one_at_a_time --models ...`` there (an
``audit_attack`` without ``batched`` attacks one row at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: experiments/


def audit_both(modality, model: str, original: str, concept: str, n: int, seed: int, options: dict,
               modes: list[str]) -> dict:
    """Audit ``model`` with UnlearnDiff one prompt at a time, then batched; seconds, ASR and verdicts of both."""
    import inspect

    from erasure.registry import get_benchmark
    from evals.robustness import audit_attack, build_attacks

    attack = build_attacks(["unlearndiff"], options, seed=seed, modality=modality.name)["unlearndiff"]
    adapter = modality.load(model)
    plan = get_benchmark(modality.default_benchmark, modality.name).prepare_audit(
        adapter, original=modality.load(original), seed=seed, n=n, concept=concept)
    runs = {}
    older = "batched" not in inspect.signature(audit_attack).parameters  # code from before batched audits
    for mode in modes:
        t0 = time.perf_counter()
        kw = {} if older else {"batched": mode == "batched"}
        rec = audit_attack(adapter, plan.rows, attack, plan.judge, seed=seed, **kw)
        runs[mode] = {"seconds": round(time.perf_counter() - t0, 2), "pre_asr": rec["pre_asr"],
                      "post_asr": rec["post_asr"], "n": rec["n"],
                      "verdicts": [e["success"] for e in rec["per_example"]],
                      "steps": [e["steps"] for e in rec["per_example"]]}
        print(f"[attack_speed] {Path(model).parent.name or model} {mode}: {runs[mode]['seconds']} s, "
              f"ASR {rec['pre_asr']:.2f} -> {rec['post_asr']:.2f}, steps {runs[mode]['steps']}", flush=True)
    if len(runs) < 2:
        return runs
    one, bat = runs["one_at_a_time"], runs["batched"]
    return {**runs, "time_ratio": round(bat["seconds"] / one["seconds"], 3),
            "post_asr_difference": round(bat["post_asr"] - one["post_asr"], 3),
            "rows_with_other_verdict": [i for i, (a, b) in enumerate(zip(one["verdicts"], bat["verdicts"])) if a != b]}


def main() -> None:
    from erasure import erase
    from erasure.registry import modality_for
    from experiments.advunlearn_vs_esd import ATTACK_OPTIONS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini-canvas", help="the original model")
    p.add_argument("--concept", default="Impressionism")
    p.add_argument("--methods", nargs="+", default=["esd-x", "advunlearn"], help="erase with these, then audit")
    p.add_argument("--models", nargs="+", help="audit these erased model folders instead of erasing")
    p.add_argument("--n", type=int, default=10, help="prompts audited")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="save the erased models here (default: a temporary folder); reused when present")
    p.add_argument("--modes", nargs="+", default=["one_at_a_time", "batched"],
                   choices=["one_at_a_time", "batched"])
    p.add_argument("--out", help="write the report as JSON here")
    args = p.parse_args()

    modality = modality_for(args.model)
    work = tempfile.TemporaryDirectory()
    models = list(args.models or [])
    for method in ([] if args.models else args.methods):
        t0 = time.perf_counter()
        path = str(Path(args.work or work.name) / args.concept / method / "model")
        if Path(path).exists():
            models.append(path)
            continue
        erase(modality.load(args.model), concept=args.concept, method=method, seed=args.seed).save(path)
        print(f"[attack_speed] erased {args.concept} with {method} in {time.perf_counter() - t0:.0f} s", flush=True)
        models.append(path)
    report = {"model": args.model, "concept": args.concept, "n": args.n, "attack_options": ATTACK_OPTIONS,
              "audits": {m: audit_both(modality, m, args.model, args.concept, args.n, args.seed, ATTACK_OPTIONS,
                                       args.modes) for m in models}}
    report["audits"] = {Path(m).parent.name if not args.models else m: v for m, v in report["audits"].items()}
    total = {mode: sum(a[mode]["seconds"] for a in report["audits"].values()) for mode in args.modes}
    report["seconds"] = total
    if len(total) == 2:
        report["time_ratio_all"] = round(total["batched"] / total["one_at_a_time"], 3)
    print(json.dumps({k: v for k, v in report.items() if k != "audits"}, indent=2))
    for name, a in report["audits"].items() if len(total) == 2 else ():
        print(f"{name}: batched / one at a time = {a['time_ratio']}x; post ASR {a['one_at_a_time']['post_asr']:.2f} "
              f"-> {a['batched']['post_asr']:.2f}; rows with another verdict: {a['rows_with_other_verdict']}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
