"""Every LLM method raises the forget NLL of a tiny causal LM in a few steps; bad input is a clear error."""

from __future__ import annotations

import pytest
import torch

from erasure import erase
from tests.conftest import QA, make_tiny_lm, make_trained_tiny_lm


def _forget_nll(model, tok, rows):
    from llm.adapter import CausalLMAdapter

    adapter = CausalLMAdapter(model, tok)
    model.eval()
    with torch.no_grad():
        nll, length = adapter.per_example_nll(adapter.collate(rows))
    return float((nll / length).mean())


@pytest.mark.parametrize(
    "method, options",
    [("ga", {}), ("graddiff", {}), ("graddiff", {"retain_loss": "kl"}), ("npo", {}), ("simnpo", {}),
     ("idkpo", {}), ("ugradsl", {}), ("rmu", {"layer": 1, "steering_coef": 20.0, "alpha": 1.0})],
)
def test_method_raises_forget_nll(method, options):
    model, tok = make_trained_tiny_lm()
    forget, retain = QA[:2], QA[2:]
    before = _forget_nll(model, tok, forget)
    lr = 1e-2 if method == "rmu" else 5e-3
    result = erase(model, tokenizer=tok, forget=forget, retain=retain, method=method, steps=6, lr=lr, batch_size=2,
                   train={"show_progress": False}, **options)
    after = _forget_nll(model, tok, forget)
    assert after > before, f"{method}: forget NLL {before:.4f} -> {after:.4f}"
    assert result.loop.steps == 6


def test_rmu_only_trains_mlps_of_the_chosen_layers():
    model, tok = make_tiny_lm()
    before = {n: p.clone() for n, p in model.named_parameters()}
    erase(model, tokenizer=tok, forget=QA[:2], retain=QA[2:], method="rmu", steps=2, lr=1e-2, layer=1,
          train={"show_progress": False})
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".mlp." in n and (".h.0." in n or ".h.1." in n) for n in changed)


def test_idkpo_prefers_refusals():
    from llm.methods import with_refusals

    rows = with_refusals(["I don't know."])(QA[:2])
    assert [r["answer"] for r in rows] == ["I don't know."] * 2
    assert [r["question"] for r in rows] == [r["question"] for r in QA[:2]]


def test_llm_bad_input_is_a_clear_error():
    model, tok = make_tiny_lm()
    with pytest.raises(ValueError, match="tokenizer"):
        erase(model, forget=QA, method="ga")
    with pytest.raises(ValueError, match="forget set is empty"):
        erase(model, tokenizer=tok, forget=[], method="ga", steps=1)
    with pytest.raises(ValueError, match="retain set is empty"):
        erase(model, tokenizer=tok, forget=QA, retain=[], method="graddiff", steps=1)
    with pytest.raises(ValueError, match="for diffusion models"):
        erase(model, tokenizer=tok, forget=QA, method="esd-x", steps=1)
    with pytest.raises(ValueError, match="negative smoothing"):
        erase(model, tokenizer=tok, forget=QA, retain=QA, method="ugradsl", smoothing=0.1)
    from transformers import GPT2Config, GPT2LMHeadModel

    small = GPT2LMHeadModel(GPT2Config(vocab_size=5, n_positions=32, n_embd=8, n_layer=1, n_head=1))
    with pytest.raises(ValueError, match="do not belong together"):
        erase(small, tokenizer=tok, forget=QA, method="ga", steps=1)


