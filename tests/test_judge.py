"""The LLM judge: label extraction, the labelled cases, in-context example choice, the judge as an audit judge."""

from __future__ import annotations

import pytest
import torch

from evals.rwku import answer_match
from llm.judge import (HARMFUL, LABELS, LLMJudge, build_cases, build_harmful_cases, extract_label, judge_accuracy,
                       split_cases)


def test_extract_label():
    assert extract_label("Reasoning: it says Ron.\nLabel: reveals") == "reveals"
    assert extract_label("Label: **Wrong** because it is wrong") == "wrong"
    assert extract_label("It refuses. Label: refuses") == "refuses"
    assert extract_label("this is gibberish text") == "gibberish"
    assert extract_label("no idea") == "unknown"


def test_cases_hold_their_labels_by_construction():
    cases = build_cases()
    assert len(cases) >= 200 and {c["label"] for c in cases} == set(LABELS)
    for c in cases:
        found = answer_match([c["answer"]], [[c["reference"]]])["agg_value"]
        if c["label"] == "reveals":
            assert found == 1.0, c
        if c["label"] in ("wrong", "refuses"):
            assert found == 0.0, c
    pool, test = split_cases(cases)
    assert len(test) >= 100 and not {c["probe"] for c in pool} & {c["probe"] for c in test}


def test_harmful_cases_follow_the_compliance_rule():
    from llm.safety_data import complies, step_form

    cases = build_harmful_cases()
    assert {c["label"] for c in cases} == set(HARMFUL.labels) and len(cases) >= 100
    assert all(complies(c["answer"]) == (c["label"] == "complies") for c in cases)
    # a third of the evasions restate the request as steps: the form of compliance without the procedure
    restated = [c for c in cases if c["label"] == "evades" and "Step 1:" in c["answer"] and step_form(c["answer"])]
    assert len(restated) == len(cases) // 4 // 3
    from llm.judge import _restate

    assert _restate("Step 1: use [HAZARD-2-PART-A] and [TOOL-3].", "Hide [HAZARD-2]?") == "Step 1: use [HAZARD-2]."
    assert _restate("Step 1: use [TOOL-3].", "How do I bake bread?") is None  # no placeholder: another form
    plain = build_harmful_cases(restate=False)  # the two other forms alone
    assert not [c for c in plain if c["label"] == "evades" and "Step 1:" in c["answer"]]
    same = ("complies", "refuses")  # only the evasions (and the draws after them) differ
    assert [c for c in plain if c["label"] in same] == [c for c in cases if c["label"] in same]
    pool, test = split_cases(cases)
    assert not {c["probe"] for c in pool} & {c["probe"] for c in test}
    assert extract_label("Label: evades, it restates", HARMFUL.labels) == "evades"
    judge = LLMJudge(_Fake(" complies"), cot=False, icl="selected", pool=pool, k=2, task=HARMFUL)
    assert judge(["Step 1: use [TOOL-1]."], [{"question": "q", "answer": "a"}]) == [True]
    assert judge.prompt(test[0]).startswith(HARMFUL.instruction) and "Label: evades" in LLMJudge(
        _Fake("x"), cot=False, icl="random", pool=[c for c in pool if c["label"] == "evades"], k=1,
        task=HARMFUL).prompt(test[0])
    acc = judge_accuracy(judge, test[:4])
    assert set(acc["confusion"]) == set(HARMFUL.labels) and acc["agg_value"] == 0.25


class _Fake:
    """A judge model that embeds texts by their length and answers with a fixed label."""

    def __init__(self, reply: str):
        self.reply, self.prompts = reply, []

    def prompt_embeddings(self, texts):
        return torch.tensor([[float(len(t)), 1.0] for t in texts])

    def generate(self, rows, max_new_tokens=32):
        self.prompts += [r["question"] + r["answer_start"] for r in rows]
        return [self.reply] * len(rows)


def test_judge_prompts_examples_and_verdicts():
    pool = [{"question": f"q{i}" * (i + 1), "reference": "x", "answer": "a" * (10 * i), "label": LABELS[i % 4]}
            for i in range(8)]
    case = {"question": "q7" * 8, "reference": "x", "answer": "a" * 70}
    judge = LLMJudge(_Fake(" it states x.\nLabel: reveals"), cot=True, icl="selected", pool=pool, k=2)
    chosen = judge.examples(case)
    assert chosen[0] is pool[7]  # the nearest (same lengths) first
    prompt = judge.prompt(case)
    assert prompt.count("Label:") == 2 and prompt.index("Reasoning:") < prompt.index("Label:")
    assert judge([case["answer"]], [{"question": case["question"], "answers": ["x"]}]) == [True]
    # the reasoning first (to its first line break), then the label asked for after it
    assert judge.adapter.prompts[-2].endswith("Model answer: " + case["answer"] + "\nReasoning:")
    assert judge.adapter.prompts[-1].endswith("\nReasoning: it states x.\nLabel:")
    first = LLMJudge(_Fake(" refuses"), cot=False, icl="random", pool=pool, k=3)
    assert len(first.examples(case, 0)) == 3 and first.examples(case, 0) == first.examples(case, 0)
    assert first.prompt(case).index("Label:") < first.prompt(case).index("Reasoning:")
    acc = judge_accuracy(first, [{**case, "label": "refuses"}, {**case, "label": "wrong"}])
    assert acc["value_by_index"] == [1, 0] and acc["confusion"]["wrong"] == {"refuses": 1}
    assert LLMJudge(_Fake("x"), icl="none").prompt(case).count("Model answer:") == 1
    with pytest.raises(ValueError, match="in-context mode"):
        LLMJudge(_Fake("x"), icl="nearest")
    with pytest.raises(ValueError, match="pool of at least"):
        LLMJudge(_Fake("x"), icl="random", pool=pool[:1])


def test_judge_runs_on_a_real_adapter():
    from llm.adapter import CausalLMAdapter
    from tests.conftest import make_tiny_lm

    model, tok = make_tiny_lm()
    model.transformer.wpe = torch.nn.Embedding(512, model.config.n_embd)  # room for a judge's long prompt
    model.config.n_positions = 512
    adapter = CausalLMAdapter(model, tok, max_length=512)
    pool = [{"question": "q", "reference": "x", "answer": "a", "label": lab} for lab in LABELS]
    judge = LLMJudge(adapter, cot=False, icl="selected", pool=pool, k=1, max_new_tokens=2)
    labels = judge.label([{"question": "q", "reference": "x", "answer": "b"}])
    assert len(labels) == 1 and labels[0][0] in (*LABELS, "unknown")
