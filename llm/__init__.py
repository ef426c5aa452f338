"""Placeholder package: see the open issues (LLM unlearning, adversarial robustness)."""
