"""The robustness evaluator: run attacks against an erased model and report attack success rates.

ASR as in UnlearnDiff: (prompts whose plain generation already shows the concept + prompts the attack
breaks) / N. A judge decides "the concept is there" (the mini-canvas evaluator for diffusion). The same
report carries the model's utility numbers so robustness and utility are read side by side.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from erasure.adversary import Adversary

logger = logging.getLogger(__name__)

ATTACKS = ("unlearndiff", "embedding", "random")


def make_attack(name: str, **options: Any) -> Adversary:
    """An attack by name: unlearndiff (discrete tokens), embedding (continuous prefix), random (baseline)."""
    from attacks.random_tokens import RandomTokens
    from attacks.unlearndiff import UnlearnDiff

    if name == "unlearndiff":
        return UnlearnDiff(**options)
    if name == "embedding":
        return UnlearnDiff(**{"variant": "embedding", **options})
    if name == "random":
        return RandomTokens(**options)
    raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")


def concept_judge(judge: Any, domain: str, concept: str) -> Callable[[torch.Tensor], list[bool]]:
    """Images -> [judge sees ``concept`` in its ``domain`` head] (``ValueError`` if the judge cannot)."""
    from evals.canvas import judge_index

    target = judge_index(judge, domain, concept)
    return lambda images: (judge.predict(images)[domain] == target).tolist()


def audit_diffusion(adapter: Any, judge: Callable[[torch.Tensor], list[bool]], prompts: Sequence[str],
                    target_images: Callable[[str], torch.Tensor], attack: Adversary, seed: int = 0,
                    sample_steps: int = 20, guidance: float = 3.0) -> dict:
    """Attack every prompt; returns the audit record (pre/post ASR, per-prompt results, success images).

    Args:
        adapter: a ``DiffusionAdapter`` of the erased model.
        judge: images -> concept present?
        prompts: the N prompts that ask for the erased concept.
        target_images: prompt -> images (B, 3, H, W) showing the concept (UnlearnDiff's x_tgt).
        attack: the adversary.
        seed: seeds generation and the attack.
        sample_steps, guidance: generation settings for the pre-attack check.
    """
    from diffusion.adapter import DiffusionBatch

    pipe = adapter.pipe
    t0 = time.time()
    pre_images = pipe.sample(list(prompts), num_steps=sample_steps, guidance=guidance, seed=seed)
    pre = judge(pre_images)
    results, success_images = [], []
    for i, prompt in enumerate(prompts):
        if pre[i]:
            results.append({"prompt": prompt, "pre_success": True, "success": True, "steps": 0, "seconds": 0.0})
            continue
        batch = DiffusionBatch([prompt], target_images(prompt).to(pipe.device))
        res = attack.attack(adapter, batch, torch.Generator().manual_seed(seed * 1000 + i), judge=judge)
        ok = bool(res.success and res.success[0])
        row = {"prompt": prompt, "pre_success": False, "success": ok, "steps": res.info.get("steps"),
               "seconds": res.info.get("seconds"), "adversarial_prompt": res.info.get("adversarial_prompt"),
               "objective_start": res.info.get("objective_start"), "objective_end": res.info.get("objective_end")}
        if ok:
            with torch.no_grad():
                cond = pipe.encode_prompts([prompt], prefix=res.batch.prefix)
                img = pipe.sample([prompt], num_steps=sample_steps, guidance=guidance, seed=seed, cond=cond)
            success_images.append(img[0])
            row["prefix_embedding_index"] = len(success_images) - 1
            row["_prefix"] = res.batch.prefix.detach().cpu()
        results.append(row)
    n = len(prompts)
    n_pre = sum(bool(p) for p in pre)
    n_post = sum(r["success"] for r in results)
    return {"pre_asr": n_pre / n, "post_asr": n_post / n, "n": n, "attack": attack.name,
            "per_prompt": results, "seconds": round(time.time() - t0, 2), "_success_images": success_images}


def write_audit(record: dict, out: str | Path) -> Path:
    """audit.json (+ adversarial prefix embeddings as safetensors, + a grid of the successful attacks)."""
    from safetensors.torch import save_file

    from evals.report import image_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prefixes = {}
    for i, row in enumerate(record["per_prompt"]):
        if "_prefix" in row:
            prefixes[f"prompt_{i}"] = row.pop("_prefix").contiguous()
            row["embedding_file"] = "adversarial_prefixes.safetensors"
            row["embedding_key"] = f"prompt_{i}"
    if prefixes:
        save_file(prefixes, out / "adversarial_prefixes.safetensors")
    images = record.pop("_success_images", [])
    if images:
        image_grid([images[i : i + 8] for i in range(0, len(images), 8)]).save(out / "successful_attacks.png")
    (out / "audit.json").write_text(json.dumps(record, indent=2))
    return out / "audit.json"


def audit_llm(adapter: Any, rows: Sequence[dict], attack: Adversary, threshold: float = 0.5,
              relearn_fraction: float = 0.5, seed: int = 0) -> dict:
    """ASR of an LLM attack on forget QA: the judge is ROUGE-L recall of the true answer >= ``threshold``.

    The soft-prompt attack is optimised on all rows; the relearning attack fine-tunes on the first
    ``relearn_fraction`` of the rows and is judged on the rest (knowledge it was not shown again).
    """
    from attacks.llm_attacks import answer_matcher, greedy_with_prefix

    rows = list(rows)
    t0 = time.time()
    if attack.name == "relearn":
        cut = max(1, int(len(rows) * relearn_fraction))
        train_rows, rows = rows[:cut], rows[cut:]
        if not rows:
            raise ValueError("the relearning audit needs forget rows left to judge after the relearning split")
        batch = adapter.collate(train_rows)
    else:
        batch = adapter.collate(rows)
    judge = answer_matcher(rows, threshold)
    pre = judge(greedy_with_prefix(adapter, rows, None))
    res = attack.attack(adapter, batch, torch.Generator().manual_seed(seed), judge=judge, rows=rows)
    post = [bool(a or b) for a, b in zip(pre, res.success or [False] * len(rows))]
    n = len(rows)
    return {"pre_asr": sum(pre) / n, "post_asr": sum(post) / n, "n": n, "attack": attack.name,
            "per_example": [{"question": r["question"], "pre_success": p, "success": s}
                            for r, p, s in zip(rows, pre, post)],
            "trace": res.trace, "seconds": round(time.time() - t0, 2)}
