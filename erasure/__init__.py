"""erasure: one unlearning core for text-to-image diffusion models and LLMs.

    from erasure import erase
    result = erase(pipeline, concept="Neon", method="esd-x", steps=200, seed=0)
    result.save("out/")
"""

import importlib
from typing import Any

_EXPORTS = {
    "erase": "erasure.api", "ErasureResult": "erasure.api", "TrainConfig": "erasure.config",
    "Objective": "erasure.objectives", "StepScores": "erasure.objectives", "GradientAscent": "erasure.objectives",
    "NLL": "erasure.objectives", "NPO": "erasure.objectives", "SimNPO": "erasure.objectives",
    "KL": "erasure.objectives", "Method": "erasure.registry", "get_method": "erasure.registry",
    "method_names": "erasure.registry", "register_method": "erasure.registry", "get_attack": "erasure.registry",
    "attack_names": "erasure.registry", "register_attack": "erasure.registry", "modality_for": "erasure.registry",
    "Selector": "erasure.selectors", "LoraSpec": "erasure.selectors",
}

__all__ = [
    "erase", "ErasureResult", "TrainConfig", "Objective", "StepScores", "GradientAscent", "NLL", "NPO", "SimNPO",
    "KL", "Method", "get_method", "method_names", "register_method", "get_attack", "attack_names", "register_attack",
    "modality_for", "Selector", "LoraSpec",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Names are imported on first use, so ``import erasure`` (and ``erasure --help``) does not import torch."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'erasure' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
