"""LLM unlearning step speed, side by side in one run: GA vs NPO's forget term (retain term off, so both steps
make the same passes; NPO's reference NLLs cached per forget row, as the loop does, and recomputed every step),
SPUL's step with its retain scores sharing one forward and the KL reference kept vs without, fp32 vs bf16
autocast, SDPA vs eager attention. Prints seconds per step
(median over the measured steps, the first step excluded: it fills the reference cache) and the ratios; asserts
nothing.

    python bench/llm_speed.py                       # SmolLM2-135M-Instruct on mini-RWKU (make real-lm first)
    python bench/llm_speed.py --model mini-tofu     # the tiny shipped model (no conversion needed)
    python bench/llm_speed.py --bf16                # also bf16 autocast (GPU; on this CPU > 10x slower)
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time


def timed_erase(adapter, method: str, forget, retain, steps: int, batch: int, lr: float, options: dict | None = None,
                attrs: dict | None = None, **train) -> dict:
    """Run ``steps`` steps of ``method`` on a copy of the model (with ``attrs`` set on the copy of the adapter);
    per-step wall times from each step's start."""
    from accelerate.state import AcceleratorState, PartialState

    from erasure import erase
    from step_timer import durations, step_starts

    AcceleratorState._reset_state(reset_partial_state=True)  # each run sets its own mixed precision
    PartialState._reset_state()
    work = copy.copy(adapter)
    work.model = copy.deepcopy(adapter.model)
    for name, value in (attrs or {}).items():
        setattr(work, name, value)
    t0 = time.perf_counter()
    with step_starts() as starts:
        result = erase(work, method=method, forget=forget, retain=retain, steps=steps, lr=lr, batch_size=batch,
                       recommended=False, train={"show_progress": False, **train}, **(options or {}))
    per_step = durations(starts)
    print(f"[llm_speed] {method} {train or ''}: steps {[round(x, 2) for x in per_step]}", flush=True)
    return {"first_step_s": round(per_step[0], 3), "median_step_s": round(statistics.median(per_step[1:]), 3),
            "total_s": round(time.perf_counter() - t0, 1), "first_loss": result.loop.history[0]["loss"]}


def main() -> None:
    from llm.modality import LLM

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--target", default="Harry Potter", help="mini-RWKU target (real models)")
    p.add_argument("--steps", type=int, default=4, help="steps per configuration (the first is not counted)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--bf16", action="store_true", help="also NPO under bf16 autocast (slow on CPUs without bf16)")
    args = p.parse_args()

    adapter = LLM.load(args.model)
    if args.model == "mini-tofu":
        forget, retain = "forget10", "retain90"
    else:
        from llm.rwku_benchmark import MINI_RWKU

        forget, retain = MINI_RWKU.erase_data(adapter, target=args.target)
    attn = getattr(adapter.model.config, "_attn_implementation", None)
    runs = {}
    # forget terms alone (GA has no retain term; NPO's is switched off) so the two steps do the same passes
    common = dict(forget=forget, retain=retain, steps=args.steps, batch=args.batch, lr=1e-5,
                  options={"retain_weight": 0.0})
    runs["ga"] = timed_erase(adapter, "ga", **{**common, "options": None})
    runs["npo"] = timed_erase(adapter, "npo", **common)
    # the loop then recomputes the reference every step
    runs["npo_no_reference_cache"] = timed_erase(adapter, "npo", attrs={"deterministic_scores": False}, **common)
    # SPUL (a soft prompt; retain NLL and KL): one shared forward on retain and the reference's answer log-probs
    # kept across steps, against a pass per score and the reference every step
    spul = dict(common, options=None, lr=1e-2)
    runs["spul"] = timed_erase(adapter, "spul", **spul)
    runs["spul_unshared"] = timed_erase(adapter, "spul", attrs={"outputs": None, "deterministic_scores": False},
                                        **spul)
    other = "eager" if attn != "eager" else "sdpa"
    adapter.model.config._attn_implementation = other
    runs[f"npo_{other}"] = timed_erase(adapter, "npo", **common)
    adapter.model.config._attn_implementation = attn
    if args.bf16:  # on a CPU without bf16 arithmetic this is many times slower
        runs["npo_bf16"] = timed_erase(adapter, "npo", mixed_precision="bf16", **common)

    med = {k: v["median_step_s"] for k, v in runs.items()}
    report = {
        "model": args.model, "attention": attn, "batch": args.batch, "runs": runs,
        "ratios": {
            "npo_step / ga_step": round(med["npo"] / med["ga"], 3),
            "npo_step without / with reference cache": round(med["npo_no_reference_cache"] / med["npo"], 3),
            "spul_step shared outputs and kept reference / neither": round(med["spul"] / med["spul_unshared"], 3),
            f"npo {other} / {attn} step": round(med[f"npo_{other}"] / med["npo"], 3),
        },
    }
    if args.bf16:
        report["ratios"]["npo bf16 / fp32 step"] = round(med["npo_bf16"] / med["npo"], 3)
        report["ratios"]["bf16 first-loss relative difference"] = round(
            abs(runs["npo_bf16"]["first_loss"] - runs["npo"]["first_loss"]) / abs(runs["npo"]["first_loss"]), 5)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
