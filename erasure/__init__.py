"""erasure: one unlearning core for text-to-image diffusion models and LLMs.

    from erasure import erase
    result = erase(pipeline, concept="Neon", method="esd-x", steps=200, seed=0)
    result.save("out/")
"""

from erasure.api import ErasureResult, erase
from erasure.config import TrainConfig
from erasure.objectives import KL, NLL, NPO, GradientAscent, Objective, SimNPO, StepScores
from erasure.registry import (Method, attack_names, get_attack, get_method, method_names, modality_for,
                              register_attack, register_method)
from erasure.selectors import LoraSpec, Selector

__all__ = [
    "erase", "ErasureResult", "TrainConfig", "Objective", "StepScores", "GradientAscent", "NLL", "NPO", "SimNPO",
    "KL", "Method", "get_method", "method_names", "register_method", "get_attack", "attack_names", "register_attack",
    "modality_for", "Selector", "LoraSpec",
]
__version__ = "0.1.0"
