"""UnlearnCanvas evaluation (Zhang et al. 2024, https://arxiv.org/abs/2402.11846) from generated images.

For an erased concept in domain D (style or object), with the other domain D':
* UA  = fraction of images prompted with the concept that the judge does NOT classify as the concept (in D);
* IRA = judge accuracy in D on images prompted with the other concepts of D;
* CRA = judge accuracy in D' on those same images (objects when a style is erased, and vice versa).
"""

from __future__ import annotations

import time
from typing import Any

from evals.judges import ConceptJudge, judge_index  # noqa: F401  (judge_index: re-exported)
from evals.metrics import get_metric


def eval_pairs(concepts: Any, concept: str, target_per_prompt: int = 5, other_per_prompt: int = 1
               ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (style, object) of every image the evaluation generates: ``target_per_prompt`` per prompt that names
    ``concept``, ``other_per_prompt`` per prompt of every other concept of its domain. Returns (target, other)."""
    domain = concepts.domain(concept)

    def pairs_for(match: bool, per: int) -> list[tuple[str, str]]:
        return [(s, o) for s in concepts.styles for o in concepts.objects
                if ((s if domain == "style" else o) == concept) == match for _ in range(per)]

    return pairs_for(True, target_per_prompt), pairs_for(False, other_per_prompt)


def generate_eval_set(pipe: Any, concepts: Any, concept: str, target_per_prompt: int = 5,
                      other_per_prompt: int = 1, num_steps: int = 20, guidance: float = 3.0, seed: int = 0,
                      show_progress: bool = False) -> dict[str, Any]:
    """Generate the target-concept and other-concept images the metrics need.

    Returns:
        {"target": (images, [(style, object)]), "other": (images, [(style, object)])}
    """
    target_pairs, other_pairs = eval_pairs(concepts, concept, target_per_prompt, other_per_prompt)
    prompts = [concepts.prompt(o, s) for s, o in target_pairs + other_pairs]
    images = pipe.sample(prompts, num_steps=num_steps, guidance=guidance, seed=seed, show_progress=show_progress)
    n = len(target_pairs)
    return {"target": (images[:n], target_pairs), "other": (images[n:], other_pairs)}


def unlearncanvas_scores(judge: ConceptJudge, concept: str, domain: str, generated: dict[str, Any]) -> dict:
    """UA / IRA / CRA (each in the metric shape) from images made by ``generate_eval_set``."""
    other_domain = "object" if domain == "style" else "style"
    col = {"style": 0, "object": 1}
    target_id = judge_index(judge, domain, concept)
    t_images, _ = generated["target"]
    o_images, o_pairs = generated["other"]
    t_pred = judge.predict(t_images)
    o_pred = judge.predict(o_images)
    o_labels = {d: [judge_index(judge, d, p[col[d]]) for p in o_pairs] for d in ("style", "object")}
    return {
        "ua": get_metric("ua")(t_pred[domain], target_id),
        "ira": get_metric("ira")(o_pred[domain], o_labels[domain]),
        "cra": get_metric("cra")(o_pred[other_domain], o_labels[other_domain]),
    }


def evaluate_concept(pipe: Any, judge: ConceptJudge, concepts: Any, concept: str,
                     target_per_prompt: int = 5, other_per_prompt: int = 1, num_steps: int = 20,
                     guidance: float = 3.0, seed: int = 0, show_progress: bool = False,
                     return_images: bool = False) -> dict:
    """Generate and score; returns the flat ``eval.json`` record (ua, ira, cra, domain, counts, seconds).

    Args:
        pipe: the (erased) pipeline (anything with ``sample(prompts, num_steps, guidance, seed, show_progress)``).
        judge: a ``ConceptJudge`` with "style" and "object" heads.
        concepts: the model's concept vocabulary.
        concept: the erased (or to-be-erased) concept.
        target_per_prompt: images per prompt containing the concept (UA sample size = this x other-domain size).
        other_per_prompt: images per prompt of every other concept (IRA/CRA sample).
        num_steps: DDIM steps.
        guidance: CFG scale.
        seed: generation seed (use the same before and after erasure).
        show_progress: tqdm over sampling batches.
        return_images: also return the generated images under "_images".
    """
    domain = concepts.domain(concept)
    judge_index(judge, domain, concept)  # fail before generating anything
    t0 = time.time()
    generated = generate_eval_set(pipe, concepts, concept, target_per_prompt, other_per_prompt, num_steps,
                                  guidance, seed, show_progress)
    t_gen = time.time() - t0
    scores = unlearncanvas_scores(judge, concept, domain, generated)
    record = {
        "concept": concept, "domain": domain,
        "ua": scores["ua"]["agg_value"], "ira": scores["ira"]["agg_value"], "cra": scores["cra"]["agg_value"],
        "n_target": len(generated["target"][1]), "n_other": len(generated["other"][1]),
        "ddim_steps": num_steps, "guidance": guidance, "seed": seed,
        "seconds": {"generate": round(t_gen, 2), "total": round(time.time() - t0, 2)},
        "per_sample": {k: v["value_by_index"] for k, v in scores.items()},
    }
    if return_images:
        record["_images"] = generated
    return record
