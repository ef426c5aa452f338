"""The LLM modality's entry: recognise and load causal LMs, resolve forget / retain sets (mini-TOFU split names,
TOFU-schema files, QA rows), and run its commands (eval and audit through its benchmarks, the method demo).

Registered in ``erasure.registry`` as ``"llm.modality:LLM"``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from safetensors import SafetensorError

from erasure.files import require_safetensors, report_json
from erasure.modality import Option

logger = logging.getLogger(__name__)


def load_lm(model: str | os.PathLike) -> tuple[Any, Any]:
    """(model, tokenizer) from a built-in name or a local folder (safetensors only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from erasure.models import resolve_model_path

    path = resolve_model_path(str(model))
    require_safetensors(path)
    try:
        lm = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # a damaged or incomplete folder
        raise ValueError(f"cannot load the model in {path}: {' '.join(str(err).split())[:300]}") from err
    return lm, tok


class LLMModality:
    """Causal language models (transformers ``PreTrainedModel`` with a causal-LM head, plus its tokenizer)."""

    name = "llm"
    describe = ("a transformers causal-LM folder (config.json with a model_type, no unet/), a peft prompt-tuning "
                "adapter or an ECO guard folder of one, or a loaded causal LM")
    default_model = "mini-tofu"
    default_benchmark = "mini-tofu"
    default_attacks = ("soft-prompt",)
    options = {
        "erase": (Option(("--forget",), "the forget set: forget01|forget05|forget10 (mini-TOFU) or a TOFU-schema "
                                        ".json/.jsonl/.parquet file"),
                  Option(("--retain",), "the retain set: a split name or file (default: the forget split's retain "
                                        "split)")),
    }

    # ------------------------------------------------------------------ recognising and loading
    def accepts(self, model: Any) -> bool:
        if isinstance(model, Path):
            from erasure.guard import guard_base, is_guard_folder
            from llm.prompt_tuning import is_prompt_adapter

            if is_prompt_adapter(model):  # SPUL's result for a causal LM
                return True
            if is_guard_folder(model):  # ECO's result, for a causal LM when its base is one
                base = guard_base(model)
                return base is not None and not (base / "unet").is_dir() and (base / "config.json").is_file()
            config = model / "config.json"
            if not config.is_file() or (model / "unet").is_dir():
                return False
            try:
                return "model_type" in json.loads(config.read_text())
            except ValueError:
                return False
        if getattr(model, "modality", None) == self.name:  # an adapter
            return True
        from llm.adapter import CausalLMAdapter

        return CausalLMAdapter.accepts(model)

    def adapter(self, model: Any, **kwargs: Any) -> Any:
        if getattr(model, "modality", None) == self.name:
            return model
        from llm.adapter import CausalLMAdapter

        return CausalLMAdapter.from_model(model, **kwargs)

    def load(self, model: str | os.PathLike) -> Any:
        """The model's adapter; a prompt-tuning adapter folder (ECO guard folder) loads its base model with the
        prompt (guard) on it."""
        import torch

        from erasure.guard import is_guard_folder, load_guard
        from erasure.models import resolve_model_path
        from llm.adapter import CausalLMAdapter
        from llm.prompt_tuning import SoftPrompt, is_prompt_adapter, load_prompt

        path = resolve_model_path(str(model))
        if is_guard_folder(path):
            guard, base = load_guard(path)
            adapter, width, what = CausalLMAdapter(*load_lm(base)), guard.weight.shape[0], "ECO guard"
            adapter.guard = guard
        elif is_prompt_adapter(path):
            embeddings, base = load_prompt(path)
            adapter, width, what = CausalLMAdapter(*load_lm(base)), embeddings.shape[1], "prompt"
            adapter.prompt = SoftPrompt(embeddings.to(torch.get_default_dtype())).requires_grad_(False)
        else:
            return CausalLMAdapter(*load_lm(path))
        if width != adapter.model.config.hidden_size:
            raise ValueError(f"the {what} in {path} is {width} wide but its base model {base} has hidden size "
                             f"{adapter.model.config.hidden_size}")
        return adapter

    # ------------------------------------------------------------------ data
    def erase_data(self, adapter: Any, concept: str | None = None, forget: Any = None, retain: Any = None,
                   free_text: bool = False) -> tuple[Sequence[Any], Sequence[Any] | None]:
        """QA rows to forget and to retain: given rows (a list or a ``datasets`` split), or a mini-TOFU split name
        or TOFU-schema file for either (a forget split brings its retain split along)."""
        from llm.tofu_benchmark import forget_and_retain

        if concept is not None:
            raise ValueError("an LLM unlearns a forget set: give forget= (QA rows, a mini-TOFU split name or a "
                             "TOFU-schema file); concept= is for diffusion models")
        if forget is None:
            raise ValueError("unlearning an LLM needs a forget set (--forget forget01|forget05|forget10 or a "
                             ".jsonl file; forget= rows in Python)")
        if isinstance(forget, str):
            forget, default_retain = forget_and_retain(forget, retain if isinstance(retain, str) else None)
            retain = default_retain if retain is None or isinstance(retain, str) else retain
        elif isinstance(retain, str):
            retain = forget_and_retain(retain)[0]
        return forget, retain

    def targets(self, model: str) -> dict:
        """The mini-TOFU forget splits (any TOFU-schema file works too) and the shipped mini-RWKU targets."""
        from evals.tofu import FORGET_SPLITS
        from llm.rwku_benchmark import load_data

        try:
            rwku = list(load_data()["targets"])
        except FileNotFoundError:
            rwku = []
        return {"forget_splits": list(FORGET_SPLITS), "files": "or any TOFU-schema .json/.jsonl/.parquet file",
                "mini_rwku_targets": rwku}

    # ------------------------------------------------------------------ commands
    def evaluate(self, model: str, out: str | None = None, *, benchmark: str | None = None, seed: int = 0,
                 **options: Any) -> dict:
        from erasure.registry import get_benchmark

        bench = get_benchmark(benchmark or self.default_benchmark, self.name)
        return bench.evaluate(self.load(model), model=model, out=out, seed=seed, **options)

    def audit(self, model: str, attacks: Sequence[str] | None = None, out: str | None = None, **options: Any) -> dict:
        from evals.robustness import run_audit

        return run_audit(self, model, attacks, out, **options)

    def demo(self, out: str | None = None, *, model: str | None = None, seed: int = 0,
             methods: Sequence[str] = ("ga", "npo", "simnpo"), forget: str = "forget10") -> dict:
        """Unlearn ``forget`` with each method; report before/after, the retain model, and an FQ-vs-MU plot."""
        from erasure.api import erase
        from erasure.plots import loss_curves, tradeoff_plot
        from evals.report import markdown_table, save_text
        from evals.tofu import retain_split_for
        from llm.tofu_benchmark import MINI_TOFU, TABLE_KEYS, mini_tofu_data, retain_model_name

        t0 = time.time()
        model = model or self.default_model
        outp = Path(out or "out/demo-llm")
        outp.mkdir(parents=True, exist_ok=True)
        data = mini_tofu_data()
        before = MINI_TOFU.evaluate(self.load(model), model=model, forget=forget, data=data)
        ref = before.pop("retain_reference")
        retain_name = retain_model_name(model, forget)
        histories = {}
        rows = {"original": before,
                "retain model": MINI_TOFU.evaluate(self.load(retain_name), model=retain_name, forget=forget,
                                                   retain_reference=ref, data=data)}
        for method in methods:
            t1 = time.time()
            result = erase(self.load(model), method=method, forget=data[forget].to_list(),
                           retain=data[retain_split_for(forget)].to_list(), seed=seed)
            rec = MINI_TOFU.evaluate(result.adapter, model=f"{model} + {method}", forget=forget, retain_reference=ref,
                                     data=data)
            rec["erase_seconds"] = round(time.time() - t1 - rec["seconds"], 1)
            rec["steps"], rec["lr"] = result.train_config["steps"], result.train_config["lr"]
            rows[method] = rec
            histories[method] = result.loop.history
        report = {"forget": forget, "model": model, "methods": list(methods),
                  "results": {name: {k: r.get(k) for k in (*TABLE_KEYS, "erase_seconds", "steps", "lr")}
                              for name, r in rows.items()},
                  "seconds": round(time.time() - t0, 1)}
        (outp / "report.json").write_text(report_json(report))
        base_mu = before["model_utility"]
        tradeoff_plot([(name, r["model_utility"] / base_mu, r["forget_quality"]) for name, r in rows.items()],
                      outp / "fq_vs_mu.png", x_label="model utility / original's", y_label="forget quality",
                      log_y=True, title=f"{forget} on {model}")
        curves = [f"![{m} loss]({loss_curves(h, outp / f'loss_{m}.png', title=m).name})" for m, h in histories.items()]
        table = markdown_table(["model", *TABLE_KEYS], [[name, *(r.get(k) for k in TABLE_KEYS)]
                                                        for name, r in rows.items()])
        save_text(outp / "report.md", f"# Unlearning {forget} from {model}\n\n{table}\n\n![FQ vs MU](fq_vs_mu.png)\n\n"
                  "forget_quality: KS-test p-value against the retain-only model (higher = closer to never trained).\n"
                  "model_utility: harmonic mean of probability, ROUGE and truth ratio on retain, real authors and "
                  f"world facts.\n\n{' '.join(curves)}\n\nSeconds: {report['seconds']}\n")
        return report


LLM = LLMModality()
