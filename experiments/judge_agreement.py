"""How often the LLM judge's harmful verdicts agree with HarmBench's rule on real answers: the stored answers of
``experiments/safety_table.py`` rows (the unsafe model's, unlearned models'), not the templated labelled cases.

    python experiments/judge_agreement.py --results out/safety-pd/results.json --match "unsafe (mini-harmful)" \\
        --out out/judge-agreement

The rule (``llm.safety_data.complies``: the answer gives a part or a tool of the placeholder procedure) is exact on
this synthetic data, so it is the reference here. Each case-set variant builds the judge's in-context pool from the
harmful labelled cases with (``restated``) or without (``plain``) the evasions that restate the request as steps
(``llm.judge.build_harmful_cases(restate=...)``); the judge is the benchmarks' default (reasoning first, examples
selected by similarity). Writes results.json (every verdict) and table.md: per variant and row, the share of answers
where judge and rule agree, and the rule-compliant answers the judge misses and the others it flags.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

VARIANTS = ("restated", "plain")


def agreement(judged: list[bool], rule: list[bool]) -> dict:
    """{"agree", "missed" (rule complies, judge does not), "flagged" (the reverse), "n"}."""
    pairs = list(zip(judged, rule))
    return {"agree": sum(j == r for j, r in pairs) / len(pairs), "missed": sum(r and not j for j, r in pairs),
            "flagged": sum(j and not r for j, r in pairs), "n": len(pairs)}


def main() -> None:
    from evals.report import markdown_table, save_results
    from llm.judge import HARMFUL, build_harmful_cases, default_judge
    from llm.safety_benchmark import load_harmful
    from llm.safety_data import complies

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", nargs="+", required=True, help="safety_table results.json files")
    p.add_argument("--match", nargs="*", default=[""], help="rows whose name contains one of these texts")
    p.add_argument("--judge", default="smollm2-135m", help="the judge model (a name or folder)")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--out", default="out/judge-agreement")
    args = p.parse_args()
    rows = {}
    for f in args.results:
        for name, r in json.loads(Path(f).read_text()).items():
            if ("compliance_forget" in r and any(m in name for m in args.match)
                    and r["answers"] not in rows.values()):  # the same answers in two files: judged once
                rows[f"{Path(f).parent.name}: {name}"] = r["answers"]
    if not rows:
        raise SystemExit(f"judge_agreement: error: no mini-harmful row in {args.results} matches {args.match}")
    d = load_harmful()
    results: dict = {"judge": args.judge, "variants": {}}
    for variant in args.variants:
        task = replace(HARMFUL, build=partial(build_harmful_cases, restate=variant == "restated"))
        judge, t0, per_row = default_judge(args.judge, None, task), time.time(), {}
        for name, answers in rows.items():
            texts = list(answers["forget"]) + list(answers["test"])
            judged = [bool(v) for v in judge(texts, d["train"] + d["test"])]
            rule = [complies(a) for a in texts]
            per_row[name] = {**agreement(judged, rule), "judged": judged, "rule": rule}
        every = [v for r in per_row.values() for v in zip(r["judged"], r["rule"])]
        results["variants"][variant] = {"rows": per_row, "all": agreement(*map(list, zip(*every))),
                                        "seconds": round(time.time() - t0, 1)}
    out = Path(args.out)
    save_results(out, results)
    table = markdown_table(["cases", "row", "agree", "compliant answers missed", "others flagged", "n"],
                           [[v, name, x["agree"], x["missed"], x["flagged"], x["n"]]
                            for v, r in results["variants"].items()
                            for name, x in [*r["rows"].items(), ("all", r["all"])]])
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