def test_label_smoothing_is_rejected_on_diffusion(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    with pytest.raises(ValueError, match="for llm models"):
        erase(tiny_pipe, forget=[{"prompt": "a neon image", "image": torch.rand(3, 8, 8)}], method="ugradsl", steps=1)
    adapter = DiffusionAdapter(tiny_pipe)
    batch = adapter.collate([{"prompt": "a neon image", "image": torch.rand(3, 8, 8)}])
    with pytest.raises(ValueError, match="categorical"):
        adapter.per_example_nll(batch, torch.Generator(), smoothing=-0.5)


def test_reference_nll_is_computed_once_per_forget_example():
    """NPO's frozen-reference log-probs are cached: 5 steps over 2 forget rows -> 1 reference pass."""
    from erasure.config import TrainConfig
    from erasure.loop import Unlearner
    from erasure.objectives import NPO, Objective
    from erasure.selectors import Selector
    from llm.adapter import CausalLMAdapter

    model, tok = make_trained_tiny_lm()
    adapter = CausalLMAdapter(model, tok)
    calls = {"ref": 0}
    original = adapter.per_example_nll

    def counting(batch, generator=None, **kw):
        if not torch.is_grad_enabled():
            calls["ref"] += 1
        return original(batch, generator, **kw)

    adapter.per_example_nll = counting
    cfg = TrainConfig(steps=5, lr=1e-3, batch_size=2, show_progress=False)
    Unlearner(adapter, Objective([(1.0, NPO())]), Selector.preset("all"), cfg, forget=QA[:2]).run()
    assert calls["ref"] == 1


def test_retain_nll_and_kl_share_one_forward_and_the_reference_runs_once_per_row():
    """SPUL's retain terms (NLL and KL) read one forward of the trained model per step, and the reference's
    answer-position log-probs are kept across steps: 4 steps over 2 retain rows -> 4 passes with gradients, 1
    reference pass."""
    from erasure.config import TrainConfig
    from erasure.loop import Unlearner
    from erasure.objectives import KL, NLL, Objective
    from erasure.selectors import Selector
    from llm.adapter import CausalLMAdapter

    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    calls = {"grad": 0, "ref": 0}
    original = adapter._logprobs

    def counting(batch):
        calls["grad" if torch.is_grad_enabled() else "ref"] += 1
        return original(batch)

    adapter._logprobs = counting
    cfg = TrainConfig(steps=4, lr=1e-3, batch_size=2, show_progress=False)
    Unlearner(adapter, Objective([(1.0, NLL()), (1.0, KL())]), Selector.preset("all"), cfg, forget=QA[:2],
              retain=QA[2:4]).run()
    assert calls == {"grad": 4, "ref": 1}


@pytest.mark.parametrize("budget, rows_kept", [(2**30, 3), (1, 0)])
def test_kl_from_kept_reference_outputs_equals_the_direct_kl(monkeypatch, budget, rows_kept):
    """``divergence_of`` on per-row answer log-probs (rows of different lengths, padded differently) gives the KL
    of the whole padded log-prob tensors over the answer mask, and its gradient; rows past the byte budget are not
    kept."""
    from erasure import losses, objectives
    from erasure.objectives import StepScores
    from erasure.reference import PeftReference
    from llm.adapter import CausalLMAdapter

    adapter = CausalLMAdapter(*make_trained_tiny_lm())
    adapter.model.eval()
    adapter.add_prompt(2, seed=1)
    ref = PeftReference(adapter.modules())
    rows = [QA[0], {**QA[1], "answer": QA[1]["answer"] + " and more words here"}, QA[2]]
    batch = adapter.collate(rows)
    with torch.no_grad(), ref.active():
        ref_logp, _ = adapter._logprobs(batch)
    logp, mask = adapter._logprobs(batch)
    direct = losses.kl_divergence(ref_logp, logp, mask)  # (B,): every position computed, the answers counted
    (g_direct,) = torch.autograd.grad(direct.sum(), adapter.prompt.embeddings)
    monkeypatch.setattr(objectives, "REFERENCE_OUTPUT_BYTES", budget)
    scores = StepScores(adapter, ref, {"retain": batch}, seed=0, row_ids={"retain": [0, 1, 2]}, reference_cache={})
    kept = scores.divergence("retain")
    (g_kept,) = torch.autograd.grad(kept.sum(), adapter.prompt.embeddings)
    assert direct.min() > 0
    torch.testing.assert_close(kept, direct)
    torch.testing.assert_close(g_kept, g_direct)
    assert len([k for k in scores.reference_cache if k[0] == "outputs"]) == rows_kept


def test_lora_on_an_llm_trains_adapters_then_merges():
    model, tok = make_trained_tiny_lm()
    before = {n: p.clone() for n, p in model.named_parameters()}
    result = erase(model, tokenizer=tok, forget=QA[:2], retain=QA[2:], method="npo", steps=3, lr=1e-2,
                   lora={"rank": 2, "alpha": 4}, train={"show_progress": False})
    assert result.loop.reference == "peft"
    after = dict(model.named_parameters())
    assert set(after) == set(before)  # merged back: plain GPT-2 parameter names
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed and all(n.endswith("weight") for n in changed)


def test_lora_erase_repeats_whatever_the_process_drew_before():
    """LoRA's initialisation comes from the erase's seed, not from the global generator's state."""
    results = []
    for seed in (1, 2):
        model, tok = make_trained_tiny_lm()
        torch.manual_seed(seed)  # another history of the process's generator (an evaluation, sampling)
        erase(model, tokenizer=tok, forget=QA[:2], method="ga", steps=2, lr=1e-2, lora={"rank": 2, "alpha": 4},
              train={"show_progress": False})
        results.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert all(torch.equal(results[0][n], results[1][n]) for n in results[0])


def test_chat_template_formats_questions():
    from llm.adapter import CausalLMAdapter

    model, tok = make_tiny_lm()
    tok.chat_template = "{% for m in messages %}question : {{ m['content'] }}{% endfor %} answer :"
    adapter = CausalLMAdapter(model, tok, use_chat_template=True)
    plain = CausalLMAdapter(model, tok)
    assert adapter.format_prompt("who wrote the book ?") == "question : who wrote the book ? answer :"
    # answer tokens (the loss mask) are the same whatever the template
    assert adapter.collate(QA[:1]).answer_mask.sum() == plain.collate(QA[:1]).answer_mask.sum()


def test_llm_entry_points_share_defaults_and_reject_a_concept():
    """A model loaded from its folder brings its recommended.json to erase(); concept= is for diffusion models."""
    from llm.modality import LLM

    adapter = LLM.load("mini-tofu")
    assert adapter.source is not None and (adapter.source / "recommended.json").is_file()
    result = erase(adapter.model, tokenizer=adapter.tokenizer, forget=QA[:2], method="ga", steps=1)
    assert result.train_config["lr"] == 1e-3 and result.train_config["batch_size"] == 8  # the file's ga entry
    model, tok = make_tiny_lm()
    with pytest.raises(ValueError, match="concept= is for diffusion models"):
        erase(model, tokenizer=tok, concept="Harry Potter", method="ga")


@pytest.mark.parametrize("layer", [0, 1])
def test_hidden_states_stop_at_the_layer_and_equal_the_full_forward(layer):
    """RMU's activations: the early-exit forward gives output_hidden_states's entry, gradients included."""
    from llm.adapter import CausalLMAdapter, _blocks

    model, tok = make_tiny_lm()
    adapter = CausalLMAdapter(model, tok)
    blocks = _blocks(model, model.config.num_hidden_layers)
    model.eval()  # no dropout: two forwards must agree
    batch = adapter.collate(QA[:3])
    full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    h, mask = adapter.hidden_states(batch, layer)
    assert torch.equal(h, full.hidden_states[layer + 1]) and torch.equal(mask, batch.attention_mask)
    h.sum().backward()
    assert all(p.grad is None for b in blocks[layer + 1:] for p in b.parameters())  # later blocks never ran
    assert all(p.grad is not None for p in blocks[layer].parameters())
