"""Attacks on erased models; each implements ``erasure.adversary.Adversary``."""

from attacks.random_tokens import RandomTokens
from attacks.unlearndiff import UnlearnDiff

__all__ = ["UnlearnDiff", "RandomTokens"]
