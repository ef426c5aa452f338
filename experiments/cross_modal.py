"""Where and how the weights move, across modalities: dense vs masked (WAGLE, SalUn, random) x Adam vs Sophia.

    python experiments/cross_modal.py --out out/cross-modal          # mini-canvas, mini-tofu (NPO and GradDiff)
    python experiments/cross_modal.py --suites mini-rwku --out out/cross-modal --resume     # SmolLM2 (make real-lm)
    python experiments/cross_modal.py --suites tofu-smollm2 --out out/cross-modal --resume
    python experiments/cross_modal.py --out out/cross-modal --resume --readme README.md

One method per suite with its recommended settings (ESD-x on mini-canvas's Neon; NPO, or GradDiff in the suites
named ``...:graddiff``, on mini-TOFU forget10, on mini-RWKU's Harry Potter with SmolLM2, on TOFU-on-SmolLM2
forget10), erased eight ways: no mask or a WAGLE
(arXiv 2410.17509), SalUn (arXiv 2310.12508) or random mask at one ratio (``--ratio``, the same for every mask so
they compare at equal sparsity), each with the method's own first-order optimizer (Adam) or Sophia (SOUL, arXiv
2404.18239: betas 0.9/0.95, rho 0.04, weight decay 0.1). Masks are computed over the method's own selection from the
suite's forget (and retain) sets; their seconds count in the row's. Columns: each suite's forget and retain metrics
(mini-canvas UA / IRA / CRA; TOFU forget quality / model utility; mini-RWKU direct-QA and adversarial forget
accuracy, neighbour and utility accuracy). Writes results.json after every row (``--resume`` keeps what it holds),
table.md, and the table into a README between its cross-modal markers.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evals.report import add_table_options, markdown_table, publish_table, resumable_results, save_results

MASKS = ("dense", "wagle", "salun", "random")
OPTIMIZERS = ("adam", "sophia")


@dataclass
class Suite:
    """One modality's benchmark: a model, a method, its rows, and how a model is scored."""

    model: str
    method: str
    rows: Callable[[Any], dict]  # adapter -> erase()'s data arguments (concept= / forget= / retain=)
    score: Callable[[Any, str], dict]  # (adapter, label) -> {column: value}
    columns: tuple[str, ...]


def _canvas() -> Suite:
    from erasure.registry import get_benchmark

    def score(adapter: Any, label: str) -> dict:
        r = get_benchmark("unlearncanvas", "diffusion").evaluate(adapter, model=label, concept="Neon")
        return {"UA": r["ua"], "IRA": r["ira"], "CRA": r["cra"]}

    return Suite("mini-canvas", "esd-x", lambda a: {"concept": "Neon"}, score, ("UA", "IRA", "CRA"))


def _tofu(model: str, method: str) -> Callable[[], Suite]:
    def build() -> Suite:
        from llm.modality import LLM
        from llm.tofu_benchmark import MINI_TOFU, mini_tofu_data

        data, context = mini_tofu_data(), {}

        def score(adapter: Any, label: str) -> dict:
            if "reference" not in context:  # the retain model's truth ratios, from the original's evaluation
                context["reference"] = MINI_TOFU.evaluate(LLM.load(model), model=model, forget="forget10",
                                                          data=data)["retain_reference"]
            r = MINI_TOFU.evaluate(adapter, model=label, forget="forget10", data=data,
                                   retain_reference=context["reference"])
            return {"FQ": r["forget_quality"], "MU": r["model_utility"]}

        return Suite(model, method, lambda a: {"forget": "forget10"}, score, ("FQ", "MU"))

    return build


def _rwku(method: str, target: str = "Harry Potter") -> Callable[[], Suite]:
    return lambda: _rwku_suite(method, target)


def _rwku_suite(method: str, target: str) -> Suite:
    from llm.rwku_benchmark import MINI_RWKU

    def rows(adapter: Any) -> dict:
        forget, retain = MINI_RWKU.erase_data(adapter, target=target)
        return {"forget": forget, "retain": retain}

    def score(adapter: Any, label: str) -> dict:
        r = MINI_RWKU.evaluate(adapter, model=label, target=target)
        return {"QA": r["forget_qa"], "adversarial": r["forget_adversarial"], "neighbour": r["neighbour"],
                "utility": r["utility"]}

    return Suite("smollm2-135m", method, rows, score, ("QA", "adversarial", "neighbour", "utility"))


# name -> suite; the LLM benchmarks with NPO (their plain names) and with GradDiff (":graddiff"): WAGLE's and SOUL's
# two objectives
SUITES: dict[str, Callable[[], Suite]] = {"mini-canvas": _canvas}
for _m in ("npo", "graddiff"):
    _tail = "" if _m == "npo" else f":{_m}"
    SUITES.update({f"mini-tofu{_tail}": _tofu("mini-tofu", _m), f"mini-rwku{_tail}": _rwku(_m),
                   f"tofu-smollm2{_tail}": _tofu("smollm2-135m-tofu", _m)})


