"""TOFU/MUSE evaluation runner on a tiny in-code LM (mechanics and the metric's sanity, not quality)."""

from __future__ import annotations

import pytest

from llm.adapter import CausalLMAdapter
from llm.tofu_data import build_mini_tofu
from tests.conftest import make_tiny_lm


@pytest.fixture(scope="module")
def small_tofu():
    data = build_mini_tofu(num_authors=10, qa_per_author=4, seed=0)
    data["real_authors"] = data["real_authors"].select(range(6))
    data["world_facts"] = data["world_facts"].select(range(6))
    return data


def test_retain_model_against_itself_has_forget_quality_one(small_tofu):
    from evals.tofu_run import evaluate_tofu

    adapter = CausalLMAdapter(*make_tiny_lm(seed=1))
    record = evaluate_tofu(adapter, small_tofu, "forget10", retain_adapter=adapter, retain_eval_size=4)
    assert record["forget_quality"] == pytest.approx(1.0)  # KS test of identical samples
    assert record["privleak"] == pytest.approx(0.0)
    for key in ("forget_rouge", "forget_prob", "forget_truth_ratio", "retain_rouge", "model_utility", "verbmem",
                "knowmem_forget", "knowmem_retain"):
        assert 0.0 <= record[key] <= 1.0, key
    assert record["n_forget"] == 4
