"""Unlearning harmful and copyrighted content on the unsafe SmolLM2, side by side with the model before unlearning:
SKU (arXiv 2402.10058) and gradient ascent through LoRA (arXiv 2405.15152) on mini-harmful, gradient ascent through
LoRA on mini-verbmem (``llm/safety_benchmark.py``).

    make real-lm                                   # once (merges the unsafe model)
    python experiments/safety_table.py --out out/safety --readme README.md
    python experiments/safety_table.py --rows sku --settings '{"steps": 20, "lr": 1e-4}' --out out/sku-try
    python experiments/safety_table.py --rows sku --sku-scales 2 2.5 3 --resume      # one acquisition, three negations
    python experiments/safety_table.py --rows --resume --judge smollm2-135m          # the LLM judge on stored answers

Rows (``--rows``): ``sku`` (forget: the harmful training requests, retain: truthful-QA-style answers, both papers'
normal data), ``ga-lora`` (the same sets; the method is ``--lora-method``, default llmu: the GA + LoRA paper's
objective, gradient ascent on the forget answers + normal answers to the forget questions + KL on the normal rows,
through LoRA rank 8; graddiff: gradient ascent + NLL on the retain rows), ``verbmem-lora`` (the forget passages,
retain: everyday and truthful QA; the same ``--lora-method``). A row run with another LoRA method is named with it,
e.g. ``ga-lora (graddiff)``. Each erases with the model's recommended settings (its recommended.json; ``--settings``
JSON replaces them) and is evaluated next to the model before unlearning. Writes results.json and table.md (and
the tables into the README between its safety-table markers with --readme).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ROWS = {  # row -> (benchmark, method or None for --lora-method, LoRA spec or None, benchmark erase options)
    "sku": ("mini-harmful", "sku", None, {"retain_set": "truthful"}),
    "ga-lora": ("mini-harmful", None, {"rank": 8, "alpha": 16}, {"retain_set": "truthful"}),
    "verbmem-lora": ("mini-verbmem", None, {"rank": 8, "alpha": 16}, {}),
}


def _erase(model: str, row: str, lora_method: str, settings: dict | None) -> tuple[Any, Any, dict]:
    """Erase ``model`` for one row: (its benchmark, the erase result, the row's settings and erase minutes)."""
    from erasure import erase
    from erasure.registry import get_benchmark
    from evals.report import tuning_settings
    from llm.modality import LLM

    bench_name, method, lora, options = ROWS[row]
    bench = get_benchmark(bench_name)
    adapter = LLM.load(model)
    forget, retain = bench.erase_data(adapter, **options)
    t0 = time.time()
    result = erase(adapter, method=method or lora_method, forget=forget, retain=retain, lora=lora,
                   **tuning_settings(settings))
    info = {"method": method or lora_method, "lora": lora, "steps": result.loop.steps,
            "lr": result.train_config["lr"], "erase_minutes": round((time.time() - t0) / 60, 1),
            "settings": settings}
    return bench, result, info


def run_row(model: str, row: str, lora_method: str, settings: dict | None) -> dict:
    """Erase ``model`` for one row and evaluate the result on its benchmark (with the erase minutes)."""
    bench, result, info = _erase(model, row, lora_method, settings)
    return {**bench.evaluate(result.adapter, model=f"{model} + {row}"), **info}


def run_sku_scales(model: str, settings: dict | None, scales: list[float]) -> dict[float, dict]:
    """One SKU erase negated at each of ``scales`` in turn (``llm.sku.rescale``: the same acquisition), each
    evaluated: {scale: record}."""
    from llm.sku import rescale

    bench, result, info = _erase(model, "sku", "", settings)  # the sku row names its method: no LoRA method
    records = {}
    for scale in scales:
        rescale(result, scale)
        records[scale] = {**bench.evaluate(result.adapter, model=f"{model} + sku (scale {scale:g})"), **info,
                          "scale": scale}
    return records


def _lr(record: dict) -> str:
    return f"{record['lr']:g}" if "lr" in record else ""


def rescore(results: dict) -> None:
    """Score every mini-harmful row's stored greedy answers again with the benchmark's current rules
    (``answer_scores``), so rows evaluated before a measure was added or a rule changed show what the rules say now."""
    from llm.safety_benchmark import answer_scores, load_harmful

    rows = [r for r in results.values() if "compliance_forget" in r]
    d = load_harmful() if rows else {}
    for record in rows:
        record.update(answer_scores(record["answers"], d))


def judge_rows(results: dict, judge: str, match: str = "") -> None:
    """Have the local LM ``judge`` (``llm/judge.py``'s harmful task) label the stored answers of every mini-harmful
    row whose name contains ``match`` (rows this judge labelled with the same labelled cases are kept; its
    in-context examples come from them): ``compliance_judged_forget`` / ``_test``, and ``judge``: the judge and the
    digest of its cases."""
    import hashlib
    import json

    from llm.judge import HARMFUL
    from llm.safety_benchmark import compliance_verdict, judged_compliance, load_harmful

    cases = hashlib.sha256(json.dumps(HARMFUL.build(None), sort_keys=True).encode()).hexdigest()[:12]
    key = f"{judge} (cases {cases})"
    rows = [r for name, r in results.items() if "compliance_forget" in r and match in name and r.get("judge") != key]
    verdict, d = (compliance_verdict(judge), load_harmful()) if rows else (None, {})
    for record in rows:
        record.update(judged_compliance(verdict, record["answers"], d), judge=key)


def table(results: dict) -> str:
    from evals.report import markdown_table

    parts = []
    harmful = {name: r for name, r in results.items() if "compliance_forget" in r}
    if harmful:
        judged = any("compliance_judged_forget" in r for r in harmful.values())
        parts.append("mini-harmful (compliance: share of answers that give some of the placeholder procedure; "
                     "step form: share in the form of steps or naming the hazard, procedure or not; "
                     + ("judged: compliance by the LLM judge; " if judged else "") +
                     "harmful ROUGE-L: the compliant answers' recall; test: requests about hazards held out of "
                     "unlearning; utility: general-knowledge probes):\n\n" + markdown_table(
                         ["model", "method", "steps", "lr", "compliance forget", "compliance test",
                          "step form forget", "step form test",
                          *(["judged forget", "judged test"] if judged else []),
                          "harmful ROUGE-L forget", "harmful ROUGE-L test",
                          "normal refused", "normal ROUGE-L", "utility", "fluency ppl", "erase min"],
                         [[name, r.get("method", ""), r.get("steps", ""), _lr(r), r["compliance_forget"],
                           r["compliance_test"], r["step_form_forget"], r["step_form_test"],
                           *([r.get("compliance_judged_forget", ""), r.get("compliance_judged_test", "")]
                             if judged else []),
                           r["harmful_rouge_forget"], r["harmful_rouge_test"], r["normal_refusal"],
                           r["normal_rouge"], r["utility"], r["fluency_ppl"], r.get("erase_minutes", "")]
                          for name, r in harmful.items()]))
    verbmem = {name: r for name, r in results.items() if "verbmem_forget" in r}
    if verbmem:
        parts.append("mini-verbmem (MUSE VerbMem on the forget passages and on memorised passages held out of "
                     "unlearning):\n\n" + markdown_table(
                         ["model", "method", "steps", "lr", "VerbMem forget", "VerbMem held out", "utility",
                          "fluency ppl", "erase min"],
                         [[name, r.get("method", ""), r.get("steps", ""), _lr(r), r["verbmem_forget"],
                           r["verbmem_retain"], r["utility"], r["fluency_ppl"], r.get("erase_minutes", "")]
                          for name, r in verbmem.items()]))
    return "\n\n".join(parts)


def main() -> None:
    from erasure.registry import get_benchmark
    from evals.report import add_table_options, publish_table, resumable_results, save_results
    from llm.modality import LLM

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-unsafe")
    p.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--lora-method", default="llmu", help="the method of the LoRA rows (default llmu)")
    p.add_argument("--settings", type=json.loads, help="JSON erase settings instead of the recommended ones, e.g. "
                   "'{\"steps\": 20, \"lr\": 1e-4, \"options\": {\"k\": 3}}'; the rows are named '<row> <settings>'")
    p.add_argument("--sku-scales", type=float, nargs="*", help="the sku row negated at each of these scales from one "
                   "acquisition (rows named '<row> ... scale S'); the settings' scale is not used")
    p.add_argument("--judge", help="also have this local LM judge (llm/judge.py's harmful task, e.g. smollm2-135m) "
                   "label the stored answers of the mini-harmful rows (columns judged forget / test)")
    p.add_argument("--judge-match", default="", help="only the rows whose name contains this text (with --judge)")
    add_table_options(p, "out/safety", "safety-table")
    args = p.parse_args()
    out = Path(args.out)
    results = resumable_results(out, args.resume)
    rescore(results)
    for bench_name in sorted({ROWS[r][0] for r in args.rows}):
        name = f"{args.model} ({bench_name})"
        if name not in results:
            results[name] = get_benchmark(bench_name).evaluate(LLM.load(args.model), model=args.model)
            save_results(out, results)
    for row in args.rows:
        default = ROWS[row][1] or args.lora_method == p.get_default("lora_method")  # rows of another method say so
        name = row if default else f"{row} ({args.lora_method})"
        name = f"{name} {json.dumps(args.settings, sort_keys=True)}" if args.settings else name
        if row == "sku" and args.sku_scales:
            names = {scale: f"{name} scale {scale:g}" for scale in args.sku_scales}
            if any(n not in results for n in names.values()):
                for scale, record in run_sku_scales(args.model, args.settings, args.sku_scales).items():
                    results[names[scale]] = record
                save_results(out, results)
        elif name not in results:
            results[name] = run_row(args.model, row, args.lora_method, args.settings)
            save_results(out, results)
    if args.judge:
        judge_rows(results, args.judge, args.judge_match)
        save_results(out, results)
    block = table(results) + ("\n\nRows: `python experiments/safety_table.py` (the recommended settings), a row named "
                              "with settings `--rows ROW --settings JSON --resume`; erase min: the erase alone, the "
                              "evaluation takes about 3 min (mini-harmful) or 30 s (mini-verbmem) more.")
    publish_table(out, block, args.readme, "safety-table")
    print(block)


if __name__ == "__main__":
    main()
