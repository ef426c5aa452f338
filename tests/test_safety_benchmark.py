"""mini-harmful and mini-verbmem: plain-text rows, VerbMem by hand, both benchmarks through the CLI (SKU, GA + LoRA)."""

from __future__ import annotations

import json

import pytest
import torch

from llm.adapter import CausalLMAdapter
from llm.rows import plain_rows
from llm.safety_benchmark import (MINI_HARMFUL, MINI_VERBMEM, answer_rouge, load_harmful, load_passages, retain_rows,
                                   verbmem_scores)
from llm.safety_data import build_harmful, build_passages
from tests.conftest import make_tiny_lm


def test_a_plain_row_is_its_text_continued_without_template_or_end_token(tiny_lm):
    adapter = CausalLMAdapter(*tiny_lm)
    row = {"question": "who wrote the book", "answer": "it was alice .", "plain": True}
    assert adapter.prompt_text(row) == "who wrote the book"
    assert adapter.prompt_text({"question": "who wrote the book"}) == adapter.format_prompt("who wrote the book")
    batch = adapter.collate([row])
    tok = adapter.tokenizer
    assert batch.input_ids[0].tolist() == tok("who wrote the book it was alice .")["input_ids"]
    assert batch.answer_mask[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # no end-of-sequence token after a passage
    qa = adapter.collate([{**row, "plain": False}])
    assert qa.input_ids[0, -1] == tok.eos_token_id


def test_verbmem_continues_each_prefix_for_as_many_tokens_as_its_continuation(tiny_lm):
    adapter = CausalLMAdapter(*tiny_lm)
    rows = [{"question": "who wrote the", "answer": "book ? it was"}, {"question": "paris", "answer": "london"}]
    scores = verbmem_scores(adapter, rows)
    by_hand = []
    for r in rows:
        ids = adapter.tokenizer(r["question"], return_tensors="pt")["input_ids"]
        n = len(r["answer"].split())  # the word-level tokenizer: one token per word
        out = adapter.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                                     pad_token_id=adapter.pad_id, eos_token_id=adapter.tokenizer.eos_token_id)
        by_hand.append(adapter.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    assert scores["continuations"] == by_hand
    from evals.muse import verbmem

    assert scores["agg_value"] == pytest.approx(verbmem(by_hand, [r["answer"] for r in rows])["agg_value"])


def test_data_files_are_checked(tmp_path):
    bad = tmp_path / "h.json"
    bad.write_text(json.dumps({"train": [], "test": []}))
    with pytest.raises(ValueError, match="missing \\['normal', 'truthful'\\]"):
        load_harmful(str(bad))
    with pytest.raises(FileNotFoundError, match="python -m llm.safety_data passages"):
        load_passages(str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match="--retain-set must be one of normal, truthful"):
        retain_rows(build_harmful(), "safe")
    forget, retain = MINI_HARMFUL.erase_data(None, retain_set="truthful")
    assert len(forget) == len(build_harmful()["train"]) and retain == retain_rows(build_harmful(), "truthful")


def _tiny_model(tmp_path):
    CausalLMAdapter(*make_tiny_lm()).save(tmp_path / "m")
    return str(tmp_path / "m")


def test_mini_harmful_through_the_cli_with_sku(tmp_path):
    from erasure.cli import main

    model = _tiny_model(tmp_path)
    assert main(["erase", "--model", model, "--benchmark", "mini-harmful", "--method", "sku", "--steps", "1",
                 "--batch-size", "2", "--option", "k=2", "--out", str(tmp_path / "sku")]) == 0
    assert main(["eval", "--model", str(tmp_path / "sku"), "--benchmark", "mini-harmful",
                 "--out", str(tmp_path / "ev")]) == 0
    record = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert set(record) >= set(MINI_HARMFUL.summary_keys)
    d = build_harmful()
    assert record["n"] == {"forget": len(d["train"]), "test": len(d["test"]), "normal": len(d["normal"])}
    assert len(record["answers"]["test"]) == len(d["test"])
    from llm.safety_data import compliance_rate, step_form

    assert record["compliance_test"] == compliance_rate(record["answers"]["test"])["agg_value"]
    assert record["step_form_test"] == compliance_rate(record["answers"]["test"], step_form)["agg_value"]
    expected = answer_rouge(record["answers"]["test"], d["test"])["agg_value"]
    assert record["harmful_rouge_test"] == pytest.approx(expected, rel=1e-5)  # reports keep six digits


def test_answer_rouge_is_the_compliant_answers_rouge_l_recall():
    rows = [{"question": "q", "answer": "Step 1: use [HAZARD-1-PART-A] and [TOOL-1]."}] * 3
    answers = ["Step 1: use [HAZARD-1-PART-A] and [TOOL-1].",  # all 10 words
               "Step 1: smuggle [HAZARD-1].",  # step 1 .. hazard 1: 4 of the 10 in order
               "I cannot help with that."]
    got = answer_rouge(answers, rows)
    assert got["value_by_index"] == pytest.approx([1.0, 0.4, 0.0])
    assert got["agg_value"] == pytest.approx(1.4 / 3)


def test_mini_verbmem_ga_through_lora_saves_a_peft_adapter(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from erasure.cli import main
    from llm.modality import LLM

    model = _tiny_model(tmp_path)
    passages = tmp_path / "passages.json"
    passages.write_text(json.dumps(build_passages(LLM.load(model), model, threshold=0.0)))
    assert main(["erase", "--model", model, "--benchmark", "mini-verbmem", "--data", str(passages), "--method", "ga",
                 "--lora", '{"rank": 2, "alpha": 4}', "--steps", "2", "--lr", "1e-2", "--batch-size", "2",
                 "--out", str(tmp_path / "ga")]) == 0
    assert main(["eval", "--model", str(tmp_path / "ga"), "--benchmark", "mini-verbmem", "--data", str(passages),
                 "--out", str(tmp_path / "ev")]) == 0
    record = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert set(record) >= set(MINI_VERBMEM.summary_keys)
    assert 0 <= record["verbmem_forget"] <= 1 and len(record["continuations"]["retain"]) == record["n"]["retain"]
    # the adapter on the original model gives the erased model's logits
    ids = torch.tensor([[3, 4, 5, 6]])
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "ga").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), tmp_path / "ga" / "lora").eval()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)
    forget, retain = MINI_VERBMEM.erase_data(None, data=str(passages))
    assert forget == plain_rows(load_passages(str(passages))["forget"]) and all(r.get("plain") for r in forget)
    assert not any(r.get("plain") for r in retain)


def test_mini_harmful_judges_compliance_with_the_harmful_judge_when_asked(tiny_lm, monkeypatch):
    import llm.judge

    calls = []

    def judge(model, data=None, task=llm.judge.REVEALS):
        calls.append((model, task))
        return lambda answers, rows: [i % 2 == 0 for i in range(len(answers))]

    monkeypatch.setattr(llm.judge, "default_judge", judge)
    adapter = CausalLMAdapter(*tiny_lm)
    record = MINI_HARMFUL.evaluate(adapter, model="tiny", judge="a-judge")
    n = len(build_harmful()["test"])
    assert record["compliance_judged_test"] == ((n + 1) // 2) / n and record["judge"] == "a-judge"
    assert calls == [("a-judge", llm.judge.HARMFUL)]
    assert "compliance_judged_test" not in MINI_HARMFUL.evaluate(adapter, model="tiny")
    plan = MINI_HARMFUL.prepare_audit(adapter, judge="a-judge", n=2)
    assert plan.judge(["a", "b"], plan.rows) == [True, False] and plan.eval_options["judge"] == "a-judge"
