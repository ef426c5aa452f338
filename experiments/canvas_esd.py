"""ESD on the shipped mini-canvas model for several concepts, through the CLI commands a user runs.

    python experiments/canvas_esd.py --out out/canvas-esd [--concepts Neon Mosaic Star] [--method esd-x]
    python experiments/canvas_esd.py --concepts Neon Sketch Square --seeds 0 1 2 --option ddim_steps=50 --out out/esd-d50
    python experiments/canvas_esd.py --concepts Neon --seeds 0 1 2 --erase-args "--mask m/salun --lr 5e-4" --out out/salun

For each concept: `erasure erase` (once per erase seed, with any `--option KEY=VALUE` passed on) then `erasure eval`
on the erased model (and once on the original; evaluation seed `--seed`); writes table.md (means over the erase
seeds) and results.json (every run) with UA / IRA / CRA before and after.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from erasure.cli import main as cli
from evals.report import markdown_table


def run(args: list[str]) -> None:
    code = cli(args)
    if code != 0:
        raise SystemExit(f"erasure {' '.join(args)} failed with code {code}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/canvas-esd")
    p.add_argument("--concepts", nargs="*", default=["Neon", "Mosaic", "Star"])
    p.add_argument("--method", default="esd-x")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (and the erase seed without --seeds)")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="erase seeds; the table shows their means")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a method option for erase")
    p.add_argument("--erase-args", default="", help="more `erasure erase` arguments, e.g. '--lr 5e-4 --mask m "
                   "--optimizer sophia' (a mask from `erasure mask`)")
    args = p.parse_args()
    out = Path(args.out)
    seeds = args.seeds or [args.seed]
    options = [a for o in args.option for a in ("--option", o)] + shlex.split(args.erase_args)
    rows, results = [], {}
    for concept in args.concepts:
        run(["eval", "--model", "mini-canvas", "--concept", concept, "--out", str(out / concept / "before"),
             "--seed", str(args.seed), "--overwrite"])
        before = json.loads((out / concept / "before" / "eval.json").read_text())
        runs = []
        for seed in seeds:
            folder = out / concept / (f"seed{seed}" if args.seeds else "")
            run(["erase", "--model", "mini-canvas", "--concept", concept, "--method", args.method, *options,
                 "--out", str(folder / "model"), "--seed", str(seed), "--overwrite"])
            run(["eval", "--model", str(folder / "model"), "--concept", concept,
                 "--out", str(folder / "after"), "--seed", str(args.seed), "--overwrite"])
            after = json.loads((folder / "after" / "eval.json").read_text())
            erased = json.loads((folder / "model" / "erasure.json").read_text())
            runs.append({"seed": seed, "after": {k: after[k] for k in ("ua", "ira", "cra")}, "steps": erased["steps"],
                         "lr": erased["train_config"]["lr"], "erase_seconds": erased["seconds"]})
        mean = {k: statistics.mean(r["after"][k] for r in runs) for k in ("ua", "ira", "cra")}
        seconds = statistics.mean(r["erase_seconds"] for r in runs)
        results[concept] = {"domain": before["domain"], "before": {k: before[k] for k in ("ua", "ira", "cra")},
                            "after": mean, "steps": runs[0]["steps"], "lr": runs[0]["lr"], "erase_seconds": seconds,
                            "options": args.option, "erase_args": args.erase_args, "runs": runs}
        rows.append([concept, before["domain"], before["ua"], mean["ua"], mean["ira"], mean["cra"], runs[0]["steps"],
                     seconds])
    table = markdown_table(["concept", "domain", "UA before", "UA after", "IRA after", "CRA after", "steps",
                            "erase s"], rows)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)


if __name__ == "__main__":
    main()
