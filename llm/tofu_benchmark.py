"""The mini-TOFU benchmark for LLMs (TOFU, Maini et al. 2024, https://arxiv.org/abs/2401.06121, plus MUSE's
VerbMem / KnowMem / PrivLeak): its splits as forget and retain data, the TOFU + MUSE numbers of a model against
the retain-only model of the same split, and audits of the forget questions judged by answer recall.

Registered as ``"llm.tofu_benchmark:MINI_TOFU"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erasure.files import report_json
from erasure.modality import AuditPlan, Option

TABLE_KEYS = ("forget_quality", "model_utility", "forget_rouge", "forget_prob", "forget_truth_ratio", "retain_rouge",
              "privleak", "verbmem", "knowmem_forget", "knowmem_retain")
_RETAIN_MODEL = Option(("--retain-model",), "the retain-only reference model (default: the shipped one of the split)")


def mini_tofu_data(seed: int = 0) -> dict:
    """Every mini-TOFU split (``llm.tofu_data.build_mini_tofu``)."""
    from llm.tofu_data import build_mini_tofu

    return build_mini_tofu(seed=seed)


def forget_and_retain(forget: str, retain: str | None = None,
                      data: dict | None = None) -> tuple[list[dict], list[dict] | None]:
    """A mini-TOFU split name (with its retain split) or local JSON-lines / parquet files in TOFU's schema."""
    from evals.tofu import FORGET_SPLITS, retain_split_for
    from llm.tofu_data import load_tofu

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


def retain_model_name(model: str, forget: str) -> str | None:
    """The retain-only reference of a named TOFU model: ``<model>-<retain split>`` when that name exists
    (mini-tofu -> mini-tofu-retain90, smollm2-135m-tofu -> smollm2-135m-tofu-retain90), else None."""
    from erasure.models import BUILTIN_MODELS, CACHED_MODELS
    from evals.tofu import retain_split_for

    name = f"{model}-{retain_split_for(forget)}"
    return name if name in BUILTIN_MODELS or name in CACHED_MODELS else None


class MiniTofuBenchmark:
    """TOFU + MUSE numbers on mini-TOFU, and audits of its forget questions."""

    name = "mini-tofu"
    modality = "llm"
    target = "forget"
    summary_keys = ("forget_split", *TABLE_KEYS, "seconds")
    utility_keys = ("forget_quality", "model_utility", "forget_rouge")
    options = {
        "eval": (Option(("--forget",), "the forget split (default forget10)"), _RETAIN_MODEL,
                 Option(("--tofu-dir",), "a local copy of the released TOFU (its forgetXX_perturbed, "
                                         "retain_perturbed, real_authors_perturbed, world_facts_perturbed and "
                                         "holdoutXX files) to evaluate on instead of mini-TOFU; needs "
                                         "--retain-model")),
        "audit": (Option(("--forget",), "the forget split or TOFU-schema file whose answers the attacks recover "
                                        "(default forget10)"),
                  Option(("--threshold",), "ROUGE-L recall of the true answer that counts as recovered (default 0.5)",
                         type=float),
                  _RETAIN_MODEL),
    }

    def evaluate(self, adapter: Any, *, model: str, out: str | None = None, seed: int = 0, forget: str = "forget10",
                 retain_model: str | None = None, retain_reference: dict | None = None,
                 data: dict | None = None, tofu_dir: str | None = None) -> dict:
        """TOFU + MUSE metrics of the model on mini-TOFU ``forget`` (or the released TOFU's, from ``tofu_dir``);
        writes out/eval.json when ``out`` is given.

        Args:
            adapter: the evaluated model's ``CausalLMAdapter``.
            model: its name or folder (recorded).
            out: output folder (nothing written when None).
            seed: unused (greedy decoding and likelihoods are deterministic).
            forget: the forget split.
            retain_model: the retain-only reference (default: the shipped one of the split).
            retain_reference: its cached numbers from an earlier record (skips evaluating it again).
            data: the mini-TOFU splits (default: built).
            tofu_dir: a local copy of the released TOFU to read the splits from instead (``load_tofu_eval``); the
                whole retain_perturbed set is evaluated, as TOFU does, and ``retain_model`` (or
                ``retain_reference``) must be the model fine-tuned on that TOFU's retain split.
        """
        from evals.tofu import FORGET_SPLITS, retain_split_for
        from evals.tofu_run import evaluate_tofu
        from llm.modality import LLM

        if forget not in FORGET_SPLITS:
            raise ValueError(f"the mini-tofu benchmark evaluates a forget split ({', '.join(FORGET_SPLITS)}), not "
                             f"{forget!r} (an audit of a file takes --no-utility)")
        sizes = {}
        if tofu_dir is not None:
            from llm.tofu_data import load_tofu_eval

            if data is not None:
                raise ValueError(f"tofu_dir {tofu_dir}: give the splits either as data or as tofu_dir, not both")
            if retain_model is None and retain_reference is None:
                raise ValueError(f"--tofu-dir {tofu_dir}: forget quality compares against the model fine-tuned on "
                                 f"that TOFU's {retain_split_for(forget)}; give it with --retain-model")
            data, sizes = load_tofu_eval(tofu_dir, forget), {"retain_eval_size": None}  # all of retain_perturbed
        data = data or mini_tofu_data()
        retain_adapter = None
        if retain_reference is None:
            retain_adapter = LLM.load(retain_model or self.reference_for(adapter, model, forget))
        record = evaluate_tofu(adapter, data, forget, retain_adapter=retain_adapter, retain_reference=retain_reference,
                               **sizes)
        record["model"] = model
        if getattr(adapter, "guard", None) is not None:  # ECO: how often its classifier flags each split's questions
            record["guard_flag_rate"] = adapter.guard_flag_rates(
                {split: data[split]["question"] for split in (forget, retain_split_for(forget), "real_authors",
                                                              "world_facts") if split in data})
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "eval.json").write_text(report_json({k: v for k, v in record.items()
                                                              if k != "retain_reference"}))
        return record

    @staticmethod
    def reference_for(adapter: Any, model: str, forget: str) -> str:
        """The retain-only model that forget quality compares ``model`` against: the one of the named TOFU model it
        is, or was erased from (its erasure.json); any other model needs ``--retain-model``."""
        from erasure.models import named_model_of

        from evals.tofu import retain_split_for

        named = model if retain_model_name(model, forget) else named_model_of(getattr(adapter, "source", None))
        if named and named.endswith(f"-{retain_split_for(forget)}"):  # the retain model itself
            return named
        reference = retain_model_name(named, forget) if named else None
        if reference is None:
            raise ValueError(f"mini-tofu scores a model against the retain-only model of the TOFU model it was "
                             f"fine-tuned as; {model!r} is none of the named ones (mini-tofu, smollm2-135m-tofu) nor "
                             f"erased from one: give --retain-model (retain_model=) for its {forget} split")
        return reference

    def prepare_audit(self, adapter: Any, *, original: Any = None, seed: int = 0, n: int | None = None,
                      forget: str = "forget10", threshold: float = 0.5, retain_model: str | None = None) -> AuditPlan:
        """The first ``n`` forget rows, judged by ROUGE-L recall of the true answer >= ``threshold``."""
        from evals.judges import answer_matcher

        rows, _ = forget_and_retain(forget)
        return AuditPlan(rows=rows[: n or None], judge=answer_matcher(threshold), context={"forget": forget},
                         eval_options={"forget": forget, "retain_model": retain_model})


MINI_TOFU = MiniTofuBenchmark()
