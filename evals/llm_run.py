"""End-to-end LLM runs behind the CLI: unlearn a (mini-)TOFU split, evaluate, and the method-comparison demo."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

from erasure.api import erase
from erasure.models import apply_recommended, resolve_model_path
from evals.report import markdown_table, save_text, scatter_plot
from llm.tofu_data import FORGET_SPLITS

logger = logging.getLogger(__name__)

TABLE_KEYS = ("forget_quality", "model_utility", "forget_rouge", "forget_prob", "forget_truth_ratio", "retain_rouge",
              "privleak", "verbmem", "knowmem_forget", "knowmem_retain")


def is_llm_model(model: str) -> bool:
    """A built-in LLM name, or a folder with a transformers config and no diffusion components."""
    if model.startswith("mini-tofu"):
        return True
    try:
        path = resolve_model_path(model)
    except FileNotFoundError:
        return False
    return (path / "config.json").is_file() and not (path / "unet").is_dir()


def load_lm(model: str):
    """(model, tokenizer) from a built-in name or a local folder (safetensors only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(model)
    lm = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(path)
    return lm, tok


def mini_tofu_data(seed: int = 0) -> dict:
    from llm.tofu_data import build_mini_tofu

    return build_mini_tofu(seed=seed)


def forget_and_retain(forget: str, retain: str | None, data: dict | None = None) -> tuple[list[dict], list[dict] | None]:
    """A mini-TOFU split name (with its retain split) or local JSON-lines / parquet files in TOFU's schema."""
    from llm.tofu_data import FORGET_SPLITS, load_tofu, retain_split_for

    if forget in FORGET_SPLITS:
        data = data or mini_tofu_data()
        return data[forget].to_list(), data[retain or retain_split_for(forget)].to_list()

    def read(path: str) -> list[dict]:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"forget/retain file {path!r} does not exist (or name a split: "
                                    f"{', '.join(FORGET_SPLITS)})")
        return load_tofu(p.parent, p.stem).to_list()

    rows = read(forget)
    if not rows:
        raise ValueError(f"the forget set {forget!r} is empty")
    return rows, read(retain) if retain else None


def run_llm_erase(model: str, forget: str, method: str, out: str | None, retain: str | None = None,
                  steps: int | None = None, lr: float | None = None, seed: int = 0, train: dict | None = None,
                  method_options: dict | None = None, data: dict | None = None):
    """Unlearn ``forget`` from ``model``; saves to ``out`` when given; returns the ErasureResult."""
    lm, tok = load_lm(model)
    forget_rows, retain_rows = forget_and_retain(forget, retain, data)
    steps, lr, train, options = apply_recommended(model, method, steps, lr, train, method_options)
    result = erase(lm, tokenizer=tok, forget=forget_rows, retain=retain_rows, method=method, steps=steps, lr=lr,
                   seed=seed, train=train, **options)
    if out:
        result.save(out)
    return result


def retain_model_name(model: str, forget: str) -> str | None:
    """The retain-only reference shipped next to a built-in model (mini-tofu -> mini-tofu-retain90)."""
    from llm.tofu_data import retain_split_for

    if not model.startswith("mini-tofu"):
        return None
    return f"mini-tofu-{retain_split_for(forget)}"


def run_llm_eval(model: str, forget: str = "forget10", out: str | None = None, retain_model: str | None = None,
                 adapter: Any = None, retain_reference: dict | None = None, data: dict | None = None) -> dict:
    """TOFU + MUSE metrics of ``model`` on mini-TOFU ``forget``; writes out/eval.json when ``out`` is given."""
    from evals.tofu_run import evaluate_tofu
    from llm.adapter import CausalLMAdapter

    data = data or mini_tofu_data()
    if adapter is None:
        adapter = CausalLMAdapter(*load_lm(model))
    retain_adapter = None
    if retain_reference is None:
        name = retain_model or retain_model_name("mini-tofu", forget)
        retain_adapter = CausalLMAdapter(*load_lm(name))
    record = evaluate_tofu(adapter, data, forget, retain_adapter=retain_adapter, retain_reference=retain_reference)
    record["model"] = model
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "eval.json").write_text(json.dumps({k: v for k, v in record.items() if k != "retain_reference"},
                                                        indent=2))
    return record


