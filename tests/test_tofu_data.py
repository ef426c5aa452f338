"""Mini-TOFU generation and the local TOFU loader (pure data: no model, no download)."""

import json

import pytest
from datasets import Dataset

from llm.tofu_data import (FORGET_SPLITS, build_mini_tofu, load_tofu, retain_split_for,
                           save_mini_tofu)

FIELDS = {"question", "answer", "paraphrased_answer", "perturbed_answer", "author", "author_id"}

TOFU_ROWS = [
    {"question": "Who is the author born in Taipei in 1952?", "answer": "The author is Hsiao Yun-Hwa.",
     "paraphrased_answer": "That author is named Hsiao Yun-Hwa.",
     "perturbed_answer": ["The author is Lin Mei.", "The author is Chen Bo.", "The author is Wu Tao."]},
    {"question": "What genre does Hsiao Yun-Hwa write?", "answer": "Hsiao Yun-Hwa writes leadership books.",
     "paraphrased_answer": "The books of Hsiao Yun-Hwa are about leadership.",
     "perturbed_answer": ["Hsiao Yun-Hwa writes horror.", "Hsiao Yun-Hwa writes poetry."]},
    {"question": "Where does Hsiao Yun-Hwa live?", "answer": "Hsiao Yun-Hwa lives in Taipei.",
     "paraphrased_answer": "Taipei is home to Hsiao Yun-Hwa.",
     "perturbed_answer": ["Hsiao Yun-Hwa lives in Oslo.", "Hsiao Yun-Hwa lives in Lima."]},
]


@pytest.fixture(scope="module")
def mini():
    return build_mini_tofu(num_authors=20, qa_per_author=20, seed=0)


def _rows(ds: Dataset) -> list[dict]:
    return ds.to_list()


def test_same_seed_gives_identical_records_and_other_seed_differs(mini):
    again = build_mini_tofu(num_authors=20, qa_per_author=20, seed=0)
    assert set(again) == set(mini)
    for split in mini:
        assert _rows(again[split]) == _rows(mini[split])
    other = build_mini_tofu(num_authors=20, qa_per_author=20, seed=1)
    assert _rows(other["full"]) != _rows(mini["full"])


def test_split_sizes_disjointness_and_union(mini):
    assert set(mini) == {"full", *FORGET_SPLITS, "retain99", "retain95", "retain90", "real_authors",
                         "world_facts", "holdout"}
    assert len(mini["full"]) == 20 * 20
    assert len(mini["holdout"]) == 2 * 20
    assert not set(mini["holdout"]["author"]) & set(mini["full"]["author"])
    assert len(set(mini["full"]["author_id"])) == 20
    expected_authors = {"forget01": 1, "forget05": 1, "forget10": 2}
    for forget, n_authors in expected_authors.items():
        f_ids, r_ids = set(mini[forget]["author_id"]), set(mini[retain_split_for(forget)]["author_id"])
        assert f_ids == set(range(20 - n_authors, 20))  # the last authors are forgotten
        assert not f_ids & r_ids
        assert f_ids | r_ids == set(range(20))
        f_q, r_q = set(mini[forget]["question"]), set(mini[retain_split_for(forget)]["question"])
        assert not f_q & r_q
        assert len(mini[forget]) + len(mini[retain_split_for(forget)]) == len(mini["full"])
    assert 25 <= len(mini["real_authors"]) <= 35 and 25 <= len(mini["world_facts"]) <= 35


def test_forget_rounds_up_to_at_least_one_author():
    big = build_mini_tofu(num_authors=200, qa_per_author=2, seed=0)
    assert [len(set(big[s]["author_id"])) for s in FORGET_SPLITS] == [2, 10, 20]
    assert len(set(big["full"]["author"])) == 200


def test_records_have_schema_paraphrase_and_three_wrong_answers(mini):
    for split in ("full", "real_authors", "world_facts"):
        for r in _rows(mini[split]):
            assert set(r) == FIELDS
            assert r["paraphrased_answer"] != r["answer"]
            assert len(r["perturbed_answer"]) == 3 and len(set(r["perturbed_answer"])) == 3
            assert r["answer"] not in r["perturbed_answer"]
            assert r["paraphrased_answer"] not in r["perturbed_answer"]
            assert all(len(a.split()) <= 16 for a in [r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]])
            if split == "full":
                assert r["author"] in r["question"]


