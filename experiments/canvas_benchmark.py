"""Diffusion erasure methods side by side on mini-canvas, as UnlearnCanvas reports them (its Table 3 columns that
run offline: UA, IRA, CRA, FID, time, memory, storage).

    python experiments/canvas_benchmark.py --out out/canvas-bench          # every diffusion method; Neon, Square
    python experiments/canvas_benchmark.py --methods uce --concepts Neon Sketch Star --out out/canvas-uce
    python experiments/canvas_benchmark.py --methods ca --settings ca='{"steps": 200}' --out out/canvas-ca-200

``--methods`` defaults to every registered diffusion method; methods of either modality (eco, ga, npo, ...) run
when named. Each (method, concept) runs `erasure erase` in its own process (its peak resident memory is the memory
column) and `erasure eval` on the result, with the method's recommended settings for mini-canvas (or
``--settings``). Storage: the bytes of the tensors the erasure changed against the whole model's. Writes
results.json (after every run; ``--resume`` keeps the runs already there), table.md: one row per run, then the mean
per method (UnlearnCanvas Table 3 averages over concepts), and tradeoff.png (each method's mean UA against its
retainability, the mean of IRA and CRA). FID: the other concepts' generations against held-out renderings, on the
evaluator's features (lower is better; comparable only within this table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from evals.report import add_table_options, markdown_table, publish_table, resumable_results, save_results

_ERASE = ("import resource, sys; from erasure.cli import main; code = main(sys.argv[1:]); "
          "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")


def run_cli(args: list[str]) -> str:
    """Run ``erasure ARGS`` in a fresh process; its stdout, ending with the process's peak resident memory
    (``MAXRSS_KB n``); a failure ends the run, naming the command."""
    done = subprocess.run([sys.executable, "-c", _ERASE, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"erasure {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def changed_bytes(original: str, erased: str) -> tuple[int, int]:
    """(bytes of the tensors that differ, bytes of all tensors) between two saved pipelines."""
    from diffusion.modality import DIFFUSION
    from erasure.adapter import named_parameters

    a = named_parameters(DIFFUSION.load(original).modules())
    b = named_parameters(DIFFUSION.load(erased).modules())
    size = {n: p.numel() * p.element_size() for n, p in a.items()}
    return sum(size[n] for n in a if not (a[n] == b[n]).all()), sum(size.values())


def run_one(method: str, concept: str, out: Path, seed: int, settings: dict) -> dict:
    model = out / method / concept / "model"
    args = ["erase", "--model", "mini-canvas", "--concept", concept, "--method", method, "--out", str(model),
            "--seed", str(seed), "--overwrite"]
    for key in ("steps", "lr", "batch_size"):
        if key in settings:
            args += [f"--{key.replace('_', '-')}", str(settings[key])]
    for key, value in settings.get("options", {}).items():
        args += ["--option", f"{key}={json.dumps(value)}"]
    stdout = run_cli(args)
    peak_kb = int(next(line.split()[1] for line in stdout.splitlines() if line.startswith("MAXRSS_KB")))
    run_cli(["eval", "--model", str(model), "--concept", concept, "--out", str(out / method / concept / "eval"),
             "--seed", str(seed), "--overwrite"])
    ev = json.loads((out / method / concept / "eval" / "eval.json").read_text())
    erased = json.loads((model / "erasure.json").read_text())
    delta, total = changed_bytes("mini-canvas", str(model))
    return {"domain": ev["domain"], "ua": ev["ua"], "ira": ev["ira"], "cra": ev["cra"], "fid": ev.get("fid"),
            "erase_seconds": erased["seconds"], "steps": erased["steps"], "lr": erased["train_config"]["lr"],
            "peak_rss_mb": peak_kb / 1024, "changed_mb": delta / 2**20, "model_mb": total / 2**20,
            "settings": settings or "recommended", "seed": seed}


METRICS = ("ua", "ira", "cra", "fid", "erase_seconds", "peak_rss_mb", "changed_mb")


def method_means(results: dict) -> dict:
    """method -> {metric: mean over its concepts} (None where a run lacks the metric, e.g. FID of an old run)."""
    out = {}
    for m, by in results.items():
        runs = list(by.values())
        out[m] = {k: (sum(r[k] for r in runs) / len(runs) if all(r.get(k) is not None for r in runs) else None)
                  for k in METRICS}
        out[m]["concepts"] = len(runs)
    return out


def table(results: dict) -> str:
    heads = ["method", "concept", "domain", "UA", "IRA", "CRA", "FID", "steps", "erase s", "peak RSS MB",
             "changed MB"]
    rows = [[m, c, r["domain"], r["ua"], r["ira"], r["cra"], r.get("fid"), r["steps"], r["erase_seconds"],
             r["peak_rss_mb"], r["changed_mb"]] for m, by in results.items() for c, r in by.items()]
    means = [[m, v["concepts"], *(v[k] for k in METRICS)] for m, v in method_means(results).items()]
    return (markdown_table(heads, rows) + "\n\nMean over the concepts (UnlearnCanvas Table 3 style):\n\n" +
            markdown_table(["method", "concepts", "UA", "IRA", "CRA", "FID", "erase s", "peak RSS MB",
                            "changed MB"], means))


def tradeoff(results: dict, path: Path) -> Path:
    """UA against retainability ((IRA + CRA) / 2), one point per method (its means over the concepts)."""
    from erasure.plots import tradeoff_plot

    points = [(m, v["ua"], (v["ira"] + v["cra"]) / 2) for m, v in method_means(results).items()]
    return tradeoff_plot(points, path, x_label="UA (erased)", y_label="retainability (IRA + CRA) / 2",
                         title="mini-canvas: erasure vs what it keeps (mean over concepts)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="*", default=None, help="default: every registered diffusion method")
    p.add_argument("--concepts", nargs="*", default=["Neon", "Square"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", nargs="*", default=[], metavar="METHOD=JSON",
                   help='settings over the recommended ones (each key and option given replaces the '
                        'recommended one, the others stay), e.g. ca=\'{"steps": 200, "lr": 1e-5, '
                        '"options": {"anchor": "Sketch"}}\'')
    add_table_options(p, "out/canvas-bench", "canvas-bench", kept="runs")
    args = p.parse_args()
    if args.methods is None:
        from erasure.registry import get_method, method_names

        args.methods = [m for m in method_names() if get_method(m).modality == "diffusion"]
    settings = {}
    for item in args.settings:
        name, _, text = item.partition("=")
        if name not in args.methods:
            raise SystemExit(f"--settings names {name!r}, which is not among --methods")
        settings[name] = json.loads(text)
        unknown = set(settings[name]) - {"steps", "lr", "batch_size", "options"}
        if unknown:
            raise SystemExit(f"--settings {name}: unknown keys {sorted(unknown)} (steps, lr, batch_size, options)")
    out = Path(args.out)
    done = out / "results.json"
    results = resumable_results(out, args.resume)
    for method in args.methods:
        for concept in args.concepts:
            earlier = results.get(method, {}).get(concept)
            if earlier is not None:
                if (earlier["settings"], earlier.get("seed")) != (settings.get(method) or "recommended", args.seed):
                    raise SystemExit(f"--resume: {method} on {concept} in {done} ran with {earlier['settings']}, seed "
                                     f"{earlier.get('seed')}; give another --out for other settings")
                continue
            results.setdefault(method, {})[concept] = run_one(method, concept, out, args.seed,
                                                              settings.get(method, {}))
            save_results(out, results)
    publish_table(out, table(results), args.readme, "canvas-bench")
    tradeoff(results, out / "tradeoff.png")
    print(table(results))


if __name__ == "__main__":
    main()