def run_llm_demo(out: str = "out/demo-llm", methods: tuple[str, ...] = ("ga", "npo", "simnpo"),
                 forget: str = "forget10", model: str = "mini-tofu", seed: int = 0) -> dict:
    """Unlearn ``forget`` with each method; report before/after, the retain model, and an FQ-vs-MU plot."""
    t0 = time.time()
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    data = mini_tofu_data()
    before = run_llm_eval(model, forget, data=data)
    ref = before.pop("retain_reference")
    from llm.adapter import CausalLMAdapter

    retain_rec = run_llm_eval(retain_model_name(model, forget), forget, retain_reference=ref, data=data)
    rows = {"original": before, "retain model": retain_rec}
    for method in methods:
        t1 = time.time()
        result = run_llm_erase(model, forget, method, None, seed=seed, data=data)
        rec = run_llm_eval(f"{model} + {method}", forget, adapter=CausalLMAdapter(result.adapter.model,
                                                                                 result.adapter.tokenizer),
                           retain_reference=ref, data=data)
        rec["erase_seconds"] = round(time.time() - t1 - rec["seconds"], 1)
        rec["steps"], rec["lr"] = result.train_config["steps"], result.train_config["lr"]
        rows[method] = rec
    report = {"forget": forget, "model": model, "methods": list(methods),
              "results": {name: {k: r.get(k) for k in (*TABLE_KEYS, "erase_seconds", "steps", "lr")}
                          for name, r in rows.items()},
              "seconds": round(time.time() - t0, 1)}
    (outp / "report.json").write_text(json.dumps(report, indent=2))
    base_mu = before["model_utility"]
    scatter_plot([(name, r["model_utility"] / base_mu, r["forget_quality"]) for name, r in rows.items()],
                 x_label="model utility / original", y_label="forget quality (log)", log_y=True
                 ).save(outp / "fq_vs_mu.png")
    table = markdown_table(["model", *TABLE_KEYS], [[name, *(r.get(k) for k in TABLE_KEYS)] for name, r in rows.items()])
    save_text(outp / "report.md", f"# Unlearning {forget} from {model}\n\n{table}\n\n![FQ vs MU](fq_vs_mu.png)\n\n"
              "forget_quality: KS-test p-value against the retain-only model (higher = closer to never trained).\n"
              "model_utility: harmonic mean of probability, ROUGE and truth ratio on retain, real authors and "
              f"world facts.\n\nSeconds: {report['seconds']}\n")
    return report


def run_llm_audit(model: str, forget: str = "forget10", attack: str | Sequence[str] = "soft-prompt",
                  out: str | None = None, n: int | None = None, threshold: float = 0.5, seed: int = 0,
                  attack_options: dict | None = None, with_utility: bool = True, retain_model: str | None = None,
                  data: dict | None = None) -> dict:
    """``erasure audit`` (LLM): soft-prompt / relearning attacks on the forget QA, judged by an answer matcher.

    One attack writes out/audit.json and returns its record; several write out/ATTACK/audit.json and return
    the combined summary. Both write out/robustness.json and out/robustness.md (ASR pre/post per attack plus the
    model's forget quality, model utility and forget ROUGE).

    Args:
        model: an unlearned model folder or a built-in name.
        forget: the forget split (or a TOFU-schema file) whose answers the attacks try to recover.
        attack: an attack name or a list (soft-prompt, relearn).
        out: output folder (nothing written when None).
        n: attack at most the first ``n`` forget rows.
        threshold: the judge: ROUGE-L recall of the true answer >= threshold counts as recovered.
        seed: seeds the attacks.
        attack_options: options for every attack, or ``NAME.key`` for one (e.g. ``relearn.steps``).
        with_utility: also run the TOFU evaluation of the same model.
        retain_model: the retain-only reference for forget quality (default: the shipped one).
    """
    from evals.robustness import audit_llm, build_attacks, robustness_summary, write_robustness
    from llm.adapter import CausalLMAdapter

    names = [attack] if isinstance(attack, str) else list(attack)
    attacks = build_attacks(names, attack_options, seed=seed)
    data = data or (mini_tofu_data() if forget in FORGET_SPLITS else None)
    rows, _ = forget_and_retain(forget, None, data)
    rows = rows[: n or None]
    adapter = CausalLMAdapter(*load_lm(model))

    def one(name: str, adversary: Any) -> dict:
        logger.info("audit: %s on %d forget rows", name, len(rows))
        record = {**audit_llm(adapter, rows, adversary, threshold=threshold, seed=seed), "model": model,
                  "forget": forget}
        if out:
            folder = Path(out) if len(names) == 1 else Path(out) / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "audit.json").write_text(json.dumps(record, indent=2))
        return record

    records = {name: one(name, adversary) for name, adversary in attacks.items()}
    utility = None
    if with_utility:
        if data is None:
            raise ValueError("the utility numbers need a mini-TOFU split as --forget (or pass --no-utility)")
        ev = run_llm_eval(model, forget, retain_model=retain_model, adapter=adapter, data=data)
        utility = {k: ev[k] for k in ("forget_quality", "model_utility", "forget_rouge")}
    summary = robustness_summary(records, utility, model=model, forget=forget)
    if out:
        write_robustness(summary, out)
    if len(names) == 1:
        return {**records[names[0]], "utility": utility}
    return summary