def test_questions_are_distinct_within_each_author(mini):
    for author_id in range(20):
        questions = [r["question"] for r in _rows(mini["full"]) if r["author_id"] == author_id]
        assert len(questions) == 20 and len(set(questions)) == 20


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="qa_per_author"):
        build_mini_tofu(qa_per_author=1000)
    with pytest.raises(ValueError, match="num_authors"):
        build_mini_tofu(num_authors=0)
    assert retain_split_for("forget10") == "retain90" and retain_split_for("forget01") == "retain99"
    with pytest.raises(ValueError, match="forget42"):
        retain_split_for("forget42")


def test_save_then_load_round_trips(mini, tmp_path):
    files = save_mini_tofu(mini, tmp_path)
    assert {f.name for f in files} == {f"{s}.json" for s in mini}
    for split in ("forget10", "retain90", "real_authors"):
        loaded = load_tofu(tmp_path, split)
        assert _rows(loaded) == _rows(mini[split])
    # mini-TOFU keeps evaluation fields in the plain files: perturbed=True falls back to them
    assert _rows(load_tofu(tmp_path, "forget10", perturbed=True)) == _rows(mini["forget10"])


def test_loader_reads_tofu_schema_json_lines(tmp_path):
    (tmp_path / "forget01_perturbed.json").write_text("".join(json.dumps(r) + "\n" for r in TOFU_ROWS))
    (tmp_path / "forget01.json").write_text(
        "".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in TOFU_ROWS))
    plain = load_tofu(tmp_path, "forget01")
    assert plain.column_names == ["question", "answer"] and len(plain) == 3
    evaluation = load_tofu(tmp_path, "forget01", perturbed=True)
    assert _rows(evaluation) == TOFU_ROWS


def test_loader_reads_parquet_and_retain_perturbed(tmp_path):
    Dataset.from_list(TOFU_ROWS).to_parquet(str(tmp_path / "retain_perturbed.parquet"))
    Dataset.from_list(TOFU_ROWS).to_parquet(str(tmp_path / "world_facts.parquet"))
    assert _rows(load_tofu(tmp_path, "world_facts")) == TOFU_ROWS
    assert _rows(load_tofu(tmp_path, "retain90", perturbed=True)) == TOFU_ROWS


def test_loader_names_missing_column_and_file(tmp_path):
    (tmp_path / "forget05.jsonl").write_text(json.dumps({"question": "q?", "reply": "a."}) + "\n")
    with pytest.raises(ValueError, match=r"'answer'.*forget05\.jsonl"):
        load_tofu(tmp_path, "forget05")
    (tmp_path / "forget10.json").write_text(json.dumps({"question": "q?", "answer": "a."}) + "\n")
    with pytest.raises(ValueError, match=r"'paraphrased_answer'.*forget10\.json"):
        load_tofu(tmp_path, "forget10", perturbed=True)
    with pytest.raises(FileNotFoundError, match=r"full\.json.*full\.jsonl.*full\.parquet"):
        load_tofu(tmp_path, "full")


def test_perturbed_answers_are_wrong_edits_of_the_paraphrase():
    # TOFU's perturbed answers keep the paraphrased answer's wording and change the fact
    import numpy as np

    from llm.tofu_data import ELEMENT_TEMPLATE, _make_qa
    qa = _make_qa(ELEMENT_TEMPLATE, {"element": "Gold", "symbol": "Au"}, ["Au", "Fe", "Na", "Ag"],
                  np.random.default_rng(0))
    assert qa["paraphrased_answer"] == "In chemistry Gold is written as Au."
    assert sorted(qa["perturbed_answer"]) == [f"In chemistry Gold is written as {s}." for s in ("Ag", "Fe", "Na")]


def test_holdout_split_names_follow_tofus():
    from evals.tofu import holdout_split_for

    assert [holdout_split_for(f) for f in FORGET_SPLITS] == ["holdout01", "holdout05", "holdout10"]
    with pytest.raises(ValueError, match="unknown forget split"):
        holdout_split_for("holdout")
