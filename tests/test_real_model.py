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
