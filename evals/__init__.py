"""Metrics (registry, UnlearnCanvas UA/IRA/CRA), judges and reports."""

from evals.judges import CanvasClassifier, ConceptJudge
from evals.metrics import get_metric, metric_names, register_metric

__all__ = ["CanvasClassifier", "ConceptJudge", "get_metric", "metric_names", "register_metric"]
