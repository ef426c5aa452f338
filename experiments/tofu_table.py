"""Every LLM method on mini-TOFU forget10: one row per method, TOFU + MUSE numbers, as a markdown table.

    python experiments/tofu_table.py --out out/tofu-table      # writes table.md and results.json
    python experiments/tofu_table.py --model smollm2-135m-tofu --out out/tofu-table-smollm2   # the real model
    python experiments/tofu_table.py --model smollm2-135m-tofu --out out/tofu-tune --resume --methods npo \
        --settings '{"steps": 15, "lr": 1e-5, "batch_size": 8}'     # a tuning run; --resume keeps earlier rows

Uses each method's recommended settings for the model (its recommended.json: llm/weights/mini-tofu/full/,
llm/weights/smollm2-135m-tofu/), the paper defaults otherwise; the retain-only model and the original are rows too.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from erasure import erase
from evals.report import markdown_table, tuning_settings
from evals.tofu import retain_split_for
from llm.modality import LLM
from llm.tofu_benchmark import MINI_TOFU, TABLE_KEYS, mini_tofu_data, retain_model_name

METHODS = ("ga", "graddiff", "npo", "simnpo", "idkpo", "rmu", "ugradsl", "spul", "eco")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/tofu-table")
    p.add_argument("--model", default="mini-tofu", help="a named TOFU model with a retain model "
                                                         "(mini-tofu, smollm2-135m-tofu)")
    p.add_argument("--forget", default="forget10")
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="keep the rows already in OUT/results.json (the two "
                   "reference rows too: their evaluation is most of a short run)")
    p.add_argument("--settings", type=json.loads, help='JSON erase settings for every method instead of the '
                   'recommended ones, e.g. \'{"steps": 15, "lr": 1e-5, "batch_size": 8, "options": {"beta": 0.1}}\'; '
                   'the rows are named "<method> <settings>"')
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = mini_tofu_data()
    retain_name = retain_model_name(args.model, args.forget)
    if retain_name is None:
        raise SystemExit(f"--model {args.model!r} has no retain model for {args.forget}")
    given = tuning_settings(args.settings)  # a tuning run: these settings alone, not the recommended ones
    done = out / "results.json"
    if done.is_file() and not args.resume:
        raise SystemExit(f"{done} exists: --resume adds to it, or give another --out")
    saved = json.loads(done.read_text()) if args.resume and done.is_file() else {}
    run = {"model": args.model, "forget": args.forget, "seed": args.seed}
    if saved and saved.get("_run") != run:
        raise SystemExit(f"--resume: {done} holds a run of {saved.get('_run')}, not {run}")
    if args.settings and "seed" in args.settings:
        raise SystemExit("--settings: give the seed with --seed")
    rows: dict = {k: v for k, v in saved.items() if not k.startswith("_")}
    ref = saved.get("_retain_reference")
    if ref is None or "original (fine-tuned)" not in rows or "retain model" not in rows:
        original = MINI_TOFU.evaluate(LLM.load(args.model), model=args.model, forget=args.forget, data=data)
        ref = original.pop("retain_reference")
        rows["original (fine-tuned)"] = original
        rows["retain model"] = MINI_TOFU.evaluate(LLM.load(retain_name), model=retain_name, forget=args.forget,
                                                  retain_reference=ref, data=data)
        rows["retain model"].pop("retain_reference")

    def save() -> None:  # after every row: a failure later loses nothing
        payload = {"_run": run, "_retain_reference": ref,
                   **{n: {k: v for k, v in r.items() if k != "retain_reference"} for n, r in rows.items()}}
        tmp = done.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        tmp.replace(done)

    save()
    for method in args.methods:
        name = f"{method} {json.dumps(args.settings, sort_keys=True)}" if args.settings else method
        if name in rows:
            continue
        t0 = time.time()
        result = erase(LLM.load(args.model), method=method, forget=data[args.forget].to_list(),
                       retain=data[retain_split_for(args.forget)].to_list(), seed=args.seed, **given)
        seconds = round(time.time() - t0, 1)
        rec = MINI_TOFU.evaluate(result.adapter, model=method, forget=args.forget, retain_reference=ref, data=data)
        rec.pop("retain_reference")
        rec.update(erase_seconds=seconds, steps=result.loop.steps)
        if result.loop.steps:  # a closed-form method (ECO) has no learning rate
            rec["lr"] = result.train_config["lr"]
        rows[name] = rec
        save()
    original = rows["original (fine-tuned)"]
    base = original["model_utility"]
    header = ["model", "steps", "lr", *TABLE_KEYS, "MU / original"]
    table = markdown_table(header, [[name, r.get("steps", ""), f"{r['lr']:g}" if "lr" in r else "", *(r.get(k) for k in TABLE_KEYS),
                                     r["model_utility"] / base if base else None] for name, r in rows.items()])
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
