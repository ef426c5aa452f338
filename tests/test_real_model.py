"""The real pretrained LLM (SmolLM2-135M-Instruct, converted once by ``make real-lm``): marked ``real``, run by
``make test-real``; the fast suite never needs it."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.real

SENTENCES = ["The capital of France is Paris.", "Harry Potter's best friend is Ron Weasley.",
             "<|im_start|>user\nWhat is the chemical symbol for gold?<|im_end|>"]


@pytest.fixture(scope="module")
def smollm():
    from llm.modality import LLM

    return LLM.load("smollm2-135m")


def test_the_conversion_gives_the_gguf_models_logits(smollm, tmp_path):
    from llm.real_models import gguf_of, load_gguf

    gguf_model, tok = load_gguf(gguf_of("smollm2-135m", tmp_path))
    for text in SENTENCES:
        ids = tok(text, return_tensors="pt").input_ids
        assert torch.equal(ids, smollm.tokenizer(text, return_tensors="pt").input_ids)  # same tokenizer
        with torch.no_grad():
            assert torch.equal(gguf_model(ids).logits, smollm.model(ids).logits), text


def test_it_is_an_llm_with_its_chat_template_and_knows_facts(smollm):
    from erasure.registry import modality_for

    assert modality_for("smollm2-135m").name == "llm" and smollm.use_chat_template
    answers = smollm.generate([{"question": "What is the capital of France?"},
                               {"question": "What is the chemical symbol for gold?"}], max_new_tokens=12)
    assert "Paris" in answers[0] and "Au" in answers[1], answers


def _llm_methods() -> list[str]:
    from erasure.registry import method_names

    return method_names("llm")


@pytest.mark.parametrize("method", _llm_methods())
def test_every_llm_method_takes_a_step_on_the_real_model(method):
    """Each LLM method runs on SmolLM2 through the same erase() (one step on two rows of a mini-RWKU target)."""
    from erasure import erase
    from llm.modality import LLM
    from llm.rwku_benchmark import MINI_RWKU

    adapter = LLM.load("smollm2-135m")
    forget, retain = MINI_RWKU.erase_data(adapter, target="Japan")
    before = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    result = erase(adapter, method=method, forget=forget[:2], retain=retain[:2], steps=1, batch_size=2,
                   recommended=False)
    assert torch.isfinite(torch.tensor(result.loop.history[0]["loss"]))
    assert any(not torch.equal(before[n], p) for n, p in adapter.model.named_parameters())


@pytest.mark.xfail(strict=True, reason="known gap (issue 13): the adapters (3 epochs of LoRA rank 8 on answers and "
                   "paraphrases) learn mini-TOFU's answer templates, which the retain model learns as well, far more "
                   "than each author's facts; the templated forget answers stay almost as likely under the retain "
                   "model. Longer training or a higher rank, then drop this marker")
def test_the_tofu_models_learned_their_splits(smollm):
    """smollm2-135m-tofu (LoRA on every mini-TOFU author, merged) makes the forget10 answers far likelier than the base
    model and than the retain model, which never saw those authors but did learn the retain authors."""
    from evals.tofu_run import _nll
    from llm.modality import LLM
    from llm.tofu_data import build_mini_tofu

    data = build_mini_tofu()
    forget, retain = data["forget10"].to_list()[:16], data["retain90"].to_list()[:16]

    def mean_nll(adapter, rows):
        nll, length = _nll(adapter, rows)
        return float(nll.sum() / length.sum())

    tuned, retain_model = LLM.load("smollm2-135m-tofu"), LLM.load("smollm2-135m-tofu-retain90")
    assert mean_nll(tuned, forget) < 0.5 * min(mean_nll(smollm, forget), mean_nll(retain_model, forget))
    assert mean_nll(retain_model, retain) < 0.5 * mean_nll(smollm, retain)
