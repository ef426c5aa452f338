"""Unlearning without changing weights, side by side with the model it runs on: SPUL on mini-sentiment (the paper's
classification setting) and ECO on mini-canvas concepts (its text-to-image variant). The mini-RWKU rows of both are
in ``experiments/rwku_table.py --methods spul eco``.

    make real-lm                                                     # once (the sentiment classifier)
    python experiments/weightless.py --out out/weightless --readme README.md
    python experiments/weightless.py --parts eco-canvas --concepts Neon Star --out out/eco-try

Each part erases with the model folder's recommended settings (``--settings`` JSON replaces them) and evaluates
the result with its benchmark next to the unerased model: forget / retain / test accuracy (and the greedy
answers'), chance and the saved prompt's folder for SPUL; UA, IRA, CRA for ECO, with the share of forget and retain
prompts its classifier flags. Writes results.json and table.md (and the table into the README between its
weightless-table markers with --readme).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable

PARTS = ("spul-sentiment", "eco-canvas")


def spul_sentiment(model: str, settings: list[dict | None], rows: dict, saved: Callable[[], None],
                   prompts: Path | None = None, trace_every: int = 0) -> dict:
    """The classifier and its SPUL prompts on mini-sentiment, added to ``rows``: {"classifier": record,
    "spul" or "spul <settings>": record} (one SPUL row per entry of ``settings``; None: the recommended ones);
    ``saved()`` after every row, so an interrupted run resumes from the last one. Each prompt is saved under
    ``prompts`` (a folder per row, named in its record), which ``erasure eval --model`` takes. With ``trace_every``
    N > 0, the forget and test reviews' answered rates are also measured every N steps during training (the
    record's "trace": [{"step", "forget", "test"}]), to show how the two move apart."""
    from erasure import erase
    from llm.modality import LLM
    from llm.sentiment import MINI_SENTIMENT, answer_accuracy, as_rows, load_data
    from llm.spul import SPULConfig

    if "classifier" not in rows:
        rows["classifier"] = MINI_SENTIMENT.evaluate(LLM.load(model), model=model)
        saved()
    forget, retain = MINI_SENTIMENT.erase_data(None)
    test = as_rows(load_data(None)["test"])
    for given in settings:
        name = f"spul {json.dumps(given, sort_keys=True)}" if given else "spul"
        if name in rows:
            if (given or {}).get("forget_target") == "random" and "random_labels" not in rows[name] \
                    and rows[name].get("prompt"):  # a row from before the measure: its saved prompt gets it
                prompted = LLM.load(rows[name]["prompt"])
                rows[name]["random_labels"] = random_label_share(prompted, forget, SPULConfig())
                saved()
            continue
        adapter, trace, traced = LLM.load(model), [], 0.0

        def measure(step: int, logs: dict) -> None:
            nonlocal traced
            if trace_every and step % trace_every == 0:
                t = time.time()
                adapter.model.eval()
                trace.append({"step": step, **{split: answer_accuracy(adapter, r)["agg_value"]
                                               for split, r in (("forget", forget), ("test", test))}})
                adapter.model.train()
                traced += time.time() - t

        t0 = time.time()
        result = erase(adapter, method="spul", forget=forget, retain=retain, on_step=measure, **(given or {}))
        minutes = round((time.time() - t0 - traced) / 60, 1)  # the trace's evaluations left out
        rows[name] = {**MINI_SENTIMENT.evaluate(result.adapter, model=f"{model} + {name}"), "erase_minutes": minutes,
                      "steps": result.loop.steps, "lr": result.train_config["lr"], **({"trace": trace} if trace else {})}
        if result.method_config.get("forget_target") == "random":  # given, or from recommended.json
            rows[name]["random_labels"] = random_label_share(result.adapter, forget,
                                                               SPULConfig(**result.method_config))
        if prompts is not None:  # the first free spul-N: an earlier run's prompt is never overwritten
            folder = next(f for i in itertools.count(len(rows)) if not (f := prompts / f"spul-{i}").exists())
            rows[name]["prompt"] = str(result.save(folder))
        saved()
    return rows


def random_label_share(adapter: Any, forget: list[dict], config: Any) -> float:
    """Share of the forget reviews whose greedy answer is the random label SPUL's ``forget_target="random"`` gave
    them (the draw of ``config``, an ``SPULConfig``): 1.0 when the prompt answers each with exactly its label."""
    from llm.sentiment import answer_accuracy
    from llm.spul import random_label

    adapter.model.eval()
    return answer_accuracy(adapter, random_label(config.refusals, config.seed)(forget, forget))["agg_value"]


