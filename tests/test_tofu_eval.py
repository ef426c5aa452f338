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


def test_eval_reads_the_released_tofu_layout_from_tofu_dir(tmp_path, capsys):
    """`erasure eval --tofu-dir` scores a model on TOFU's own evaluation files (here written from mini-TOFU in
    TOFU's layout): the same numbers as on the splits in memory, the whole retain_perturbed set, and a clear
    error without the retain model."""
    import json

    from erasure.cli import main
    from evals.tofu_run import evaluate_tofu

    data = build_mini_tofu(num_authors=20, qa_per_author=3, seed=0)
    files = {"forget10_perturbed": data["forget10"], "retain_perturbed": data["retain90"],
             "real_authors_perturbed": data["real_authors"].select(range(4)),
             "world_facts_perturbed": data["world_facts"].select(range(4)), "holdout10": data["holdout"]}
    root = tmp_path / "TOFU"
    root.mkdir()
    for name, ds in files.items():
        rows = [{k: v for k, v in r.items() if not (name.startswith(("real", "world")) and k == "paraphrased_answer")}
                for r in ds]
        (root / f"{name}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model, tok = make_tiny_lm(seed=1)
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    assert len(data["retain90"]) > 40  # more than the mini-TOFU evaluation's cap: TOFU evaluates all of them

    args = ["eval", "--model", str(tmp_path / "lm"), "--benchmark", "mini-tofu", "--tofu-dir", str(root)]
    assert main([*args, "--out", str(tmp_path / "no")]) == 2
    assert "give it with --retain-model" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert main([*args, "--retain-model", str(tmp_path / "lm"), "--out", str(tmp_path / "ev")]) == 0
    record = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert record["n_forget"] == len(data["forget10"]) and record["n_retain"] == len(data["retain90"])
    assert record["forget_quality"] == pytest.approx(1.0)  # the model against itself

    in_memory = {"forget10": data["forget10"], "retain90": data["retain90"], "holdout": data["holdout"],
                 "real_authors": files["real_authors_perturbed"], "world_facts": files["world_facts_perturbed"]}
    direct = evaluate_tofu(CausalLMAdapter(*make_tiny_lm(seed=1)), in_memory, "forget10", retain_eval_size=None)
    for key in ("forget_rouge", "forget_prob", "forget_truth_ratio", "retain_rouge", "model_utility", "minK_auc"):
        assert record[key] == pytest.approx(direct[key], abs=1e-6), key

    (root / "holdout10.json").unlink()
    assert main([*args, "--retain-model", str(tmp_path / "lm"), "--out", str(tmp_path / "ev2")]) == 2
    assert "holdout10" in capsys.readouterr().err

    from llm.tofu_benchmark import MINI_TOFU
    with pytest.raises(ValueError, match="not both"):  # two sources of the splits: refused, not one picked silently
        MINI_TOFU.evaluate(CausalLMAdapter(*make_tiny_lm(seed=1)), model="lm", tofu_dir=str(root), data=in_memory,
                           retain_model=str(tmp_path / "lm"))
