"""ECO (embedding-corrupted prompts): corruption functions, the prompt classifier, the guard in the adapter, the
strength search, save and load. No weight of the model moves."""

from __future__ import annotations

import math

import pytest
import torch

from erasure import erase
from llm.adapter import CausalLMAdapter
from erasure.guard import ECOConfig, PromptGuard, corrupt, fit_probe
from llm.modality import LLM
from tests.conftest import QA, make_trained_tiny_lm


def test_corrupt_zero_flip_and_noise_by_hand():
    emb = torch.tensor([[[1.0, -3.0, 2.0, 0.5], [4.0, 1.0, -1.0, 0.0]]])  # (1, 2, 4)
    where = torch.tensor([[True, False]])
    zero = corrupt(emb, where, "zero", strength=0.5)  # round(0.5 * 4) = 2 largest |values| of position 0
    assert zero.tolist() == [[[1.0, 0.0, 0.0, 0.5], [4.0, 1.0, -1.0, 0.0]]]
    flip = corrupt(emb, where, "flip", strength=0.25)
    assert flip.tolist() == [[[1.0, 3.0, 2.0, 0.5], [4.0, 1.0, -1.0, 0.0]]]
    noisy = corrupt(emb, where, "noise", strength=2.0, dims=2, rms=0.5, seed=3)
    expected = torch.randn(1, 2, generator=torch.Generator().manual_seed(3)) * 2.0 * 0.5
    assert torch.allclose(noisy[0, 0, :2], emb[0, 0, :2] + expected[0])
    assert torch.equal(noisy[0, 0, 2:], emb[0, 0, 2:]) and torch.equal(noisy[0, 1], emb[0, 1])
    assert torch.equal(corrupt(emb, where, "noise", strength=0.0), emb)
    assert torch.equal(emb[0, 0], torch.tensor([1.0, -3.0, 2.0, 0.5]))  # the input is left as it was
    with pytest.raises(ValueError, match="unknown ECO corruption"):
        corrupt(emb, where, "blur", 1.0)


def test_probe_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(20, 6, generator=g) + torch.tensor([3.0, 0, 0, 0, 0, 0])
    neg = torch.randn(40, 6, generator=g) - torch.tensor([3.0, 0, 0, 0, 0, 0])
    guard = PromptGuard(6)
    stats = fit_probe(guard, pos, neg)
    assert stats["true_positive_rate"] == 1.0 and stats["false_positive_rate"] == 0.0
    assert bool((guard.probability(pos) > 0.5).all()) and not bool((guard.probability(neg) > 0.5).any())


def test_guard_corrupts_flagged_prompts_only():
    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    adapter.model.eval()
    batch = adapter.collate(QA[:3])
    prompt = batch.attention_mask * (1 - batch.answer_mask)
    with torch.no_grad():
        plain = adapter._logits(batch.input_ids, batch.attention_mask)
        width = adapter.model.config.hidden_size
        adapter.guard = PromptGuard(width, "flip", strength=0.5)
        adapter.guard.bias.fill_(-20.0)  # flags nothing
        assert torch.equal(adapter._logits(batch.input_ids, batch.attention_mask, prompt_mask=prompt), plain)
        adapter.guard.bias.fill_(20.0)  # flags everything
        flagged = adapter._logits(batch.input_ids, batch.attention_mask, prompt_mask=prompt)
    assert not torch.allclose(flagged, plain)
    first_answer = int(batch.answer_mask[0].nonzero()[0])
    # the positions before the first answer token read corrupted prompt embeddings; the prompt-only mask means
    # the answer tokens' own embeddings are untouched (checked through the embedding function directly)
    emb = adapter.model.get_input_embeddings()(batch.input_ids)
    applied = adapter.guard.apply(adapter._pooled(batch.input_ids, prompt), emb, positions=prompt)
    assert torch.equal(applied[0, first_answer:], emb[0, first_answer:])
    assert not torch.equal(applied[0, :first_answer], emb[0, :first_answer])


def test_eco_moves_no_weight_and_pulls_forget_answers_to_the_target(tmp_path):
    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    adapter.model.eval()
    before = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    forget, retain = QA[:3], QA[3:]
    start = adapter.answer_prob(forget)
    result = erase(adapter, method="eco", forget=forget, retain=retain, iterations=6, strength=0.1,
                   search_lr=2.0, epsilon=0.05, kind="noise")
    assert all(torch.equal(before[n], p) for n, p in adapter.model.named_parameters())
    solved = result.info["closed_form"]
    target = adapter.eco_reference(forget, retain=retain)  # retain rows' answers to the forget questions
    assert solved["probe"]["true_positive_rate"] == 1.0
    after = adapter.answer_prob(forget)
    assert abs(math.log(after) - math.log(target)) < abs(math.log(start) - math.log(target))
    assert solved["search"][-1]["distance"] < solved["distance_before"]
    out = result.save(tmp_path / "eco")
    assert (out / "eco.json").is_file() and (out / "base" / "config.json").is_file()
    again = LLM.load(out)
    assert again.guard.strength == adapter.guard.strength
    assert again.answer_prob(forget) == pytest.approx(after, rel=1e-5)
    with pytest.raises(ValueError, match="ECO guard"):
        erase(again, method="ga", forget=forget, steps=1)


