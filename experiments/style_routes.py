"""Which wordings still draw a mini-canvas style: the style's name, its words (mini_canvas.STYLE_WORDS), prefixes.

    python experiments/style_routes.py --models mini-canvas out/neon --concept Neon --out out/style-routes

For every model and every wording below, one image per object (DDIM 20 steps, guidance 3, prompt i generated
with seed i) is judged by the evaluator; the table gives the share in which it finds the style (and the
prompted object). An erasure that only removed the name leaves the other routes open; a model that loses the
style whenever words stand in front of the prompt makes any prefix attack fight the model rather than the
erasure. Writes results.json and table.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WORDINGS = {
    "name": "A {o} image in {s} style.",
    "style words only": "{a} {b} {o} image.",
    "words in the template": "A {o} image in {a} {b} style.",
    "words before the prompt": "{a} {b} A {o} image in {s} style.",
    "neutral words before the prompt": "detailed simple A {o} image in {s} style.",
}


def style_routes(model: str, concept: str, evaluator: str = "mini-canvas-evaluator",
                 n: int | None = None) -> dict[str, dict]:
    """{wording: {"style": share of images judged ``concept``, "object": share with the prompted object,
    "example": a prompt}} over the first ``n`` mini-canvas objects (default: all)."""
    import torch

    from canvas_data.mini_canvas import OBJECTS, STYLE_WORDS, STYLES
    from diffusion.pipeline import T2IPipeline
    from erasure.models import resolve_model_path
    from evals.canvas import judge_index
    from evals.judges import CanvasClassifier

    if concept not in STYLE_WORDS:
        raise ValueError(f"{concept!r} is not a mini-canvas style; styles: {', '.join(STYLES)}")
    pipe = T2IPipeline.load(resolve_model_path(model))
    judge = CanvasClassifier.load(resolve_model_path(evaluator))
    a, b = STYLE_WORDS[concept]
    objects = OBJECTS[:n]
    prompts = [form.format(o=o, s=concept, a=a, b=b) for form in WORDINGS.values() for o in objects]
    seeds = list(range(len(objects))) * len(WORDINGS)  # object i: seed i in every wording
    pred = judge.predict(pipe.sample(prompts, num_steps=20, guidance=3.0, seeds=seeds))
    style = (pred["style"] == judge_index(judge, "style", concept)).float().view(len(WORDINGS), -1)  # (W, O)
    wanted = torch.tensor([judge_index(judge, "object", o) for o in objects]).repeat(len(WORDINGS))
    obj = (pred["object"] == wanted).float().view(len(WORDINGS), -1)  # (wordings, objects)
    return {name: {"style": float(style[i].mean()), "object": float(obj[i].mean()),
                   "example": prompts[i * len(objects)]} for i, name in enumerate(WORDINGS)}


def main() -> None:
    from evals.report import markdown_table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mini-canvas"])
    p.add_argument("--concept", default="Neon")
    p.add_argument("--evaluator", default="mini-canvas-evaluator")
    p.add_argument("--out", default="out/style-routes")
    args = p.parse_args()
    results = {m: style_routes(m, args.concept, args.evaluator) for m in args.models}
    rows = [[m, w, r["style"], r["object"], f"`{r['example']}`"] for m, by in results.items() for w, r in by.items()]
    block = markdown_table(["model", "wording", f"{args.concept} found", "object found", "example"], rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(block + "\n")
    print(block)


if __name__ == "__main__":
    main()