def eco_canvas(model: str, concept: str, settings: dict | None) -> dict:
    """{"base": record, "eco": record} for one mini-canvas concept, the ECO row with its classifier's flag rates."""
    import torch

    from canvas_data.benchmark import UNLEARNCANVAS
    from diffusion.modality import DIFFUSION
    from erasure import erase

    base = UNLEARNCANVAS.evaluate(DIFFUSION.load(model), model=model, concept=concept)
    adapter = DIFFUSION.load(model)
    forget, retain = DIFFUSION.erase_data(adapter, concept=concept)
    t0 = time.time()
    result = erase(adapter, concept, method="eco", **(settings or {}))
    seconds = round(time.time() - t0, 1)
    with torch.no_grad():
        flags = {name: float(adapter.guard.flags(adapter.guard_features(rows)).float().mean())
                 for name, rows in (("forget", forget), ("retain", retain))}
    rec = UNLEARNCANVAS.evaluate(adapter, model=f"{model} + eco", concept=concept)
    rec.update(erase_seconds=seconds, strength=result.info["closed_form"]["strength"], flag_rate=flags)
    return {"base": base, "eco": rec}


def table(results: dict) -> str:
    from evals.report import markdown_table

    parts = []
    if "spul-sentiment" in results:
        r = results["spul-sentiment"]
        parts.append("SPUL on mini-sentiment (forget: 10% of the training reviews; acc: the label words scored "
                     "against each other; answered: the greedy answer is the label, the official code's accuracy):"
                     "\n\n" + markdown_table(
                         ["model", "forget acc", "retain acc", "test acc", "chance", "forget answered",
                          "test answered", "forget = random label", "steps", "lr", "erase min"],
                         [[name, x["forget_acc"], x["retain_acc"], x["test_acc"], x["chance"],
                           x.get("answer_acc", {}).get("forget", ""), x.get("answer_acc", {}).get("test", ""),
                           x.get("random_labels", ""), x.get("steps", ""), x.get("lr", ""), x.get("erase_minutes", "")]
                          for name, x in r.items()]))
    if "eco-canvas" in results:
        rows = []
        for concept, r in results["eco-canvas"].items():
            for name, x in r.items():
                f = x.get("flag_rate", {})
                rows.append([concept, name, x["ua"], x["ira"], x["cra"], f.get("forget", ""), f.get("retain", ""),
                             x.get("strength", ""), x.get("erase_seconds", "")])
        parts.append("ECO on mini-canvas (UA: the concept no longer recognised; IRA, CRA: the other concepts):\n\n"
                     + markdown_table(["concept", "model", "UA", "IRA", "CRA", "flags forget prompts",
                                       "flags retain prompts", "strength", "erase s"], rows))
    return "\n\n".join(parts)


def main() -> None:
    from evals.report import add_table_options, publish_table, resumable_results, save_results

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    p.add_argument("--classifier", default="smollm2-135m-sentiment", help="SPUL's classifier model")
    p.add_argument("--canvas", default="mini-canvas", help="ECO's text-to-image model")
    p.add_argument("--concepts", nargs="*", default=["Neon", "Star"])
    p.add_argument("--settings", type=json.loads, help="JSON erase settings for ECO instead of the recommended ones")
    p.add_argument("--spul-settings", type=json.loads, nargs="*", default=[None],
                   help="one SPUL row per JSON settings (default: one row, the recommended settings)")
    p.add_argument("--trace-every", type=int, default=0,
                   help="also measure SPUL's forget and test answered rates every N training steps (0: never)")
    add_table_options(p, "out/weightless", "weightless-table", kept="parts (and concepts)")
    args = p.parse_args()
    out = Path(args.out)
    results = resumable_results(out, args.resume)
    t0 = time.time()
    if "spul-sentiment" in args.parts:
        rows = results.setdefault("spul-sentiment", {})
        spul_sentiment(args.classifier, args.spul_settings, rows, lambda: save_results(out, results), out / "prompts",
                       args.trace_every)
    if "eco-canvas" in args.parts:
        for concept in args.concepts:
            if concept not in results.setdefault("eco-canvas", {}):
                results["eco-canvas"][concept] = eco_canvas(args.canvas, concept, args.settings)
                save_results(out, results)
    block = table(results) + f"\n\n`python experiments/weightless.py` ({(time.time() - t0) / 60:.0f} min here)."
    publish_table(out, block, args.readme, "weightless-table")
    print(block)


if __name__ == "__main__":
    main()
