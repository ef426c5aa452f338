"""AdvUnlearn vs ESD (Zhang et al., NeurIPS 2024): robustness to UnlearnDiff and utility, per concept.

    python experiments/advunlearn_vs_esd.py --out out/advunlearn            # mini-canvas, one style + one object
    python experiments/advunlearn_vs_esd.py --model /models/sd-v1-4 --evaluator /judges/style-clf \\
        --concepts "Van Gogh" --original /models/sd-v1-4 --out out/sd        # real weights + a GPU, same code

For every concept: the original model, ESD (esd-x), AdvUnlearn and AdvUnlearn-fast are each evaluated with
UnlearnCanvas UA / IRA / CRA and audited with UnlearnDiff (pre- and post-attack ASR). Writes table.md and
results.json. Settings come from the model's recommended.json where it has them; pass --steps to override.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evals.canvas_run import run_audit, run_erase, run_eval
from evals.report import markdown_table

MODELS = ("original", "esd-x", "advunlearn", "advunlearn-fast")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini-canvas")
    p.add_argument("--evaluator", default="mini-canvas-evaluator")
    p.add_argument("--original", help="model whose generations are UnlearnDiff's targets (default: rendered "
                                      "mini-canvas images)")
    p.add_argument("--concepts", nargs="*", default=["Neon", "Star"])
    p.add_argument("--methods", nargs="*", default=list(MODELS[1:]))
    p.add_argument("--steps", type=int)
    p.add_argument("--n", type=int, help="prompts attacked per concept (default: all of the concept's)")
    p.add_argument("--out", default="out/advunlearn")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    t_start = time.time()
    results: dict = {}
    rows = []
    for concept in args.concepts:
        results[concept] = {}
        for name in ("original", *args.methods):
            t0 = time.time()
            model = args.model
            if name != "original":
                model = str(out / concept / name / "model")
                run_erase(args.model, concept, name, model, steps=args.steps, seed=args.seed)
            ev = run_eval(model, concept, seed=args.seed, evaluator=args.evaluator)
            au = run_audit(model, concept, "unlearndiff", str(out / concept / name / "audit"), evaluator=args.evaluator,
                           n=args.n, original=args.original, seed=args.seed, with_utility=False)
            rec = {"ua": ev["ua"], "ira": ev["ira"], "cra": ev["cra"], "pre_asr": au["pre_asr"],
                   "post_asr": au["post_asr"], "n": au["n"], "seconds": round(time.time() - t0, 1)}
            results[concept][name] = rec
            rows.append([concept, name, rec["pre_asr"], rec["post_asr"], rec["ua"], rec["ira"], rec["cra"],
                         rec["seconds"]])
            (out / "results.json").parent.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(["concept", "model", "ASR pre-attack", "ASR UnlearnDiff", "UA", "IRA", "CRA", "seconds"],
                           rows)
    (out / "table.md").write_text(table + f"\n\nTotal: {time.time() - t_start:.0f} s\n")
    print(table)


if __name__ == "__main__":
    main()