def run_row(suite: Suite, mask: str, optimizer: str, ratio: float, seed: int, lr: float | None = None) -> dict:
    """Erase with ``mask`` (computed over the method's selection) and ``optimizer`` (at ``lr``, else the method's
    recommended one); the row's metrics and seconds."""
    from erasure import erase, get_method
    from erasure.masks import compute
    from erasure.registry import modality_for
    from erasure.selectors import resolve_selector

    t0 = time.time()
    modality = modality_for(suite.model)
    adapter = modality.load(suite.model)
    data = suite.rows(adapter)
    weights = None
    if mask != "dense":
        spec = get_method(suite.method)
        selector = resolve_selector(spec.selector or adapter.default_selector) if not callable(spec.selector) else None
        weights = compute(adapter, mask, data.get("forget"), data.get("retain"), concept=data.get("concept"),
                          ratio=ratio, selector=selector, seed=seed)
    train = {"optimizer": "sophia"} if optimizer == "sophia" else {}
    result = erase(adapter, method=suite.method, seed=seed, mask=weights, train=train, lr=lr, **data)
    seconds = time.time() - t0
    return {**suite.score(result.adapter, f"{suite.model} {suite.method} {mask} {optimizer}"),
            "seconds": round(seconds, 1), "trainable": result.loop.trainable_parameters}


def _fmt(value: Any) -> Any:
    """Small values (TOFU's forget quality) with 2 significant digits, not as 0.000."""
    return f"{value:.2g}" if isinstance(value, float) and 0 < abs(value) < 0.01 else value


def table(results: dict, suites: list[str]) -> str:
    """One row per (mask, optimizer), each suite's columns side by side (n/a where a suite has not run)."""
    built = {name: SUITES[name]() for name in suites}
    head = ["mask", "optimizer"]
    for name, s in built.items():
        head += [f"{name} {c}" for c in (*s.columns, "s")]
    rows = []
    for label in ["base", *(f"{m} + {o}" for m in MASKS for o in OPTIMIZERS)]:
        mask, opt = ("(before erasure)", "") if label == "base" else label.split(" + ")
        row: list = [mask, opt]
        for name, s in built.items():
            r = results.get(name, {}).get(label, {})
            row += [_fmt(r.get(c)) for c in s.columns] + [r.get("seconds") if label != "base" else ""]
        rows.append(row)
    return markdown_table(head, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suites", nargs="*", default=["mini-canvas", "mini-tofu", "mini-tofu:graddiff"],
                   choices=list(SUITES))
    p.add_argument("--masks", nargs="*", default=list(MASKS), choices=MASKS)
    p.add_argument("--optimizers", nargs="*", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    p.add_argument("--ratio", type=float, default=0.5, help="the fraction of weights every mask keeps trainable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None,
                   help="every row's learning rate (default: each suite's recommended one, tuned for Adam); a run at "
                        "another lr goes to its own --out")
    add_table_options(p, "out/cross-modal", "cross-modal")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    results = resumable_results(out, args.resume)
    run = {"ratio": args.ratio, "seed": args.seed, **({"lr": args.lr} if args.lr is not None else {})}
    if results.setdefault("_run", run) != run:
        raise SystemExit(f"--resume: {out / 'results.json'} holds a run with {results['_run']}, not {run}")
    for name in args.suites:
        suite = SUITES[name]()
        done = results.setdefault(name, {})
        if "base" not in done:
            from erasure.registry import modality_for

            t0 = time.time()
            done["base"] = {**suite.score(modality_for(suite.model).load(suite.model), f"{suite.model} base"),
                            "seconds": round(time.time() - t0, 1)}
            save_results(out, results)
        for mask in args.masks:
            for optimizer in args.optimizers:
                label = f"{mask} + {optimizer}"
                if label not in done:
                    done[label] = run_row(suite, mask, optimizer, args.ratio, args.seed, args.lr)
                    save_results(out, results)
    shown = [n for n in SUITES if n in results]
    block = table(results, shown) + (f"\n\nMasks keep {args.ratio:g} of the method's weights; s: seconds to erase, "
                                     "the mask's included. `python experiments/cross_modal.py --suites "
                                     f"{' '.join(shown)} --ratio {args.ratio:g}"
                                     + (f" --lr {args.lr:g}" if args.lr is not None else "") + "`.")
    publish_table(out, block, args.readme, "cross-modal")
    print(block)


if __name__ == "__main__":
    main()
