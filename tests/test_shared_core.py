"""Proof the core is shared: the *same* NPO / SimNPO objective objects run on a diffusion adapter and on a
causal-LM adapter, through the same loop, with no modality branch in the core."""

from __future__ import annotations

import torch

from erasure.config import TrainConfig
from erasure.loop import Unlearner
from erasure.objectives import KL, NPO, Objective, SimNPO, StepScores
from erasure.selectors import Selector
from tests.conftest import QA, make_tiny_lm, make_tiny_pipeline

NPO_OBJECTIVE = Objective([(1.0, NPO(beta=0.1)), (1.0, KL())])
SIMNPO_OBJECTIVE = Objective([(1.0, SimNPO(beta=2.5)), (1.0, KL())])


def _diffusion():
    from diffusion.adapter import DiffusionAdapter

    pipe = make_tiny_pipeline()
    g = torch.Generator().manual_seed(0)
    forget = [{"prompt": "a circle image in neon style .", "image": torch.rand(3, 8, 8, generator=g)} for _ in range(4)]
    retain = [{"prompt": "a square image in sketch style .", "image": torch.rand(3, 8, 8, generator=g)}
              for _ in range(4)]
    return DiffusionAdapter(pipe), forget, retain, Selector.preset("esd-all")


def _llm():
    from llm.adapter import CausalLMAdapter

    model, tok = make_tiny_lm()
    return CausalLMAdapter(model, tok), QA[:2], QA[2:], Selector.preset("all")


def _forget_nll(adapter, forget, seed=123):
    with torch.no_grad():
        nll, length = adapter.per_example_nll(adapter.collate(forget), torch.Generator().manual_seed(seed))
    return float((nll / length).mean())


def _run(make, objective, steps=8, lr=5e-3):
    adapter, forget, retain, selector = make()
    before = _forget_nll(adapter, forget)
    cfg = TrainConfig(steps=steps, lr=lr, batch_size=2, optimizer="adamw", show_progress=False)
    result = Unlearner(adapter, objective, selector, cfg, forget=forget, retain=retain).run()
    return before, _forget_nll(adapter, forget), result


def test_same_npo_object_raises_forget_nll_on_both_modalities():
    for make in (_diffusion, _llm):
        before, after, result = _run(make, NPO_OBJECTIVE)
        assert result.reference == "snapshot"
        assert after > before, f"{make.__name__}: forget NLL did not rise ({before:.4f} -> {after:.4f})"


def test_same_simnpo_object_raises_forget_nll_on_both_modalities():
    for make in (_diffusion, _llm):
        before, after, _ = _run(make, SIMNPO_OBJECTIVE)
        assert after > before, f"{make.__name__}: forget NLL did not rise ({before:.4f} -> {after:.4f})"


def test_npo_starts_at_its_reference_value_on_both_modalities():
    """At step 0 the model equals the reference, so NPO = (2/beta) log 2 exactly and KL = 0."""
    import math

    for make in (_diffusion, _llm):
        adapter, forget, retain, selector = make()
        from erasure.loop import make_reference

        modules = adapter.modules()
        ref = make_reference(modules, selector.apply(modules), selector)
        scores = StepScores(adapter, ref, {"forget": adapter.collate(forget), "retain": adapter.collate(retain)}, 0)
        _, logs = NPO_OBJECTIVE(scores)
        assert logs["npo"] == pytest_approx((2 / 0.1) * math.log(2))
        assert abs(logs["retain_kl"]) < 1e-3  # BLAS results may differ in the last bits between buffers


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-4)  # float32 sums of ~100 token log-probs, amplified by 2/beta


def test_llm_loss_counts_answer_tokens_only(tiny_lm):
    from llm.adapter import CausalLMAdapter

    model, tok = tiny_lm
    model.eval()  # no dropout: compare deterministic losses
    adapter = CausalLMAdapter(model, tok)
    batch = adapter.collate(QA[:2])
    # padding is not counted: lengths = answer tokens + eos
    lengths = [len(tok(" " + r["answer"], add_special_tokens=False)["input_ids"]) + 1 for r in QA[:2]]
    _, length = adapter.per_example_nll(batch)
    assert length.tolist() == lengths
    # appending padding to a row does not change its loss
    single = adapter.per_example_nll(adapter.collate(QA[1:2]))[0]
    assert torch.allclose(adapter.per_example_nll(batch)[0][1], single[0], atol=1e-5)


def test_recommended_settings_merge_method_concept_and_explicit_values(tmp_path):
    import json

    from erasure.models import apply_recommended, recommended_settings

    (tmp_path / "recommended.json").write_text(json.dumps({"esd-x": {
        "steps": 50, "lr": 3e-4, "batch_size": 1, "options": {"eta": 1.0},
        "concepts": {"Star": {"steps": 100, "options": {"retain_weight": 1.0}}}}}))
    assert recommended_settings(str(tmp_path), "esd-x", "Neon") == {"steps": 50, "lr": 3e-4, "batch_size": 1,
                                                                    "options": {"eta": 1.0}}
    star = recommended_settings(str(tmp_path), "esd-x", "Star")
    assert star["steps"] == 100 and star["lr"] == 3e-4 and star["options"] == {"eta": 1.0, "retain_weight": 1.0}
    assert recommended_settings(str(tmp_path), "esd-u", "Star") == {}
    steps, lr, train, options = apply_recommended(str(tmp_path), "esd-x", None, 1e-3, {"batch_size": 2},
                                                  {"eta": 2.0}, concept="Star")
    assert (steps, lr, train, options) == (100, 1e-3, {"batch_size": 2}, {"eta": 2.0, "retain_weight": 1.0})
    # an optimizer's own entry applies when that optimizer is in use, asked for or recommended
    (tmp_path / "recommended.json").write_text(json.dumps({"npo": {
        "steps": 20, "lr": 5e-5, "options": {"beta": 0.1}, "optimizers": {"sophia": {"lr": 2e-5}}}}))
    assert recommended_settings(str(tmp_path), "npo")["lr"] == 5e-5
    assert recommended_settings(str(tmp_path), "npo", optimizer="sophia") == {"steps": 20, "lr": 2e-5,
                                                                              "options": {"beta": 0.1}}
    steps, lr, train, _ = apply_recommended(str(tmp_path), "npo", None, None, {"optimizer": "sophia"}, None)
    assert (steps, lr, train) == (20, 2e-5, {"optimizer": "sophia"})
    (tmp_path / "recommended.json").write_text(json.dumps({"npo": {
        "lr": 5e-5, "optimizer": "sophia", "optimizers": {"sophia": {"lr": 2e-5}, "adam": {"lr": 1e-4}}}}))
    assert recommended_settings(str(tmp_path), "npo")["lr"] == 2e-5
    assert apply_recommended(str(tmp_path), "npo", None, None, {"optimizer": "adam"}, None)[1:3] == (
        1e-4, {"optimizer": "adam"})