def test_eco_needs_retain_prompts_and_valid_options():
    with pytest.raises(ValueError, match="retain set"):
        erase(CausalLMAdapter(*make_trained_tiny_lm()), method="eco", forget=QA[:2])
    with pytest.raises(ValueError, match="unknown ECO kind"):
        ECOConfig(kind="blur")
    with pytest.raises(ValueError, match="threshold"):
        ECOConfig(threshold=1.0)


def test_eco_on_a_text_to_image_model_flags_the_concept_and_saves_a_guard(tmp_path):
    from diffusion.adapter import DiffusionAdapter
    from erasure.registry import modality_for
    from tests.conftest import make_tiny_pipeline

    pipe = make_tiny_pipeline()
    pipe.save(tmp_path / "base")
    adapter = DiffusionAdapter.load(tmp_path / "base")
    before = {n: p.detach().clone() for n, p in adapter.pipe.unet.named_parameters()}
    result = erase(adapter, "Neon", method="eco", iterations=4, strength=0.1, epsilon=0.05, search_lr=0.05)
    assert all(torch.equal(before[n], p) for n, p in adapter.pipe.unet.named_parameters())
    solved = result.info["closed_form"]
    assert solved["probe"]["true_positive_rate"] == 1.0 and solved["probe"]["false_positive_rate"] == 0.0
    assert len(solved["search"]) == 5 and adapter.guard.strength > 0
    assert solved["search"][-1]["distance"] < solved["distance_before"] == 1.0
    neon, sketch = "a circle image in neon style .", "a circle image in sketch style ."
    with torch.no_grad():
        guarded = adapter.pipe.encode_prompts([neon, sketch])
        adapter.guard.enable_adapters(False)
        plain = adapter.pipe.encode_prompts([neon, sketch])
        adapter.guard.enable_adapters(True)
    assert not torch.equal(guarded[0], plain[0]) and torch.equal(guarded[1], plain[1])
    out = result.save(tmp_path / "eco")
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".json", ".safetensors")) == [
        "eco.json", "eco.safetensors", "erasure.json"]
    assert modality_for(out).name == "diffusion"
    again = modality_for(out).load(out)
    with torch.no_grad():
        assert torch.equal(again.pipe.encode_prompts([neon, sketch]), guarded)


def test_cached_evaluations_tell_a_guarded_pipeline_apart():
    from evals.eval_cache import config_of, eval_key
    from tests.conftest import make_tiny_pipeline

    pipe = make_tiny_pipeline()

    def key():
        return eval_key(pipe.modules(), configs={n: config_of(m) for n, m in pipe.modules().items()})

    plain = key()
    pipe.guard = PromptGuard(pipe.text_encoder.config.hidden_size, strength=1.0)
    guarded = key()
    pipe.guard.strength = 2.0
    assert len({plain, guarded, key()}) == 3


def test_flag_rates_count_the_questions_the_guard_flags():
    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    questions = [r["question"] for r in QA]
    assert adapter.guard_flag_rates({"all": questions}) == {"all": 0.0}  # no guard: nothing flagged
    adapter.guard = PromptGuard(adapter.model.config.hidden_size)
    adapter.guard.weight[0] = 1.0  # flags a question when its first standardised feature is positive
    feats = adapter.prompt_embeddings(questions)
    expected = float((feats[:, 0] > 0).float().mean())
    assert adapter.guard_flag_rates({"all": questions, "none": []}) == {"all": expected, "none": None}


def test_plain_text_likelihood_passes_the_guard_unless_the_text_is_flagged():
    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    adapter.model.eval()
    texts = ["it was alice in paris .", "paris ."]
    plain = adapter.text_nll(texts)[0]
    adapter.guard = PromptGuard(adapter.model.config.hidden_size, kind="flip", strength=0.5)
    adapter.guard.bias.fill_(-20.0)
    assert torch.equal(adapter.text_nll(texts)[0], plain)
    adapter.guard.bias.fill_(20.0)
    assert not torch.equal(adapter.text_nll(texts)[0], plain)


def test_the_empty_prompt_is_never_corrupted():
    from tests.conftest import make_tiny_pipeline

    pipe = make_tiny_pipeline()
    with torch.no_grad():
        plain = pipe.encode_prompts(["", "a circle image in neon style ."])
        pipe.guard = PromptGuard(pipe.text_encoder.config.hidden_size, kind="flip", strength=0.5)
        pipe.guard.bias.fill_(20.0)  # flags every prompt
        guarded = pipe.encode_prompts(["", "a circle image in neon style ."])
    assert torch.equal(guarded[0], plain[0]) and not torch.equal(guarded[1], plain[1])
