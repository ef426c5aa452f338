"""mini-sentiment: data builder and loaders, choice classification, the benchmark through the CLI with SPUL."""

from __future__ import annotations

import json
import re

import pytest
import torch

from llm.adapter import CausalLMAdapter
from llm.sentiment import (LABELS, MINI_SENTIMENT, accuracy, answer_accuracy, as_rows, build_reviews, classify,
                           load_data, load_examples, split_forget)
from tests.conftest import make_tiny_lm


def test_build_reviews_is_balanced_distinct_and_seeded():
    d = build_reviews(n_train=40, n_test=20, seed=3)
    texts = [e["sentence"] for split in d.values() for e in split]
    assert len(texts) == len(set(texts)) == 60
    assert sum(e["label"] for e in d["train"]) == 20 and sum(e["label"] for e in d["test"]) == 10
    assert build_reviews(n_train=40, n_test=20, seed=3) == d != build_reviews(n_train=40, n_test=20, seed=4)
    names = [re.search(r"the ([A-Z][a-z]+) ", t).group(1) for t in texts]  # each review's invented name: its own
    assert len(set(names)) == 60
    with pytest.raises(ValueError, match="at most"):
        build_reviews(n_train=1000, n_test=1000)


def test_loaders_read_sst2_tsv_json_and_jsonl(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nit was great \t1\nit was bad\t0\n")
    (tmp_path / "dev.jsonl").write_text('{"text": "fine", "label": "positive"}\n{"sentence": "meh", "label": 0}\n')
    d = load_data(str(tmp_path))
    assert d["train"] == [{"sentence": "it was great", "label": 1}, {"sentence": "it was bad", "label": 0}]
    assert d["test"] == [{"sentence": "fine", "label": 1}, {"sentence": "meh", "label": 0}]
    (tmp_path / "x.json").write_text(json.dumps([{"sentence": "a", "label": 2}]))
    with pytest.raises(ValueError, match="row 1"):
        load_examples(tmp_path / "x.json")
    (tmp_path / "train.csv").write_text("x")
    with pytest.raises(ValueError, match=r"\.tsv, \.json or \.jsonl"):
        load_examples(tmp_path / "train.csv")
    (tmp_path / "only").mkdir()
    with pytest.raises(FileNotFoundError, match="no train file"):
        load_data(str(tmp_path / "only"))


def test_split_forget_is_fixed_and_disjoint():
    d = build_reviews(n_train=50, n_test=10)
    forget, retain = split_forget(d, 0.1)
    assert len(forget) == 5 and len(retain) == 45
    assert not {r["question"] for r in forget} & {r["question"] for r in retain}
    assert split_forget(d, 0.1) == (forget, retain)
    with pytest.raises(ValueError, match="forget_ratio"):
        split_forget(d, 1.0)


def test_classify_picks_the_choice_with_the_lower_nll():
    adapter = CausalLMAdapter(*make_tiny_lm())
    adapter.model.eval()
    rows = as_rows([{"sentence": "a", "label": 0}, {"sentence": "b", "label": 1}, {"sentence": "c", "label": 1}])
    preds = classify(adapter, rows, batch_size=2)
    for r, p in zip(rows, preds):  # by hand: each choice scored alone
        with torch.no_grad():
            nll = [float(adapter.per_example_nll(adapter.collate([{**r, "answer": c}]))[0]) for c in LABELS]
        assert p == min(range(len(LABELS)), key=nll.__getitem__)
    acc = accuracy(adapter, rows)
    assert acc["value_by_index"] == [int(p == r["label"]) for p, r in zip(preds, rows)]
    assert acc["agg_value"] == sum(acc["value_by_index"]) / 3


def test_answer_accuracy_counts_greedy_answers_that_open_with_the_label(monkeypatch):
    adapter = CausalLMAdapter(*make_tiny_lm())
    rows = as_rows([{"sentence": s, "label": y} for s, y in (("a", 1), ("b", 0), ("c", 0), ("d", 1), ("e", 1))])
    answers = ["Positive.", "negative, clearly", "neutral", "", "It is positive"]  # only the first word counts
    monkeypatch.setattr(adapter, "generate", lambda rows, max_new_tokens: answers[:len(rows)])
    assert answer_accuracy(adapter, rows) == {"agg_value": 0.4, "value_by_index": [1, 1, 0, 0, 0]}
    assert answer_accuracy(adapter, [])["agg_value"] is None


def test_benchmark_erase_and_eval_through_the_cli(tmp_path):
    from erasure.cli import main

    model, tok = make_tiny_lm()
    CausalLMAdapter(model, tok).save(tmp_path / "clf")
    data = tmp_path / "reviews.json"
    short = [{"sentence": f"{w} {i}", "label": i % 2} for i, w in enumerate(["meh", "fine"] * 13)]  # tiny max_length
    data.write_text(json.dumps({"train": short[:20], "test": short[20:]}))
    assert main(["erase", "--model", str(tmp_path / "clf"), "--benchmark", "mini-sentiment", "--data", str(data),
                 "--method", "spul", "--steps", "2", "--option", "num_tokens=2", "--out",
                 str(tmp_path / "spul")]) == 0
    assert (tmp_path / "spul" / "adapter_config.json").is_file()
    assert main(["eval", "--model", str(tmp_path / "spul"), "--benchmark", "mini-sentiment", "--data", str(data),
                 "--out", str(tmp_path / "ev")]) == 0
    record = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert record["n"] == {"forget": 2, "retain": 18, "test": 6} and record["chance"] == 0.5
    assert all(0 <= record[k] <= 1 for k in ("forget_acc", "retain_acc", "test_acc"))
    assert set(record["answer_acc"]) == {"forget", "retain", "test"}
    assert all(0 <= v <= 1 for v in record["answer_acc"].values())
    direct = MINI_SENTIMENT.evaluate(CausalLMAdapter(*make_tiny_lm()), model="m", data=str(data))
    assert set(direct) >= set(MINI_SENTIMENT.summary_keys)
