"""SPUL (soft prompting for unlearning): a prompt trains, the model does not; saved as a peft prompt adapter."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from erasure import erase
from erasure.config import TrainConfig
from erasure.reference import PeftReference
from llm.adapter import CausalLMAdapter
from llm.modality import LLM
from llm.spul import SPULConfig, other_label, random_label
from tests.conftest import QA, make_trained_tiny_lm

FAST = {"show_progress": False}


def _saved_tiny(tmp_path):
    model, tok = make_trained_tiny_lm()
    folder = tmp_path / "base"
    CausalLMAdapter(model, tok).save(folder)
    return folder


def _relabelled_nll(adapter, rows) -> float:
    with torch.no_grad():
        nll, length = adapter.per_example_nll(adapter.collate(other_label(SPULConfig().refusals)(rows)))
    return float((nll / length).mean())


def test_spul_trains_the_prompt_only_and_lowers_the_forget_loss(tmp_path):
    adapter = LLM.load(_saved_tiny(tmp_path))
    before = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    forget, retain = QA[:2], QA[2:]
    start = _relabelled_nll(adapter, forget)
    result = erase(adapter, method="spul", forget=forget, retain=retain, steps=15, lr=5e-2, num_tokens=2,
                   train=FAST)
    assert all(torch.equal(before[n], p) for n, p in adapter.model.named_parameters()), "a base weight moved"
    assert result.loop.trainable_parameters == adapter.prompt.embeddings.numel()
    assert result.loop.reference == "peft"  # KL against the model without the prompt
    assert _relabelled_nll(adapter, forget) < start - 0.1
    assert result.train_config["schedule"] == "cosine"


def test_saved_prompt_is_a_peft_adapter_that_loads_back(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = _saved_tiny(tmp_path)
    result = erase(LLM.load(base), method="spul", forget=QA[:2], retain=QA[2:], steps=2, lr=1e-1, num_tokens=3,
                   train=FAST)
    out = result.save(tmp_path / "prompt")
    # the prompt and the run's record, no model weights
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                     "erasure.json", "loss.png"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 3
    again = LLM.load(out)  # base model + prompt
    batch = again.collate(QA[:3])
    assert torch.equal(again.prompt.embeddings, result.adapter.prompt.embeddings)
    with torch.no_grad():
        ours = again._logits(batch.input_ids, batch.attention_mask)
        peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out).eval()
        theirs = peft(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 3:]
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert again.generate(QA[:1]) == result.adapter.generate(QA[:1])


def test_p_tuning_encoder_trains_saves_its_output_and_resumes_exactly(tmp_path, caplog):
    """encoder="mlp": the MLP and the embeddings train (the base does not); the saved adapter holds the encoded
    prompt, so loading it gives the same logits; a run resumed from its step-2 checkpoint ends where a straight run
    does."""
    base = _saved_tiny(tmp_path)
    adapter = LLM.load(base)
    before = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    kw = dict(forget=QA[:2], retain=QA[2:], lr=5e-2, num_tokens=2, encoder="mlp")
    result = erase(adapter, method="spul", steps=4, train=FAST, **kw)
    assert all(torch.equal(before[n], p) for n, p in adapter.model.named_parameters()), "a base weight moved"
    fresh = CausalLMAdapter(adapter.model, adapter.tokenizer).add_prompt(2, encoder="mlp")
    assert not torch.equal(fresh.encoder[0].weight, adapter.prompt.encoder[0].weight)
    assert result.loop.trainable_parameters == sum(p.numel() for p in adapter.prompt.parameters())
    out = result.save(tmp_path / "prompt")
    again = LLM.load(out)
    batch = again.collate(QA[:3])
    with torch.no_grad():
        assert torch.equal(again.prompt.embeddings, adapter.prompt.values())
        assert torch.allclose(again._logits(batch.input_ids, batch.attention_mask),
                              adapter._logits(batch.input_ids, batch.attention_mask), atol=1e-6)
    ck = {"checkpoint_dir": str(tmp_path / "ck"), "checkpoint_every": 2, "show_progress": False}
    erase(LLM.load(base), method="spul", steps=4, train=ck, **kw)
    shutil.rmtree(tmp_path / "ck" / "step-0000004")  # as if stopped after step 2
    with caplog.at_level("INFO", logger="erasure.loop"):
        resumed = erase(LLM.load(base), method="spul", steps=4, train={**ck, "resume": True}, **kw)
    assert any("(step 2)" in r.getMessage() for r in caplog.records)
    assert all(torch.equal(a, b) for a, b in zip(resumed.adapter.prompt.parameters(), adapter.prompt.parameters()))
    with pytest.raises(ValueError, match="encoder must be one of"):
        SPULConfig(encoder="lstm")


def test_prompt_without_a_base_folder_saves_the_base_beside_it(tmp_path):
    result = erase(CausalLMAdapter(*make_trained_tiny_lm()), method="spul", forget=QA[:2], retain=QA[2:], steps=1,
                   num_tokens=2, train=FAST)
    out = result.save(tmp_path / "prompt")
    assert (out / "base" / "config.json").is_file()
    again = LLM.load(out)
    assert torch.equal(again.prompt.embeddings, result.adapter.prompt.embeddings)


def test_reference_switches_the_prompt_off():
    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    adapter.model.eval()
    batch = adapter.collate(QA[:2])
    with torch.no_grad():
        plain = adapter._logits(batch.input_ids, batch.attention_mask)
        adapter.add_prompt(2, seed=1)
        prompted = adapter._logits(batch.input_ids, batch.attention_mask)
        with PeftReference(adapter.modules()).active():
            off = adapter._logits(batch.input_ids, batch.attention_mask)
    assert not torch.allclose(plain, prompted)
    assert torch.equal(plain, off)
    with pytest.raises(ValueError, match="already carries a soft prompt"):
        adapter.add_prompt(2)


def test_unlearning_a_prompted_model_moves_its_prompt_only(tmp_path):
    base = _saved_tiny(tmp_path)
    erase(LLM.load(base), method="spul", forget=QA[:2], retain=QA[2:], steps=1, num_tokens=2, train=FAST,
          out=tmp_path / "prompt")
    adapter = LLM.load(tmp_path / "prompt")
    before = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    prompt = adapter.prompt.embeddings.detach().clone()
    erase(adapter, method="ga", forget=QA[:2], steps=2, lr=1e-1, train=FAST)
    assert all(torch.equal(before[n], p) for n, p in adapter.model.named_parameters())
    assert not torch.equal(prompt, adapter.prompt.embeddings)


def test_other_label():
    relabel = other_label(["I don't know."])
    rows = [{"question": "Review: great. Sentiment?", "answer": "positive", "choices": ["negative", "positive"]},
            {"question": "Who wrote it?", "answer": "Ann"},
            {"question": "Three?", "answer": "b", "choices": ["a", "b", "c"]}]
    out = relabel(rows)
    assert out[0]["answer"] == "negative" and out[1]["answer"] == "I don't know."
    assert out[2]["answer"] in ("a", "c") and relabel(rows)[2] == out[2]  # stable per question
    with pytest.raises(ValueError, match="no label other"):
        relabel([{"question": "q", "answer": "x", "choices": ["x"]}])
    generic = other_label(["I don't know."], ["neutral", "unknown"])(rows)  # the official code's generic labels
    assert generic[0]["answer"] in ("neutral", "unknown") and generic[2]["answer"] in ("neutral", "unknown")
    assert generic[1]["answer"] == "I don't know."
    assert {other_label(["x"], ["neutral", "unknown"])([{**rows[0], "question": f"r{i}"}])[0]["answer"]
            for i in range(20)} == {"neutral", "unknown"}  # both drawn
    with pytest.raises(ValueError, match="num_tokens"):
        SPULConfig(num_tokens=0)
    with pytest.raises(ValueError, match="forget_target"):
        SPULConfig(forget_target="uniform")
    with pytest.raises(ValueError, match="generic_labels"):
        SPULConfig(generic_labels=[])


def test_cosine_and_linear_schedules():
    cfg = TrainConfig(steps=4, lr=1.0, schedule="cosine")
    assert [round(cfg.lr_at(s), 6) for s in range(4)] == [1.0, round(0.5 * (1 + math.cos(math.pi / 4)), 6), 0.5,
                                                          round(0.5 * (1 + math.cos(3 * math.pi / 4)), 6)]
    assert [TrainConfig(steps=4, lr=1.0, schedule="linear").lr_at(s) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert TrainConfig(steps=4, lr=0.5).lr_at(3) == 0.5
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainConfig(schedule="step")


def test_random_labels_keep_exactly_half_of_the_forget_set_whatever_the_batch():
    rows = [{"question": f"Review {i}: fine.", "answer": "positive", "choices": ["negative", "positive"]}
            for i in range(5)] + [{"question": f"Review {i}: poor.", "answer": "negative",
                                   "choices": ["negative", "positive"]} for i in range(4)]
    relabel = random_label(["I don't know."], seed=0)
    whole = relabel(rows, rows)
    kept = [a["answer"] == b["answer"] for a, b in zip(rows, whole)]
    assert sum(kept[:5]) == 3 and sum(kept) == 5  # half of each class, and of the set, rounded up
    assert all(r["answer"] in ("negative", "positive") for r in whole)
    assert [relabel([r], rows)[0] for r in rows] == whole  # a row's target does not depend on its batch
    assert relabel(rows, rows) == whole and random_label(["I don't know."], seed=1)(rows, rows) != whole
    assert relabel(QA[:1], rows)[0]["answer"] == "I don't know."  # a QA row is refused
    result = erase(CausalLMAdapter(*make_trained_tiny_lm()), method="spul", forget=QA[:2], retain=QA[2:], steps=1,
                   num_tokens=2, forget_target="random", train=FAST)  # the forget set reaches the relabelling
    assert result.loop.steps == 1
