"""Metric registry. Every metric returns ``{"agg_value": float, "value_by_index": list}`` (open-unlearning's
shape): the aggregate plus the per-sample values it was computed from, so reports can be re-aggregated.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

_METRICS: dict[str, Callable[..., dict]] = {}


def register_metric(name: str) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Decorator: register ``fn`` under ``name`` (one registration place per metric)."""

    def wrap(fn: Callable[..., dict]) -> Callable[..., dict]:
        if name in _METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        _METRICS[name] = fn
        return fn

    return wrap


def get_metric(name: str) -> Callable[..., dict]:
    if name not in _METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(_METRICS))}")
    return _METRICS[name]


def metric_names() -> list[str]:
    return sorted(_METRICS)


def _result(per_sample: torch.Tensor) -> dict:
    values = per_sample.float()
    return {"agg_value": float(values.mean()) if len(values) else float("nan"), "value_by_index": values.tolist()}


@register_metric("ua")
def unlearning_accuracy(pred: torch.Tensor, target: int) -> dict:
    """UnlearnCanvas UA: fraction of generations for the erased concept NOT classified as it.

    Args:
        pred: (N,) predicted class ids, in the erased concept's domain, of images prompted with the concept.
        target: the erased concept's class id.
    """
    return _result(torch.as_tensor(pred) != target)


@register_metric("ira")
def in_domain_retain_accuracy(pred: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> dict:
    """UnlearnCanvas IRA: classification accuracy on the *other* concepts of the erased concept's domain."""
    return _result(torch.as_tensor(pred) == torch.as_tensor(labels))


@register_metric("cra")
def cross_domain_retain_accuracy(pred: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> dict:
    """UnlearnCanvas CRA: classification accuracy in the other domain (objects when a style is erased)."""
    return _result(torch.as_tensor(pred) == torch.as_tensor(labels))
