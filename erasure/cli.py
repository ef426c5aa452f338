"""The ``erasure`` command line (also ``python -m erasure``).

    erasure concepts --model mini-canvas
    erasure erase --model mini-canvas --concept Neon --method esd-x --out out/neon
    erasure eval  --model out/neon --concept Neon --out out/neon-eval
    erasure demo  --out out/demo
    erasure erase --model mini-tofu --forget forget10 --method simnpo --out out/simnpo
    erasure eval  --model out/simnpo --benchmark mini-tofu --forget forget10 --out out/simnpo-eval
    erasure demo  --modality llm
    erasure audit --model out/neon --concept Neon --attack unlearndiff embedding random --out out/neon-audit
    erasure audit --model out/simnpo --forget forget10 --attack soft-prompt relearn --out out/simnpo-audit
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
from pathlib import Path
from typing import Any

from erasure.registry import method_names
from evals.robustness import ATTACKS, LLM_ATTACKS


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["eta=2.0", "retain=kl"]`` -> ``{"eta": 2.0, "retain": "kl"}`` (values parsed as Python literals)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    train: dict[str, Any] = {}
    if args.checkpoint_every:
        train["checkpoint_every"] = args.checkpoint_every
    if args.checkpoint_every or args.resume:
        train["checkpoint_dir"] = args.checkpoint_dir or f"{args.out}/checkpoints"
    if args.resume:
        train["resume"] = True
    if args.batch_size:
        train["batch_size"] = args.batch_size
    return train


def cmd_concepts(args: argparse.Namespace) -> dict:
    from evals.canvas_run import load_pipeline

    pipe = load_pipeline(args.model)
    if pipe.concepts is None:
        raise ValueError(f"model {args.model!r} ships no concept vocabulary (concepts.json)")
    return {"styles": pipe.concepts.styles, "objects": pipe.concepts.objects}


def cmd_erase(args: argparse.Namespace) -> dict:
    from evals.llm_run import is_llm_model

    options = parse_options(args.option)
    if is_llm_model(args.model):
        from evals.llm_run import run_llm_erase

        if not args.forget:
            raise ValueError("unlearning an LLM needs --forget (forget01|forget05|forget10 or a .jsonl file)")
        result = run_llm_erase(args.model, args.forget, args.method, args.out, retain=args.retain, steps=args.steps,
                               lr=args.lr, seed=args.seed, train=_train_options(args), method_options=options)
        summary = json.loads((Path(args.out) / "erasure.json").read_text())
    else:
        from evals.canvas_run import run_erase

        if args.concept is None:
            raise ValueError("erasing from a diffusion model needs --concept")
        summary = run_erase(args.model, args.concept, args.method, args.out, steps=args.steps, lr=args.lr,
                            seed=args.seed, train=_train_options(args), method_options=options)
    return {k: summary[k] for k in ("method", "concept", "steps", "seconds", "trainable_parameters")} | {
        "out": args.out, "final_loss": summary["history"][-1]["loss"] if summary["history"] else None}


def cmd_eval(args: argparse.Namespace) -> dict:
    from evals.llm_run import is_llm_model

    benchmark = args.benchmark or ("mini-tofu" if is_llm_model(args.model) else "unlearncanvas")
    if benchmark == "mini-tofu":
        from evals.llm_run import TABLE_KEYS, run_llm_eval

        record = run_llm_eval(args.model, args.forget or "forget10", args.out, retain_model=args.retain_model)
        return {k: record[k] for k in ("forget_split", *TABLE_KEYS, "seconds")}
    from evals.canvas_run import run_eval

    if args.concept is None:
        raise ValueError("the UnlearnCanvas evaluation needs --concept")
    record = run_eval(args.model, args.concept, args.out, evaluator=args.evaluator,
                      target_per_prompt=args.per_prompt, other_per_prompt=args.other_per_prompt,
                      ddim_steps=args.ddim_steps, guidance=args.guidance, seed=args.seed)
    return {k: record[k] for k in ("concept", "domain", "ua", "ira", "cra", "n_target", "n_other", "seconds")}


def cmd_demo(args: argparse.Namespace) -> dict:
    if args.modality == "llm":
        from evals.llm_run import run_llm_demo

        return run_llm_demo(out=args.out or "out/demo-llm", seed=args.seed)
    from evals.canvas_run import run_demo

    return run_demo(out=args.out or "out/demo", concept=args.concept, method=args.method, model=args.model,
                    steps=args.steps, lr=args.lr, seed=args.seed)


def cmd_audit(args: argparse.Namespace) -> dict:
    from evals.llm_run import is_llm_model

    from evals.robustness import attack_accepts

    options = parse_options(args.option)
    llm = is_llm_model(args.model)
    attacks = args.attack or (["soft-prompt"] if llm else ["unlearndiff"])
    for key in ("k", "iterations"):  # shorthands, given to the attacks that have the option
        if getattr(args, key) is not None:
            takers = [a for a in attacks if attack_accepts(a, key)]
            if not takers:
                raise ValueError(f"--{key}: none of the attacks {attacks} has that option")
            options.update({f"{a}.{key}": getattr(args, key) for a in takers})
    keys = ("attack", "pre_asr", "post_asr", "n", "seconds", "utility", "attacks")
    if llm:
        from evals.llm_run import run_llm_audit

        record = run_llm_audit(args.model, args.forget or "forget10", attacks, args.out, n=args.n,
                               threshold=args.threshold, seed=args.seed, attack_options=options,
                               with_utility=not args.no_utility)
        return {"forget": args.forget or "forget10", **{k: record[k] for k in keys if k in record}}
    from evals.canvas_run import run_audit

    if args.concept is None:
        raise ValueError("auditing a diffusion model needs --concept")
    record = run_audit(args.model, args.concept, attacks, args.out, evaluator=args.evaluator,
                       n=args.n, original=args.original, seed=args.seed, attack_options=options,
                       with_utility=not args.no_utility)
    return {"concept": args.concept, **{k: record[k] for k in keys if k in record}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="erasure", description="Erase concepts from diffusion models and data from LLMs.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("concepts", help="print the concept vocabulary of a model as JSON")
    c.add_argument("--model", default="mini-canvas")
    c.set_defaults(fn=cmd_concepts)

    e = sub.add_parser("erase", help="erase a concept and save the edited model")
    e.add_argument("--model", required=True, help="a local model folder or a built-in name (mini-canvas, mini-tofu)")
    e.add_argument("--concept", help="the concept to erase (diffusion)")
    e.add_argument("--forget", help="LLM: forget01|forget05|forget10 or a TOFU-schema .json/.jsonl/.parquet file")
    e.add_argument("--retain", help="LLM: a retain split name or file (default: the forget split's retain split)")
    e.add_argument("--method", default="esd-x", help=f"one of: {', '.join(method_names())}")
    e.add_argument("--out", required=True)
    e.add_argument("--steps", type=int)
    e.add_argument("--lr", type=float)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int)
    e.add_argument("--checkpoint-every", type=int, default=0)
    e.add_argument("--checkpoint-dir")
    e.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    e.add_argument("--option", action="append", metavar="KEY=VALUE", help="a method option, e.g. eta=2.0")
    e.set_defaults(fn=cmd_erase)

    v = sub.add_parser("eval", help="UnlearnCanvas UA/IRA/CRA (diffusion) or TOFU + MUSE metrics (LLM)")
    v.add_argument("--model", required=True)
    v.add_argument("--benchmark", choices=["unlearncanvas", "mini-tofu"], help="default: by the model's modality")
    v.add_argument("--concept", help="diffusion: the erased concept")
    v.add_argument("--forget", help="LLM: the forget split (default forget10)")
    v.add_argument("--retain-model", help="LLM: the retain-only reference model (default: the shipped one)")
    v.add_argument("--out", required=True)
    v.add_argument("--evaluator", default="mini-canvas-evaluator", help="judge folder or built-in name")
    v.add_argument("--per-prompt", type=int, default=5, help="images per prompt containing the concept")
    v.add_argument("--other-per-prompt", type=int, default=1, help="images per prompt of other concepts")
    v.add_argument("--ddim-steps", type=int, default=20)
    v.add_argument("--guidance", type=float, default=3.0)
    v.add_argument("--seed", type=int, default=0)
    v.set_defaults(fn=cmd_eval)

    a = sub.add_parser("audit", help="attack an erased model with one or more attacks and report attack success "
                                     "rates (ASR) next to its utility")
    a.add_argument("--model", required=True)
    a.add_argument("--concept", help="diffusion: the erased concept")
    a.add_argument("--forget", help="LLM: the forget split or file whose answers the attacks recover "
                                    "(default forget10)")
    a.add_argument("--attack", nargs="+", choices=[*ATTACKS, *LLM_ATTACKS],
                   help="one or more attacks (default: unlearndiff for diffusion, soft-prompt for LLMs)")
    a.add_argument("--out", required=True)
    a.add_argument("--n", type=int, help="attack at most N prompts / forget questions")
    a.add_argument("--k", type=int, help="adversarial prefix tokens")
    a.add_argument("--iterations", type=int, help="UnlearnDiff iterations")
    a.add_argument("--original", help="diffusion: the model before erasure (its generations are the attack's "
                                      "targets)")
    a.add_argument("--evaluator", default="mini-canvas-evaluator", help="diffusion: the judge")
    a.add_argument("--threshold", type=float, default=0.5,
                   help="LLM: ROUGE-L recall of the true answer that counts as recovered")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--no-utility", action="store_true", help="skip the utility evaluation")
    a.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="an attack option, e.g. lr=0.01 (every attack) or embedding.lr=0.05 (one attack)")
    a.set_defaults(fn=cmd_audit)

    d = sub.add_parser("demo", help="erase a style from the shipped tiny model (or unlearn mini-TOFU) and evaluate")
    d.add_argument("--modality", choices=["diffusion", "llm"], default="diffusion")
    d.add_argument("--out", help="default: out/demo (diffusion) or out/demo-llm (llm)")
    d.add_argument("--concept", default="Neon")
    d.add_argument("--method", default="esd-x")
    d.add_argument("--model", default="mini-canvas")
    d.add_argument("--steps", type=int)
    d.add_argument("--lr", type=float)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = args.fn(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"erasure {args.command}: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
