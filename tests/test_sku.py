"""SKU: harmful-knowledge acquisition in a LoRA copy, then its negation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from erasure import erase
from llm.adapter import CausalLMAdapter
from llm.rows import random_answers
from llm.sku import SKUConfig, negate
from tests.conftest import QA, make_trained_tiny_lm

FAST = {"show_progress": False}


def test_random_answers_pair_each_question_with_k_other_answers_from_the_whole_pool():
    out = random_answers(3)(QA, QA)
    assert len(out) == 3 * len(QA)
    for i, r in enumerate(QA):
        mine = out[3 * i: 3 * i + 3]
        assert all(m["question"] == r["question"] and m["answer"] != r["answer"] for m in mine)
    assert random_answers(3)(QA, list(reversed(QA))) == out  # fixed per question, whatever the pool's order
    one = random_answers(2)(QA[:1], QA)  # a batch of one row still gets other rows' answers
    assert {m["answer"] for m in one} <= {r["answer"] for r in QA[1:]} and len(one) == 2
    assert one == out[:2]  # and the same ones as in a bigger batch
    with pytest.raises(ValueError, match="other than the row's own"):
        random_answers(1)(QA[:1], QA[:1])


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


def test_llmu_pushes_the_forget_answers_down_and_learns_normal_answers_for_their_questions():
    """Yao et al.'s objective through LoRA (the GA + LoRA setting): gradient ascent rose the forget NLL, the
    random-mismatch term (normal answers to the forget questions) fell."""
    from llm.llmu import LLMUConfig

    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    forget, retain = QA[:2], QA[2:]
    result = erase(adapter, method="llmu", forget=forget, retain=retain, steps=6, lr=1e-2, k=2,
                   lora={"rank": 4}, train=FAST)
    first, last = result.loop.history[0], result.loop.history[-1]
    assert last["ga"] < first["ga"] and last["llmu_mismatch"] < first["llmu_mismatch"]
    assert result.lora is not None
    with pytest.raises(ValueError, match="k >= 1"):
        LLMUConfig(k=0)
    with pytest.raises(ValueError, match="retain set is empty"):
        erase(CausalLMAdapter(*make_trained_tiny_lm()), method="llmu", forget=forget, steps=1, train=FAST)


def test_rescale_gives_the_weights_of_a_run_at_the_other_scale():
    """One acquisition, negated at scale 1 and then moved to 2.5, equals the same run negated at 2.5 directly."""
    from llm.sku import rescale

    forget, retain = QA[:2], QA[2:]
    runs = {s: erase(CausalLMAdapter(*make_trained_tiny_lm()), method="sku", forget=forget, retain=retain, steps=3,
                     lr=1e-2, k=1, lora_rank=4, scale=s, train=FAST) for s in (1.0, 2.5)}
    moved, direct = runs[1.0], runs[2.5]
    before = {n: p.detach().clone() for n, p in moved.adapter.model.named_parameters()}
    assert rescale(moved, 2.5)["scale"] == 2.5 and moved.method_config["scale"] == 2.5
    changed, moved_params = 0, dict(moved.adapter.model.named_parameters())
    for n, p in direct.adapter.model.named_parameters():
        q = moved_params[n]
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
        changed += not torch.equal(before[n], q)
    assert changed > 0
    (state, _), = moved.lora.values()
    (direct_state, _), = direct.lora.values()
    for k in direct_state:
        torch.testing.assert_close(state[k], direct_state[k])
    with pytest.raises(ValueError, match="> 0"):
        rescale(moved, 0.0)
    with pytest.raises(ValueError, match="SKU result trained through LoRA"):
        rescale(erase(CausalLMAdapter(*make_trained_tiny_lm()), method="ga", forget=forget, steps=1, train=FAST), 2.0)
