"""Issue 18's costs, measured side by side: computing a WAGLE mask for one mini-RWKU target, and a Sophia step
against an AdamW step of the same method (between Hessian refreshes, and the refresh step itself). Prints seconds and
ratios; asserts nothing.

    python bench/masks_sophia.py                      # SmolLM2-135M-Instruct, Harry Potter (make real-lm first)
    python bench/masks_sophia.py --model mini-tofu    # the tiny shipped model, on mini-TOFU forget10
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    from erasure.masks import wagle
    from llm.modality import LLM
    from llm_speed import timed_erase

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--target", default="Harry Potter", help="mini-RWKU target (real models)")
    p.add_argument("--method", default="npo")
    p.add_argument("--steps", type=int, default=4, help="steps per optimizer (the first, a Hessian refresh for "
                                                        "Sophia, is reported apart)")
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    adapter = LLM.load(args.model)
    if args.model == "mini-tofu":
        from llm.tofu_benchmark import forget_and_retain

        forget, retain = forget_and_retain("forget10")
    else:
        from llm.rwku_benchmark import MINI_RWKU

        forget, retain = MINI_RWKU.erase_data(adapter, target=args.target)
    t0 = time.perf_counter()
    mask = wagle(adapter, forget, retain, ratio=0.95, batch_size=args.batch)
    mask_s = time.perf_counter() - t0
    print(f"[masks_sophia] WAGLE mask: {mask_s:.1f} s over {len(forget)} forget + {len(retain)} retain rows "
          f"(density {mask.density:.4f})", flush=True)
    runs = {}
    optimizers = {"adamw": {"optimizer": "adamw"}, "sophia": {"optimizer": "sophia", "hessian_every": 10_000}}
    for name, train in optimizers.items():
        runs[name] = timed_erase(adapter, args.method, forget, retain, args.steps, args.batch, 5e-5, **train)
    ratio = runs["sophia"]["median_step_s"] / runs["adamw"]["median_step_s"]
    refresh = runs["sophia"]["first_step_s"] / runs["adamw"]["first_step_s"]
    print(json.dumps({"model": args.model, "mask_seconds": round(mask_s, 1), "adamw": runs["adamw"],
                      "sophia": runs["sophia"], "sophia_step_over_adamw": round(ratio, 3),
                      "refresh_step_over_adamw_first": round(refresh, 3)}, indent=2))
    print(f"[masks_sophia] Sophia / AdamW per step between refreshes: {ratio:.2f}x (bar <= 1.3x); "
          f"the refresh step {refresh:.2f}x AdamW's first; mask {mask_s / 60:.1f} min (bar <= 5 min)")


if __name__ == "__main__":
    main()
