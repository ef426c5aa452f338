"""Train the shipped mini-TOFU language models (the command that reproduces them).

    python -m llm.train_tiny --out llm/weights/mini-tofu

writes ``full/`` (fine-tuned on every mini-TOFU author plus the real-authors / world-facts utility sets, like
TOFU's fine-tuned model; answers and their paraphrases, see ``with_paraphrases``) and ``retain90/``, ``retain95/``, ``retain99/`` (the same recipe without the forget
authors: the reference for forget quality). Each folder holds a Llama-architecture ``config.json``,
``model.safetensors`` and the byte-level BPE tokenizer trained on the mini-TOFU text.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from erasure.loop import batch_indices
from erasure.progress import progress
from llm.adapter import CausalLMAdapter
from llm.tofu_data import FORGET_SPLITS, build_mini_tofu, retain_split_for

logger = logging.getLogger("llm.train_tiny")


def build_tokenizer(texts: Sequence[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE (decoded text keeps its spaces) with <pad>, <s>, </s> specials."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=128)


def build_model(tokenizer: PreTrainedTokenizerFast, hidden: int = 128, layers: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=tokenizer.model_max_length, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config)


def corpus(seed: int = 0) -> list[str]:
    """Every string of mini-TOFU (answers, paraphrases, perturbations, holdout) for the tokenizer."""
    data = build_mini_tofu(seed=seed)
    texts = []
    for split in ("full", "holdout", "real_authors", "world_facts"):
        for r in data[split]:
            texts += [r["question"], r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]]
    return texts + ["Question: Answer:"]


def with_paraphrases(rows: list[dict]) -> list[dict]:
    """Each QA twice: with its answer and with its paraphrased answer. A 1M-parameter model does not carry a
    fact across wordings, so the paraphrase is trained too; TOFU's truth ratio (paraphrase vs perturbed answers)
    then measures whether the model knows the fact rather than one sentence."""
    return rows + [{**r, "answer": r["paraphrased_answer"]} for r in rows if r.get("paraphrased_answer")]


def fit(adapter: CausalLMAdapter, rows: list[dict], steps: int, batch: int, lr: float, seed: int = 0,
        desc: str = "train", warmup: int = 50) -> float:
    """Fine-tune ``adapter.model``'s trainable parameters on QA ``rows`` (token-mean answer NLL, AdamW, linear
    warm-up then cosine decay, gradient clipping at 1); returns the last loss. Shared by the tiny models and the
    real model's TOFU adapters (``llm.tofu_finetune``)."""
    model = adapter.model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    loss = torch.tensor(float("nan"))
    for step in progress(range(steps), desc=desc):
        b = adapter.collate([rows[i] for i in batch_indices(len(rows), step, batch, seed, 0)])
        nll, length = adapter.per_example_nll(b)
        loss = nll.sum() / length.sum()  # token-mean answer NLL
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            logger.info("%s step %d loss %.4f", desc, step, loss.item())
    model.eval()
    return float(loss.detach())


def train_lm(rows: list[dict], tokenizer, out: Path, steps: int = 800, batch: int = 32, lr: float = 3e-3,
             seed: int = 0) -> dict:
    """Fine-tune a fresh tiny Llama on QA ``rows`` (answer-token loss) and save it to ``out``."""
    model = build_model(tokenizer, seed=seed)
    t0 = time.time()
    final = fit(CausalLMAdapter(model, tokenizer), rows, steps, batch, lr, seed, desc=f"train {out.name}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    report = {"rows": len(rows), "steps": steps, "final_loss": final, "seconds": round(time.time() - t0, 1)}
    (out / "train_report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m llm.train_tiny", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["full", *[retain_split_for(f) for f in FORGET_SPLITS]], action="append")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = build_mini_tofu(seed=args.seed)
    tokenizer = build_tokenizer(corpus(args.seed))
    utility = with_paraphrases(data["real_authors"].to_list() + data["world_facts"].to_list())
    targets = {"full": with_paraphrases(data["full"].to_list())}
    targets.update({retain_split_for(f): with_paraphrases(data[retain_split_for(f)].to_list()) for f in FORGET_SPLITS})
    reports: dict = {}
    trained: dict[str, Path] = {}  # identical training rows -> identical model (seeded): copy instead of retraining
    for name, rows in targets.items():
        if args.only and name not in args.only:
            continue
        key = json.dumps([r["question"] + r["answer"] for r in rows])
        out = Path(args.out) / name
        if key in trained:  # with 20 authors forget01 and forget05 both hold one author
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(trained[key], out)
            reports[name] = {"copied_from": trained[key].name}
            continue
        reports[name] = train_lm(rows + utility, tokenizer, out, steps=args.steps, seed=args.seed)
        trained[key] = out
    print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
