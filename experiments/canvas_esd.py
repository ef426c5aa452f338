"""ESD on the shipped mini-canvas model for several concepts, through the CLI commands a user runs.

    python experiments/canvas_esd.py --out out/canvas-esd [--concepts Neon Mosaic Star] [--method esd-x]

For each concept: `erasure erase` then `erasure eval` on the erased model (and once on the original);
writes table.md and results.json with UA / IRA / CRA before and after.
"""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    rows, results = [], {}
    for concept in args.concepts:
        run(["eval", "--model", "mini-canvas", "--concept", concept, "--out", str(out / concept / "before"),
             "--seed", str(args.seed), "--overwrite"])
        run(["erase", "--model", "mini-canvas", "--concept", concept, "--method", args.method,
             "--out", str(out / concept / "model"), "--seed", str(args.seed), "--overwrite"])
        run(["eval", "--model", str(out / concept / "model"), "--concept", concept,
             "--out", str(out / concept / "after"), "--seed", str(args.seed), "--overwrite"])
        before = json.loads((out / concept / "before" / "eval.json").read_text())
        after = json.loads((out / concept / "after" / "eval.json").read_text())
        erased = json.loads((out / concept / "model" / "erasure.json").read_text())
        results[concept] = {"domain": after["domain"], "before": {k: before[k] for k in ("ua", "ira", "cra")},
                            "after": {k: after[k] for k in ("ua", "ira", "cra")}, "steps": erased["steps"],
                            "lr": erased["train_config"]["lr"], "erase_seconds": erased["seconds"]}
        rows.append([concept, after["domain"], before["ua"], after["ua"], after["ira"], after["cra"],
                     erased["steps"], erased["seconds"]])
    table = markdown_table(["concept", "domain", "UA before", "UA after", "IRA after", "CRA after", "steps",
                            "erase s"], rows)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)


if __name__ == "__main__":
    main()
