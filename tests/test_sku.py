"""SKU: harmful-knowledge acquisition in a LoRA copy, then its negation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from erasure import erase
from llm.adapter import CausalLMAdapter
from llm.sku import SKUConfig, negate, random_answers
from tests.conftest import QA, make_trained_tiny_lm

FAST = {"show_progress": False}


def test_random_answers_pair_each_question_with_k_other_answers():
    out = random_answers(3)(QA)
    assert len(out) == 3 * len(QA)
    for i, r in enumerate(QA):
        mine = out[3 * i: 3 * i + 3]
        assert all(m["question"] == r["question"] and m["answer"] != r["answer"] for m in mine)
    assert random_answers(3)(QA) == out


class _Model:
    def __init__(self):
        self.lin = nn.Linear(2, 2, bias=False)

    def modules(self):
        return {"model": self.lin}


def test_negation_subtracts_the_task_vector():
    m = _Model()
    start = {"model.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}
    with torch.no_grad():
        m.lin.weight.copy_(torch.tensor([[2.0, 2.0], [3.0, 6.0]]))  # theta_1
    info = negate(m, SKUConfig(scale=0.5), start)
    assert m.lin.weight.tolist() == [[0.5, 2.0], [3.0, 3.0]]  # theta_0 - 0.5 * (theta_1 - theta_0)
    assert info == {"negated": "weights", "tensors": 1, "scale": 0.5}
    with pytest.raises(ValueError, match="no LoRA adapter"):
        negate(_Model(), SKUConfig(), {})


def test_sku_lowers_the_forget_answers_likelihood():
    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    adapter.model.eval()
    forget, retain = QA[:2], QA[2:]

    def forget_nll() -> float:
        with torch.no_grad():
            nll, length = adapter.per_example_nll(adapter.collate(forget))
        return float((nll / length).mean())

    before = forget_nll()
    result = erase(adapter, method="sku", forget=forget, retain=retain, steps=6, lr=1e-2, k=1, lora_rank=4,
                   train=FAST)
    assert result.info["second_stage"]["negated"] == "lora" and result.lora is not None
    first, last = result.loop.history[0], result.loop.history[-1]
    assert last["loss"] < first["loss"] and last["sku_rd"] < first["sku_rd"]  # stage 1 learned the random answers
    assert last["sku_pd"] > first["sku_pd"]  # and moved away from the original on retain
    assert forget_nll() > before  # stage 2 negated what stage 1 acquired


def test_sku_options_are_checked():
    with pytest.raises(ValueError, match="k >= 1"):
        SKUConfig(k=0)
