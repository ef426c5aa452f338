"""Metrics (registry, UnlearnCanvas UA/IRA/CRA), judges and reports."""

from typing import Sequence

from evals.judges import CanvasClassifier, ConceptJudge
from evals.metrics import get_metric, metric_names, register_metric


def audit(model: str, concept: str | None = None, attack: str | Sequence[str] | None = None, out: str | None = None,
          forget: str | None = None, **options):
    """Attack an erased model (a folder or built-in name) with one or several attacks and report ASR next to its
    utility; the Python face of ``erasure audit``.

    Diffusion models need ``concept`` (attacks: unlearndiff, embedding, random); LLMs take ``forget`` (default
    forget10; attacks: soft-prompt, relearn). Other options: see ``evals.canvas_run.run_audit`` and
    ``evals.llm_run.run_llm_audit`` (n, seed, attack_options, with_utility, original, evaluator, threshold...).

    Returns:
        The audit record for one attack, the combined summary (``attacks``, ``utility``) for several.
    """
    from evals.llm_run import is_llm_model

    if is_llm_model(model):
        from evals.llm_run import run_llm_audit

        return run_llm_audit(model, forget or "forget10", attack or "soft-prompt", out, **options)
    from evals.canvas_run import run_audit

    if concept is None:
        raise ValueError("auditing a diffusion model needs the erased concept")
    return run_audit(model, concept, attack or "unlearndiff", out, **options)


__all__ = ["CanvasClassifier", "ConceptJudge", "audit", "get_metric", "metric_names", "register_metric"]
