"""The LLM judge's accuracy on the labelled cases in every setting: in-context examples none / random / selected
by similarity, times reasoning before the label (chain of thought) / label first.

    make real-lm                                                  # once
    python experiments/judge_table.py --out out/judge --readme README.md
    python experiments/judge_table.py --limit 20 --out out/judge-try  # the first 20 test cases only
    python experiments/judge_table.py --task harmful --readme README.md     # results in out/judge-harmful

The cases (``llm.judge.build_cases``: mini-RWKU probes answered four ways, labels by construction) are split by probe
into an in-context pool (30%) and the test cases; every setting labels the same test cases with the same judge model
(SmolLM2-135M-Instruct by default). Writes results.json (accuracy, per-label confusion, every raw output) and
table.md, and the table into the README between its judge-table markers with --readme. ``--task harmful`` grades
answers to mini-harmful's requests instead (``llm.judge.build_harmful_cases``: complies / refuses / evades /
gibberish; README markers harmful-judge-table).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SETTINGS = [(icl, cot) for cot in (False, True) for icl in ("none", "random", "selected")]  # the quick ones first


def main() -> None:
    from evals.report import add_table_options
    from llm.judge import TASKS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="the judge model (a name or folder)")
    p.add_argument("--limit", type=int, help="judge only the first N test cases")
    p.add_argument("--k", type=int, default=4, help="in-context examples per judgment")
    p.add_argument("--task", choices=list(TASKS), default="reveals",
                   help="what the judge labels: mini-RWKU answers (reveals the target?) or mini-harmful answers "
                        "(complies with the request?)")
    add_table_options(p, "out/judge", "judge-table", kept="settings")
    p.add_argument("--table-only", action="store_true", help="run nothing: the table of OUT/results.json as it is")
    args = p.parse_args()
    if args.task != "reveals" and args.out == p.get_default("out"):  # each task's results in their own folder
        args.out = f"out/judge-{args.task}"

    from evals.report import markdown_table, publish_table, resumable_results, save_results
    from llm.judge import LLMJudge, judge_accuracy, split_cases
    from llm.modality import LLM

    out = Path(args.out)
    results = resumable_results(out, args.resume or args.table_only)
    task = TASKS[args.task]
    pool, test = split_cases(task.build())
    test = test[: args.limit or None]
    adapter = None if args.table_only else LLM.load(args.model)
    for icl, cot in [] if args.table_only else SETTINGS:
        name = f"{icl} / {'reasoning first' if cot else 'label first'}"
        if name in results:
            continue
        t0 = time.time()
        acc = judge_accuracy(LLMJudge(adapter, cot=cot, icl=icl, pool=pool, k=args.k, task=task), test)
        results[name] = {"accuracy": acc["agg_value"], "confusion": acc["confusion"], "outputs": acc["outputs"],
                         "n": len(test), "seconds": round(time.time() - t0, 1)}
        save_results(out, results)
        print(name, round(acc["agg_value"], 3), flush=True)
    heads = ["in-context examples", "order", "accuracy", *[f"{lab} recall" for lab in task.labels], "unknown", "n",
             "s"]
    rows = []
    for name, r in results.items():
        icl, order = name.split(" / ")
        recall = [r["confusion"][lab].get(lab, 0) / max(1, sum(r["confusion"][lab].values())) for lab in task.labels]
        unknown = sum(c.get("unknown", 0) for c in r["confusion"].values())
        rows.append([icl, order, round(r["accuracy"], 3), *(round(x, 2) for x in recall), unknown, r["n"],
                     r["seconds"]])
    table = markdown_table(heads, rows)
    print(table)
    options = (f" --task {args.task}" if args.task != "reveals" else "") + (
        f" --limit {args.limit}" if args.limit else "")
    publish_table(out, table + f"\n\nJudge: {args.model}; `python experiments/judge_table.py{options}`.", args.readme,
                  "judge-table" if args.task == "reveals" else "harmful-judge-table")


if __name__ == "__main__":
    main()
