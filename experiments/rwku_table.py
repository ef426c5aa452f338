"""Every LLM method on mini-RWKU with the real SmolLM2-135M-Instruct: one row per (target, method), as a table.

    make real-lm                                                    # once
    python experiments/rwku_table.py --out out/rwku --readme README.md
    python experiments/rwku_table.py --targets "Harry Potter" --methods npo simnpo --out out/rwku-hp
    python experiments/rwku_table.py --targets "Harry Potter" --methods rmu --settings \
        '{"steps": 20, "lr": 1e-3, "batch_size": 8, "options": {"steering_coef": 300}}' --out out/rwku-tune

For each target: the base model's numbers, then each method erases the target's forget corpus with the settings
in ``llm/weights/smollm2-135m/recommended.json`` (the paper defaults where it has none) and is evaluated with
``erasure eval --benchmark mini-rwku``'s numbers: forget accuracy on direct QA, fill-in-the-blank and the
adversarial forms, neighbour and utility accuracy, fluency perplexity, MIA AUC, erase minutes. The last rows
average each method over the targets, relative to the base model. Writes results.json and table.md (and the
table into the README between its rwku-table markers with --readme).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

METHODS = ("ga", "graddiff", "npo", "simnpo", "idkpo", "rmu", "ugradsl", "spul", "eco")
KEYS = ("forget_qa", "forget_fb", "forget_adversarial", "neighbour", "utility", "fluency_ppl", "mia_auc")


def run(model: str, targets: list[str], methods: list[str], out: Path, seed: int = 0, data: str | None = None,
        resume: bool = False, settings: dict | None = None) -> dict:
    """{target: {"base": record, method: record}}; records carry the erase minutes; results.json after each.
    With ``resume``, the (target, model) pairs already in out/results.json are kept, not run again. ``settings``
    (steps, lr, batch_size, options) replace the recommended ones for every method (a tuning run)."""
    from erasure import erase
    from evals.report import tuning_settings
    from llm.modality import LLM
    from llm.rwku_benchmark import MINI_RWKU

    given = tuning_settings(settings)  # a tuning run: these settings alone, not the recommended ones
    done = out / "results.json"
    results: dict = json.loads(done.read_text()) if resume and done.is_file() else {}
    for target in targets:
        if "base" not in results.get(target, {}):
            results.setdefault(target, {})["base"] = MINI_RWKU.evaluate(LLM.load(model), model=model, target=target,
                                                                        data=data)
        forget, retain = MINI_RWKU.erase_data(None, target=target, data=data)
        for method in methods:
            if method in results[target]:
                continue
            t0 = time.time()
            result = erase(LLM.load(model), method=method, forget=forget, retain=retain, seed=seed, **given)
            minutes = (time.time() - t0) / 60
            rec = MINI_RWKU.evaluate(result.adapter, model=f"{model} + {method}", target=target, data=data)
            rec.update(erase_minutes=round(minutes, 1), steps=result.loop.steps)
            if result.loop.steps:  # a closed-form method (ECO) has no learning rate
                rec["lr"] = result.train_config["lr"]
            results[target][method] = rec
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(results, indent=2))
    return results


def table(results: dict, methods: list[str]) -> str:
    """Per (target, model) rows, then per-method means relative to the base model."""
    from evals.report import markdown_table

    heads = ["target", "model", "steps", "lr", "QA", "FB", "adversarial", "neighbour", "utility", "fluency ppl",
             "MIA AUC", "erase min"]
    rows = []
    for target, by_model in results.items():
        for name, r in by_model.items():
            rows.append([target, name, r.get("steps", ""), f"{r['lr']:g}" if "lr" in r else "",
                         *(r[k] for k in KEYS), r.get("erase_minutes", "")])
    mean_heads = ["method", "targets", "QA drop", "FB drop", "adversarial drop", "neighbour / base", "utility / base",
                  "fluency ppl / base", "erase min"]
    means = []
    for m in methods:
        runs = [(by[m], by["base"]) for by in results.values() if m in by]
        if not runs:
            continue

        def avg(f):
            values = [f(r, b) for r, b in runs]
            return sum(values) / len(values)

        means.append([m, len(runs), avg(lambda r, b: b["forget_qa"] - r["forget_qa"]),
                      avg(lambda r, b: b["forget_fb"] - r["forget_fb"]),
                      avg(lambda r, b: b["forget_adversarial"] - r["forget_adversarial"]),
                      avg(lambda r, b: r["neighbour"] / b["neighbour"]), avg(lambda r, b: r["utility"] / b["utility"]),
                      avg(lambda r, b: r["fluency_ppl"] / b["fluency_ppl"]), avg(lambda r, b: r["erase_minutes"])])
    text = markdown_table(heads, rows) + "\n\nMean over the targets:\n\n" + markdown_table(mean_heads, means)
    flagged = [[target, name, *(r["guard_flag_rate"].get(k, "") for k in ("forget", "neighbour", "utility", "fluency"))]
               for target, by_model in results.items() for name, r in by_model.items() if "guard_flag_rate" in r]
    if flagged:  # ECO: how often its prompt classifier fires on each kind of probe
        text += "\n\nShare of probes the ECO classifier flags:\n\n" + markdown_table(
            ["target", "model", "forget probes", "neighbour probes", "utility probes", "fluency texts"], flagged)
    return text


def merge_results(folders: list[Path]) -> dict:
    """The rows of several runs' results.json: per target, each model's row from the first folder that has it (the
    target order of the first folder that names each target)."""
    merged: dict = {}
    for folder in folders:
        for target, by_model in json.loads((Path(folder) / "results.json").read_text()).items():
            for name, record in by_model.items():
                merged.setdefault(target, {}).setdefault(name, record)
    return merged


def write_readme(path: Path, block: str) -> None:
    from evals.report import write_between_markers

    write_between_markers(path, "rwku-table", block)


def main() -> None:
    from llm.rwku_benchmark import load_data

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", help="a mini-RWKU data file (default: the shipped one)")
    p.add_argument("--targets", nargs="*", help="default: every target of the data")
    p.add_argument("--methods", nargs="*", default=list(METHODS))
    p.add_argument("--out", default="out/rwku")
    p.add_argument("--readme", help="write the table into this markdown file between the rwku-table markers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="keep the runs already in OUT/results.json")
    p.add_argument("--table-only", action="store_true", help="run nothing: the table of OUT/results.json as it is "
                   "(a method missing for some targets is averaged over the targets it has)")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="with --table-only: the table of these runs' rows "
                   "(each target's row of a model from the first DIR that has it), written to OUT")
    p.add_argument("--settings", type=json.loads, help='JSON erase settings for every method instead of the '
                   'recommended ones, e.g. \'{"steps": 20, "lr": 3e-4, "batch_size": 8, "options": {"alpha": 5}}\'')
    args = p.parse_args()
    targets = args.targets or list(load_data(args.data)["targets"])
    t0 = time.time()
    if args.merge and not args.table_only:
        raise SystemExit("--merge goes with --table-only")
    if args.table_only:
        if args.merge:
            from evals.report import save_results

            results = merge_results([Path(d) for d in args.merge])
            save_results(args.out, results)
            sources = " ".join(args.merge)
            block = table(results, args.methods) + (f"\n\nMade by `python experiments/rwku_table.py --table-only "
                                                    f"--merge {sources}` from those runs' rows.")
        else:
            block = table(json.loads((Path(args.out) / "results.json").read_text()), args.methods)
    else:
        results = run(args.model, targets, args.methods, Path(args.out), args.seed, args.data, args.resume,
                      args.settings)
        block = table(results, args.methods) + (f"\n\nThis invocation: {(time.time() - t0) / 60:.0f} min "
                                                f"(`python experiments/rwku_table.py`).")
    (Path(args.out) / "table.md").write_text(block + "\n")
    if args.readme:
        write_readme(Path(args.readme), block)
    print(block)


if __name__ == "__main__":
    main()
