"""UnlearnCanvas evaluation speed, side by side in one run: the evaluation's generations (every prompt of the
UA / IRA / CRA sample, DDIM + CFG) at several UNet batch sizes, the judge one image at a time and batched, and a
whole evaluation computed against read back from the evaluation cache (``evals.eval_cache``). Prints seconds and
ratios to the batch of 1; asserts nothing.

    python bench/eval_speed.py                        # mini-canvas, Neon, the evaluation's default settings
    python bench/eval_speed.py --batches 1 16 64 --concept Square
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini-canvas")
    p.add_argument("--concept", default="Neon")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64], help="prompts per UNet call")
    p.add_argument("--ddim-steps", type=int, default=20)
    p.add_argument("--out", help="write the report as JSON here")
    args = p.parse_args()
    if min(args.batches) < 1:
        raise SystemExit("eval_speed: --batches must be >= 1")
    os.environ["ERASURE_EVAL_CACHE"] = tempfile.mkdtemp(prefix="eval-speed-cache-")  # a cold cache of our own

    import torch

    from canvas_data.benchmark import DEFAULT_JUDGE, UNLEARNCANVAS, _load_judge
    from diffusion.modality import DIFFUSION
    from evals.canvas import eval_pairs

    adapter = DIFFUSION.load(args.model)
    pipe, concepts = adapter.pipe, adapter.concepts
    target, other = eval_pairs(concepts, args.concept)  # the evaluation's images, at its defaults
    prompts = [concepts.prompt(o, s) for s, o in target + other]
    report: dict = {"model": args.model, "concept": args.concept, "images": len(prompts), "ddim_steps": args.ddim_steps,
                    "generate_seconds": {}}
    images = None
    for b in sorted(set(args.batches)):
        t0 = time.perf_counter()
        out = pipe.sample(prompts, num_steps=args.ddim_steps, seed=0, batch_size=b)
        report["generate_seconds"][b] = round(time.perf_counter() - t0, 2)
        print(f"[eval_speed] {len(prompts)} images at batch {b}: {report['generate_seconds'][b]} s", flush=True)
        if images is not None:  # the noise is drawn for the whole list first: the batch size changes no image
            report.setdefault("max_image_difference", 0.0)
            report["max_image_difference"] = max(report["max_image_difference"], float((out - images).abs().max()))
        images = out
    judge = _load_judge(DEFAULT_JUDGE)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(len(images)):
            judge.predict(images[i:i + 1])
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        judge.predict(images)
    report["judge_seconds"] = {"one_at_a_time": round(one, 3), "batched": round(time.perf_counter() - t0, 3)}
    settings = dict(model=args.model, concept=args.concept, ddim_steps=args.ddim_steps)
    UNLEARNCANVAS.evaluate(adapter, **settings)  # fills the cache unless the model ships this evaluation
    for label, cache in (("computed", False), ("cached", True)):
        t0 = time.perf_counter()
        rec = UNLEARNCANVAS.evaluate(adapter, cache=cache, **settings)
        report[f"evaluation_{label}_seconds"] = round(time.perf_counter() - t0, 2)
        report[f"evaluation_{label}_says_cached"] = bool(rec.get("cached"))
    g = report["generate_seconds"]
    smallest = g[min(g)]
    report["ratios"] = {f"generate batch {b} / batch {min(g)}": round(s / smallest, 3) for b, s in g.items()}
    report["ratios"]["judge batched / one at a time"] = round(report["judge_seconds"]["batched"] / one, 3)
    report["ratios"]["evaluation cached / computed"] = round(report["evaluation_cached_seconds"]
                                                             / report["evaluation_computed_seconds"], 4)
    print(json.dumps(report, indent=2))
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
