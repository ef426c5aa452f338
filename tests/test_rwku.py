"""mini-RWKU: its metrics against hand-computed cases, and the benchmark's erase / eval / audit through the CLI on a
tiny in-code LM with a hand-made data file (the real model's run is a `real` test and an experiment script)."""

from __future__ import annotations

import json
import math

import pytest

from erasure.cli import main
from evals import rwku
from tests.conftest import QA, make_trained_tiny_lm


def test_normalise_and_answer_match_hand_cases():
    assert rwku.normalise("Léonard de Vinci, E=mc²!") == " leonard de vinci e mc2 "
    assert rwku.answered("Harry's best friend is Ron Weasley.", ["ron"])
    assert not rwku.answered("Ronald", ["ron"])  # whole words only
    assert rwku.answered("the Chicago Bulls", ["bulls", "chicago bulls"])
    out = rwku.answer_match(["It is Tokyo.", "no idea", "The yen"], [["tokyo"], ["paris"], ["yen", "jpy"]])
    assert out["value_by_index"] == [1.0, 0.0, 1.0] and out["agg_value"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        rwku.answer_match(["a"], [])


def test_perplexity_hand_case():
    out = rwku.perplexity([2.0, 4.0], [2, 2])  # exp(6 / 4); per text exp(1), exp(2)
    assert out["agg_value"] == pytest.approx(math.exp(1.5))
    assert out["value_by_index"] == pytest.approx([math.e, math.exp(2)])
    with pytest.raises(ValueError):
        rwku.perplexity([1.0], [0])


def test_forget_probes_cover_every_form():
    from llm.rwku_data import FORGET_FORMS, TARGETS

    for name, spec in TARGETS.items():
        forms = {p.form for p in spec.forget_probes()}
        assert forms == set(FORGET_FORMS), name
        assert all(p.answers for p in spec.forget_probes())


def _data_file(tmp_path) -> str:
    """A hand-made mini-RWKU file over the tiny LM's vocabulary (as ``llm.rwku_data.build`` writes it)."""
    qa = lambda q, a, form, answers: {"question": q, "answers": answers, "form": form, "base_answer": a}  # noqa: E731
    data = {
        "model": "tiny", "counts": {},
        "targets": {"alice": {
            "forget": [qa("who wrote the book ?", "it was alice in paris .", "qa", ["alice"]),
                       qa("who wrote the book in paris ?", "it was alice .", "fb", ["alice"]),
                       qa("what is the book ?", "it was alice .", "paraphrase", ["alice"])],
            "neighbours": [qa("who wrote the book in london ?", "it was bob .", "neighbour", ["bob"])],
            "corpus": [{"question": r["question"], "answer": r["answer"]} for r in QA[:2]],
            "dropped": []}},
        "utility": [qa("what is the capital of italy ?", "rome .", "utility", ["rome"])],
        "fluency": ["the capital of france is paris .", "it was carol in rome ."],
        "retain_corpus": [{"question": r["question"], "answer": r["answer"]} for r in QA[2:]],
        "holdout_corpus": [{"question": "what is the capital of england ?", "answer": "london ."}],
    }
    path = tmp_path / "mini-rwku.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_erase_eval_and_audit_a_target_through_the_cli(tmp_path, capsys):
    model, tok = make_trained_tiny_lm()
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    data = _data_file(tmp_path)
    common = ["--benchmark", "mini-rwku", "--target", "alice", "--data", data]
    assert main(["erase", "--model", str(tmp_path / "lm"), *common, "--method", "npo", "--steps", "3", "--lr", "1e-2",
                 "--out", str(tmp_path / "erased")]) == 0
    summary = json.loads((tmp_path / "erased" / "erasure.json").read_text())
    assert summary["method"] == "npo" and len(summary["history"]) == 3
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "erased"), *common, "--out", str(tmp_path / "ev")]) == 0
    printed = json.loads(capsys.readouterr().out)
    record = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert printed["target"] == "alice" and record["n"] == {"forget": 3, "neighbour": 1, "utility": 1}
    for key in ("forget_qa", "forget_fb", "forget_adversarial", "neighbour", "utility", "mia_auc"):
        assert 0.0 <= record[key] <= 1.0, key
    assert record["fluency_ppl"] > 1.0 and [p["form"] for p in record["probes"]][-2:] == ["neighbour", "utility"]
    assert record["utility"] == float(record["probes"][-1]["answered"])  # each probe's verdict is recorded
    assert main(["audit", "--model", str(tmp_path / "erased"), *common, "--attack", "soft-prompt", "--option",
                 "steps=2", "--out", str(tmp_path / "au")]) == 0
    audit = json.loads((tmp_path / "au" / "audit.json").read_text())
    assert audit["n"] == 2 and audit["target"] == "alice"  # the direct probes (QA, fill-in-the-blank)
    assert set(audit["utility"]) == {"neighbour", "utility", "fluency_ppl"}


