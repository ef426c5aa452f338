"""Attacks on erased models; each implements ``erasure.adversary.Adversary`` and is registered in
``erasure.registry`` (``get_attack(name, **options)``)."""

from attacks.advunlearn_prefix import PrefixAttack
from attacks.random_tokens import RandomTokens
from attacks.relearn import RelearnAttack
from attacks.soft_prompt import SoftPromptAttack
from attacks.unlearndiff import UnlearnDiff, UnlearnDiffEmbedding

__all__ = ["UnlearnDiff", "UnlearnDiffEmbedding", "RandomTokens", "PrefixAttack", "SoftPromptAttack", "RelearnAttack"]
