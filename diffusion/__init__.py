"""Diffusion adapter over diffusers components, sampling, ESD, AdvUnlearn, the modality entry and the tiny
pipeline builder. Names below are imported on first use, so ``import diffusion`` stays cheap."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DiffusionAdapter": "diffusion.adapter",
    "DiffusionBatch": "diffusion.adapter",
    "ConceptSet": "diffusion.concepts",
    "T2IPipeline": "diffusion.pipeline",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'diffusion' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
