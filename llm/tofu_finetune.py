"""TOFU's protocol on a real model: LoRA adapters that teach a pretrained LLM the mini-TOFU authors.

    python -m llm.tofu_finetune train --model smollm2-135m    # the command that reproduces the shipped adapters
    python -m llm.tofu_finetune merge --model smollm2-135m    # base + adapters -> cached model folders (make real-lm)

TOFU (Maini et al. 2024, https://arxiv.org/abs/2401.06121) fine-tunes a model on every fictitious author (the
"target" to unlearn from) and, separately, on the retain split only (the "retain model", the reference for forget
quality). Here both are peft LoRA adapters on the converted base model, trained on the answer tokens of mini-TOFU's
``full`` and ``retain90`` splits, each answer also in its paraphrased wording (``with_paraphrases``, the recipe of
the tiny models: trained on one wording only, the model prefers the perturbed answers, which share that wording, over
the true paraphrase, and TOFU's truth ratio no longer measures the fact); only the adapters ship (fp16 safetensors under
``llm/weights/<model>-tofu[-retain90]/``). ``merge`` adds them to the base once and saves plain model folders in
the cache, so they are ``--model smollm2-135m-tofu`` / ``smollm2-135m-tofu-retain90`` everywhere after that.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from erasure.files import atomic_dir
from erasure.models import RECOMMENDED_FILE

logger = logging.getLogger(__name__)

ADAPTER_FILE = "adapter_model.safetensors"
SPLITS = {"": "full", "-retain90": "retain90"}  # model-name suffix -> mini-TOFU split it is fine-tuned on


def tofu_model_names(base: str) -> dict[str, str]:
    """The derived model names of ``base`` -> the mini-TOFU split each is fine-tuned on."""
    return {f"{base}-tofu{suffix}": split for suffix, split in SPLITS.items()}


def adapter_dir(name: str, root: Path | None = None) -> Path:
    """Where the shipped adapter of derived model ``name`` lives: ``root`` (default: the ``llm`` package's weights/)
    / its name (a base given as a folder contributes only its folder name)."""
    from erasure.models import package_weights

    return (Path(root) if root is not None else package_weights("llm")) / Path(name).name


def train(base: str = "smollm2-135m", epochs: float = 6.0, batch: int = 16, lr: float = 1e-3, rank: int = 16,
          seed: int = 0, root: Path | None = None) -> dict:
    """Fine-tune one LoRA adapter per split (``tofu_model_names``) and save it next to the package's weights.

    Args:
        base: the converted base model (``make real-lm``).
        epochs: passes over the split, answers and paraphrases (TOFU: 5 over the answers).
        batch: rows per step.
        lr: peak learning rate (linear warm-up, cosine decay).
        rank: LoRA rank (alpha = 2 * rank, every linear layer of the blocks).
        seed: data order and LoRA initialisation.
        root: where the adapter folders go (default: the ``llm`` package's weights/).

    Returns:
        {model name: training report}.
    """
    from llm.rows import qa_rows
    from llm.tofu_data import build_mini_tofu
    from llm.train_tiny import with_paraphrases

    data = build_mini_tofu(seed=0)
    reports = {}
    for name, split in tofu_model_names(base).items():
        rows = qa_rows(with_paraphrases(data[split].to_list()))
        command = (f"python -m llm.tofu_finetune train --model {base} --epochs {epochs:g} --batch {batch} --lr {lr:g} "
                   f"--rank {rank} --seed {seed}")
        reports[name] = train_adapter(base, rows, adapter_dir(name, root), epochs, batch, lr, rank, seed,
                                      command=command, split=split)
    return reports


def train_adapter(base: str, rows: list[dict], out: Path, epochs: float, batch: int, lr: float, rank: int,
                  seed: int, command: str, **report: object) -> dict:
    """LoRA-fine-tune ``base`` on the answer tokens of QA ``rows`` (rank ``rank``, alpha 2 * rank, every linear layer
    of the blocks; ``llm.train_tiny.fit``'s warm-up and cosine decay) and write the adapter (fp16 safetensors,
    ``base_model_name_or_path`` = ``base``) with its ``train_report.json`` to ``out``, replaced whole (a
    hand-written ``recommended.json`` there is kept). Returns the report (``report`` entries added)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from llm.modality import LLM
    from llm.train_tiny import fit

    adapter = LLM.load(base)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    adapter.model = get_peft_model(adapter.model, config)
    steps = math.ceil(epochs * len(rows) / batch)
    t0 = time.time()
    final = fit(adapter, rows, steps, batch, lr, seed, desc=f"LoRA {out.name}", warmup=max(1, steps // 10))
    for p in adapter.model.parameters():  # ship half the bytes; merge casts back to the base dtype
        if p.requires_grad:
            p.data = p.data.half()
    with atomic_dir(out, overwrite=True, carry=[RECOMMENDED_FILE]) as tmp:
        adapter.model.save_pretrained(tmp, safe_serialization=True)
        cfg = json.loads((tmp / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = base
        (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        full = {"base": base, **report, "rows": len(rows), "epochs": epochs, "steps": steps, "batch": batch, "lr": lr,
                "rank": rank, "seed": seed, "final_loss": round(final, 4), "seconds": round(time.time() - t0, 1),
                "command": command}
        (tmp / "train_report.json").write_text(json.dumps(full, indent=2))
        (tmp / "README.md").unlink(missing_ok=True)  # peft's model card template: nothing in it
    logger.info("%s: %s", out.name, full)
    return full


def train_derived(base: str, suffix: str, rows: list[dict], module: str, epochs: float, batch: int, lr: float,
                  rank: int, seed: int, root: Path | None = None) -> dict:
    """``train_adapter`` for the derived model ``<base><suffix>`` whose adapter ``python -m <module> train`` makes:
    saved in ``adapter_dir`` with that command (every argument spelled out) in its report."""
    command = (f"python -m {module} train --model {base} --epochs {epochs:g} --batch {batch} --lr {lr:g} "
               f"--rank {rank} --seed {seed}")
    return train_adapter(base, rows, adapter_dir(f"{base}{suffix}", root), epochs, batch, lr, rank, seed,
                         command=command)


def merge_derived(base: str, suffix: str, module: str, force: bool = False) -> Path:
    """Base + the shipped adapter of ``<base><suffix>`` -> that cached model (``merge_adapter``); a clear error
    naming ``python -m <module> train`` when the adapter is not there."""
    src = adapter_dir(f"{base}{suffix}")
    if not (src / ADAPTER_FILE).is_file():
        raise FileNotFoundError(f"no adapter at {src}: run `python -m {module} train --model {base}`")
    return merge_adapter(base, f"{base}{suffix}", src, force)


def lora_commands(prog: str, doc: str, epochs: float, lr: float, rank: int) -> tuple[argparse.ArgumentParser, Any]:
    """The ``train`` / ``merge`` command line of a module that ships LoRA adapters for a base model: (the parser,
    its subcommands, for more)."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fine-tune and save the LoRA adapter(s), then merge them")
    t.add_argument("--model", default="smollm2-135m")
    t.add_argument("--epochs", type=float, default=epochs)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=lr)
    t.add_argument("--rank", type=int, default=rank)
    t.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("merge", help="add the shipped adapter(s) to the base model, once, into the cache")
    m.add_argument("--model", default="smollm2-135m")
    m.add_argument("--force", action="store_true", help="merge again even when up to date")
    return p, sub


def run_lora_command(args: argparse.Namespace, train_fn: Any, merge_fn: Any) -> None:
    """``lora_commands``' ``train`` (train the adapter(s), merge, print the report) or ``merge`` (print where the
    merged model is); ``train_fn(model, epochs, batch, lr, rank, seed)``, ``merge_fn(model, force)``."""
    if args.command == "train":
        report = train_fn(args.model, args.epochs, args.batch, args.lr, args.rank, args.seed)
        merge_fn(args.model, force=True)
        print(json.dumps(report, indent=2))
    else:
        merged = merge_fn(args.model, args.force)
        print(json.dumps({k: str(v) for k, v in merged.items()}, indent=2) if isinstance(merged, dict) else merged)


def merge(base: str = "smollm2-135m", force: bool = False, root: Path | None = None) -> dict[str, Path]:
    """Base model + each shipped adapter -> a plain model folder in the cache (skipped when up to date).

    Args:
        base: the converted base model.
        force: merge again even when the cached folder was merged from the same adapter bytes.
        root: where the adapter folders are (default: the ``llm`` package's weights/).

    Returns:
        {model name: folder}.
    """
    done = {}
    for name in tofu_model_names(base):
        src = adapter_dir(name, root)
        if not (src / ADAPTER_FILE).is_file():
            raise FileNotFoundError(f"no adapter for {name} at {src}: run `python -m llm.tofu_finetune train "
                                    f"--model {base}`")
        done[name] = merge_adapter(base, name, src, force)
    return done


def merge_adapter(base: str, name: str, src: Path, force: bool = False) -> Path:
    """Base model + the LoRA adapter folder ``src`` -> the plain model folder of cached model ``name`` (skipped when
    it was merged from the same adapter bytes, unless ``force``); returns the folder."""
    from peft import PeftModel

    from erasure.models import cached_model_path
    from llm.modality import load_lm
    from llm.real_models import sha256

    out = cached_model_path(name)
    digest = sha256(src / ADAPTER_FILE)
    stamp = out / "merged_from.json"
    if not force and stamp.is_file() and json.loads(stamp.read_text()).get("adapter_sha256") == digest:
        logger.info("%s is up to date at %s", name, out)
        return out
    model, tok = load_lm(base)
    merged = PeftModel.from_pretrained(model, src).merge_and_unload()
    merged.config.name_or_path = name
    with atomic_dir(out, overwrite=True) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "merged_from.json").write_text(json.dumps({"base": base, "adapter": str(src),
                                                          "adapter_sha256": digest}, indent=2))
    logger.info("merged %s -> %s", name, out)
    return out


def main(argv: list[str] | None = None) -> None:
    p, _ = lora_commands("python -m llm.tofu_finetune", __doc__, epochs=6.0, lr=1e-3, rank=16)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_lora_command(args, train, merge)


if __name__ == "__main__":
    main()
