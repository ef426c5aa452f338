"""Metrics (registry, UnlearnCanvas UA/IRA/CRA, TOFU, MUSE), judges, the robustness evaluator and reports."""

from __future__ import annotations

from typing import Any, Sequence

from evals.judges import CanvasClassifier, ConceptJudge
from evals.metrics import get_metric, metric_names, register_metric


def audit(model: str, target: str | None = None, attack: str | Sequence[str] | None = None, out: str | None = None,
          **options: Any) -> dict:
    """Attack an erased model (a folder or built-in name) with one or several registered attacks and report ASR next
    to its utility; the Python face of ``erasure audit``.

    Args:
        model: the erased model; its modality is detected (``erasure.registry.modality_for``).
        target: what was erased, as the benchmark names it: the concept (diffusion, e.g. "Neon") or the forget set
            (LLM, e.g. "forget10"); also accepted as ``concept=`` / ``forget=``.
        attack: an attack name or a list (default: the modality's, e.g. unlearndiff / soft-prompt).
        out: output folder (nothing written when None).
        **options: ``evals.robustness.run_audit``'s options (benchmark, n, seed, original, attack_options,
            with_utility) and the benchmark's (evaluator; threshold, retain_model...).

    Returns:
        The audit record for one attack, the combined summary (``attacks``, ``utility``) for several.
    """
    from erasure.registry import get_benchmark, modality_for

    modality = modality_for(model, override=options.pop("modality", None))
    if target is not None:
        bench = get_benchmark(options.get("benchmark") or modality.default_benchmark, modality.name)
        options[bench.target] = target
    return modality.audit(model, attack, out, **options)


__all__ = ["CanvasClassifier", "ConceptJudge", "audit", "get_metric", "metric_names", "register_metric"]
