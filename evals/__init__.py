"""Metrics (registry, UnlearnCanvas UA/IRA/CRA), judges and reports."""

from evals.judges import CanvasClassifier, ConceptJudge
from evals.metrics import get_metric, metric_names, register_metric



def audit(model: str, concept: str, attack: str = "unlearndiff", out: str | None = None, **options):
    """Attack an erased model (a folder or built-in name) and report ASR; same options as ``erasure audit``.

    See ``evals.canvas_run.run_audit`` for the options (n, original, seed, attack_options, evaluator...).
    """
    from evals.canvas_run import run_audit

    return run_audit(model, concept, attack, out, **options)


__all__ = ["CanvasClassifier", "ConceptJudge", "audit", "get_metric", "metric_names", "register_metric"]
