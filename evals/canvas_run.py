"""End-to-end diffusion runs behind the CLI: erase, evaluate, and the before/after demo."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from diffusion.adapter import DiffusionAdapter
from diffusion.pipeline import T2IPipeline
from erasure.api import erase
from erasure.models import apply_recommended, resolve_model_path
from evals.canvas import evaluate_concept
from evals.judges import CanvasClassifier
from evals.report import image_grid, markdown_table, save_text

logger = logging.getLogger(__name__)

def load_pipeline(model: str) -> T2IPipeline:
    """A built-in name (``mini-canvas``) or a pipeline folder."""
    return T2IPipeline.load(resolve_model_path(model))


def require_concepts(pipe: T2IPipeline, model: str):
    if pipe.concepts is None:
        raise ValueError(f"model {model!r} has no concepts.json: the UnlearnCanvas metrics need its style/object "
                         "vocabulary")
    return pipe.concepts


def run_erase(model: str, concept: str, method: str, out: str, steps: int | None = None, lr: float | None = None,
              seed: int = 0, train: dict | None = None, method_options: dict | None = None) -> dict:
    """Erase ``concept`` from ``model`` and save the result to ``out``; returns the erasure summary."""
    pipe = load_pipeline(model)
    if not str(concept).strip():
        raise ValueError("concept is empty: name the concept to erase")
    if pipe.concepts is not None:
        pipe.concepts.domain(concept)  # unknown concept -> clear error before any work
    steps, lr, train, options = apply_recommended(model, method, steps, lr, train, method_options, concept)
    result = erase(DiffusionAdapter(pipe), concept=concept, method=method, steps=steps, lr=lr, seed=seed,
                   train=train, **options)
    result.save(out)
    return json.loads((Path(out) / "erasure.json").read_text())


def run_eval(model: str, concept: str, out: str | None = None, evaluator: str = "mini-canvas-evaluator",
             target_per_prompt: int = 5, other_per_prompt: int = 1, ddim_steps: int = 20, guidance: float = 3.0,
             seed: int = 0, pipe: T2IPipeline | None = None) -> dict:
    """UnlearnCanvas UA/IRA/CRA of ``model`` for ``concept``; writes out/eval.json and out/samples.png."""
    pipe = pipe or load_pipeline(model)
    concepts = require_concepts(pipe, model)
    judge = CanvasClassifier.load(resolve_model_path(evaluator))
    record = evaluate_concept(pipe, judge, concepts, concept, target_per_prompt, other_per_prompt, ddim_steps,
                              guidance, seed, show_progress=True, return_images=True)
    images = record.pop("_images")
    record["model"] = model
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "eval.json").write_text(json.dumps(record, indent=2))
        t_img, t_pairs = images["target"]
        per = max(1, target_per_prompt)
        rows = [list(t_img[i : i + per]) for i in range(0, len(t_img), per)]
        image_grid(rows, row_labels=[f"{s}/{o}" for s, o in t_pairs[::per]]).save(Path(out) / "samples.png")
    record["_images"] = images
    return record


def run_demo(out: str = "out/demo", concept: str = "Neon", method: str = "esd-x", model: str = "mini-canvas",
             steps: int | None = None, lr: float | None = None, seed: int = 0, ddim_steps: int = 20) -> dict:
    """Evaluate, erase, re-evaluate; writes report.json, before_after.png, report.md and the erased model."""
    t0 = time.time()
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(model)
    concepts = require_concepts(pipe, model)
    domain = concepts.domain(concept)
    logger.info("demo: evaluating the original model on %r", concept)
    before = run_eval(model, concept, pipe=pipe, seed=seed, ddim_steps=ddim_steps)
    t_before = time.time() - t0
    t1 = time.time()
    summary = run_erase(model, concept, method, str(outp / "model"), steps=steps, lr=lr, seed=seed)
    t_erase = time.time() - t1
    t2 = time.time()
    after = run_eval(str(outp / "model"), concept, seed=seed, ddim_steps=ddim_steps)
    t_after = time.time() - t2

    keys = ("ua", "ira", "cra")
    report = {
        "concept": concept, "domain": domain, "method": method, "model": model,
        "before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys},
        "n_target": after["n_target"], "n_other": after["n_other"],
        "erase": {"steps": summary["steps"], "lr": summary["train_config"]["lr"],
                  "trainable_parameters": summary["trainable_parameters"]},
        "seconds": {"eval_before": round(t_before, 1), "erase": round(t_erase, 1), "eval_after": round(t_after, 1),
                    "total": round(time.time() - t0, 1)},
    }
    (outp / "report.json").write_text(json.dumps(report, indent=2))

    # before/after grid: the erased concept's prompts, then a few other prompts (same seeds on both sides)
    tb, ta = before["_images"]["target"][0], after["_images"]["target"][0]
    ob, oa = before["_images"]["other"][0], after["_images"]["other"][0]
    o_pairs = after["_images"]["other"][1]
    per = max(1, len(tb) // len(concepts.prompts_with(concept)))
    pick_t = list(range(0, len(tb), per))[:6]
    pick_o = list(range(0, len(ob), max(1, len(ob) // 6)))[:6]
    grid = image_grid([[tb[i] for i in pick_t], [ta[i] for i in pick_t], [ob[i] for i in pick_o],
                       [oa[i] for i in pick_o]],
                      row_labels=[f"{concept} before", f"{concept} after", "others before", "others after"])
    grid.save(outp / "before_after.png")
    table = markdown_table(["", "UA", "IRA", "CRA"],
                           [["before", *(before[k] for k in keys)], ["after", *(after[k] for k in keys)]])
    md = (f"# Erasing {domain} `{concept}` with {method}\n\n"
          f"Model `{model}`; {summary['steps']} steps at lr {summary['train_config']['lr']:g}; "
          f"{report['n_target']} images of the concept, {report['n_other']} of other concepts; judge: "
          f"mini-canvas evaluator.\n\n{table}\n\n"
          "UA: share of the concept's images the judge no longer recognises as the concept (higher = erased).\n"
          "IRA/CRA: judge accuracy on the other concepts of the same / the other domain (higher = kept).\n\n"
          f"![before and after](before_after.png)\n\nSeconds: {report['seconds']}\n")
    save_text(outp / "report.md", md)
    return report


def target_image_source(pipe: T2IPipeline, original: str | None, per_prompt: int = 4, seed: int = 0):
    """prompt -> images showing the concept: generated by ``original`` when given, else rendered mini-canvas
    images (the model's vocabulary must then be mini-canvas's)."""
    if original is not None:
        orig = load_pipeline(original)
        return lambda prompt: orig.sample([prompt] * per_prompt, seed=seed)
    from canvas_data.dataset import to_tensor
    from canvas_data.mini_canvas import OBJECTS, STYLES, render

    concepts = pipe.concepts
    if concepts is None or not set(concepts.styles) <= set(STYLES) or not set(concepts.objects) <= set(OBJECTS):
        raise ValueError("target images: give --original (the model before erasure) for models outside mini-canvas")
    lookup = {concepts.prompt(o, s): (s, o) for s in concepts.styles for o in concepts.objects}

    def render_targets(prompt: str):
        if prompt not in lookup:
            raise ValueError(f"no mini-canvas rendering for prompt {prompt!r}")
        s, o = lookup[prompt]
        return to_tensor([render(s, o, 90_000 + i) for i in range(per_prompt)])

    return render_targets


def run_audit(model: str, concept: str, attack: str | Sequence[str] = "unlearndiff", out: str | None = None,
              evaluator: str = "mini-canvas-evaluator", n: int | None = None, original: str | None = None,
              seed: int = 0, attack_options: dict | None = None, with_utility: bool = True) -> dict:
    """``erasure audit`` (diffusion): attack the concept's prompts with one or several attacks and judge.

    One attack writes out/audit.json (+ adversarial_prefixes.safetensors, successful_attacks.png) and returns
    its record; several write out/ATTACK/audit.json each and return the combined summary. Both also write
    out/robustness.json and out/robustness.md: ASR pre/post per attack plus the model's UA/IRA/CRA.

    Args:
        model: an erased pipeline folder or a built-in name.
        concept: the erased concept (must be in the model's vocabulary and known to the judge).
        attack: an attack name or a list of them (unlearndiff, embedding, random).
        out: output folder (nothing written when None).
        evaluator: the judge (folder or built-in name).
        n: attack at most the first ``n`` of the concept's prompts.
        original: the model before erasure; its generations are UnlearnDiff's targets (default: rendered
            mini-canvas images, for models of the mini-canvas vocabulary).
        seed: prompt i is judged with evaluation seed ``seed + i``.
        attack_options: options for every attack, or ``NAME.key`` for one (e.g. ``embedding.lr``).
        with_utility: also evaluate UA/IRA/CRA of the same model.
    """
    from diffusion.adapter import DiffusionAdapter
    from evals.robustness import audit_diffusion, build_attacks, concept_judge, robustness_summary, write_audit
    from evals.robustness import write_robustness

    names = [attack] if isinstance(attack, str) else list(attack)
    attacks = build_attacks(names, attack_options, seed=seed)
    pipe = load_pipeline(model)
    concepts = require_concepts(pipe, model)
    domain = concepts.domain(concept)
    judge_model = CanvasClassifier.load(resolve_model_path(evaluator))
    judge = concept_judge(judge_model, domain, concept)
    prompts = concepts.prompts_with(concept)[: n or None]
    targets = target_image_source(pipe, original, seed=seed)
    adapter = DiffusionAdapter(pipe)

    utility = None
    if with_utility:
        util = run_eval(model, concept, pipe=pipe, seed=seed, evaluator=evaluator)
        utility = {k: util[k] for k in ("ua", "ira", "cra")}

    def one(name: str, adversary: Any) -> dict:
        logger.info("audit: %s on %r (%d prompts)", name, concept, len(prompts))
        record = audit_diffusion(adapter, judge, prompts, targets, adversary, seed=seed)
        record.update({"model": model, "concept": concept, "domain": domain, "utility": utility})
        if out:
            write_audit(record, out if len(names) == 1 else Path(out) / name)
        return record

    records = {name: one(name, adversary) for name, adversary in attacks.items()}
    summary = robustness_summary(records, utility, model=model, concept=concept, domain=domain)
    if out:
        write_robustness(summary, out)
    if len(names) == 1:
        return records[names[0]]
    return summary