def test_unknown_target_lists_the_targets(tmp_path, capsys):
    model, tok = make_trained_tiny_lm()
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    code = main(["eval", "--model", str(tmp_path / "lm"), "--benchmark", "mini-rwku", "--target", "bob", "--data",
                 _data_file(tmp_path), "--out", str(tmp_path / "ev")])
    assert code == 2 and "unknown mini-rwku target 'bob'; targets: alice" in capsys.readouterr().err


def test_sampled_generation_is_seeded_and_leaves_the_global_random_state(tiny_lm):
    import torch

    from llm.adapter import CausalLMAdapter

    adapter = CausalLMAdapter(*tiny_lm)
    rows = [{"question": "who wrote the book ?"}] * 3
    state = torch.get_rng_state()
    a = adapter.generate(rows, seeds=[0, 1, 0], max_new_tokens=8, sampling={"temperature": 2.0})
    assert torch.equal(torch.get_rng_state(), state)
    assert a[0] == a[2] and a[0] != a[1]  # a seed decides a draw; another seed draws another text
    assert adapter.generate(rows, max_new_tokens=8) == [adapter.generate(rows[:1], max_new_tokens=8)[0]] * 3
    with pytest.raises(ValueError, match="seeds"):
        adapter.generate(rows, seeds=[0], sampling={})
    with pytest.raises(ValueError, match="no room to answer"):
        adapter.generate([{"question": "who wrote the book ? " * 8}])


def test_a_system_message_reaches_the_prompt(tiny_lm):
    from llm.adapter import CausalLMAdapter

    adapter = CausalLMAdapter(*tiny_lm)
    assert adapter.format_prompt("who wrote the book ?", "it was alice .") == \
        adapter.format_prompt("it was alice . who wrote the book ?")


def test_corpora_are_rebuilt_by_the_model_and_the_probes_kept(tmp_path, tiny_lm, monkeypatch):
    from llm import rwku_data
    from llm.adapter import CausalLMAdapter
    from llm.rwku_data import INTROS, OTHER_TOPICS, REQUESTS, TARGET_SEEDS, rebuild_corpora

    assert set(OTHER_TOPICS) <= set(INTROS)
    monkeypatch.setattr(rwku_data, "INTROS", {t: "it was" for t in INTROS})  # short: the tiny LM has 32 positions
    data = json.loads(open(_data_file(tmp_path)).read())
    data["targets"] = {"Japan": data["targets"]["alice"]}
    out = rebuild_corpora(data, CausalLMAdapter(*tiny_lm))
    assert out["targets"]["Japan"]["forget"] == data["targets"]["Japan"]["forget"]
    corpus = out["targets"]["Japan"]["corpus"]
    assert len(corpus) == len(REQUESTS) * TARGET_SEEDS and len({r["answer"] for r in corpus}) > 1
    assert [r["question"] for r in corpus[:TARGET_SEEDS]] == ["Please write a short introduction to Japan."] * TARGET_SEEDS
    assert len(out["retain_corpus"]) + len(out["holdout_corpus"]) == len(OTHER_TOPICS) * len(REQUESTS)
    again = rebuild_corpora({**data, "targets": {**data["targets"], "Chess": data["targets"]["Japan"]}},
                            CausalLMAdapter(*tiny_lm), targets=["Japan"])  # one target: the same texts, nothing else
    assert again["targets"]["Japan"]["corpus"] == corpus and again["retain_corpus"] == data["retain_corpus"]
    assert again["targets"]["Chess"] == data["targets"]["Japan"]
    data["targets"] = {"Atlantis": data["targets"]["Japan"]}
    with pytest.raises(ValueError, match="Atlantis"):
        rebuild_corpora(data, CausalLMAdapter(*tiny_lm))


def test_no_introduction_states_a_probe_answer_beyond_the_targets_name():
    from evals.rwku import answered, normalise
    from llm.rwku_data import INTROS, TARGETS, Probe

    for name, spec in TARGETS.items():
        own = set(normalise(name).split())
        for probe in spec.forget_probes() + [Probe(q, a, "neighbour") for q, a in spec.neighbours]:
            answers = [a for a in probe.answers if not set(normalise(a).split()) <= own]
            assert not answers or not answered(INTROS[name], answers), (name, probe.question)
