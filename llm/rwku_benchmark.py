"""The mini-RWKU benchmark (``llm/rwku_data.py``): unlearn a real-world target from a pretrained LLM and measure
what went and what stayed.

- ``erase_data``: the forget set is the target's forget corpus (the base model's own texts about it), the retain
  set the base model's texts about unrelated topics, its answers to general questions and the other targets'
  forget corpora (as TOFU retains the other authors); no fine-tuning first (RWKU's setting).
- ``evaluate``: per target, forget accuracy per probe form (direct QA, fill-in-the-blank, and the adversarial
  forms), neighbour accuracy, utility accuracy, fluency (perplexity on general prose) and the membership-inference
  AUC of the forget corpus against held-out text of the same kind (Min-K%++, k = 0.4; 0.5 = no signal).
- ``prepare_audit``: the target's direct probes, judged by answer match.

Registered as ``"llm.rwku_benchmark:MINI_RWKU"``; the data shipped for SmolLM2-135M-Instruct is
``llm/weights/smollm2-135m/mini-rwku.json`` (``--data`` names another, built by ``python -m llm.rwku_data build``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from erasure.files import report_json
from erasure.modality import AuditPlan, Option
from llm.rows import qa_rows

DEFAULT_DATA = ("llm", "smollm2-135m/mini-rwku.json")  # (package, file under its weights/)
_TARGET = Option(("--target",), "the mini-RWKU target, e.g. 'Harry Potter'")
_DATA = Option(("--data",), "a mini-RWKU data file (default: the one shipped for smollm2-135m)")
_JUDGE = Option(("--judge",), "judge answers with this local causal LM (a name or folder, e.g. smollm2-135m; "
                              "llm/judge.py) instead of answer matching")
DIRECT_FORMS = ("qa", "fb")


def load_data(data: str | None = None) -> dict:
    """The benchmark data: ``data`` (a file) or the shipped file."""
    from erasure.models import package_weights
    from llm.rwku_data import load

    return load(data or package_weights(DEFAULT_DATA[0]) / DEFAULT_DATA[1])


def _target(data: dict, target: str | None) -> dict:
    if target is None:
        raise ValueError(f"mini-rwku needs a --target; targets: {', '.join(data['targets'])}")
    if target not in data["targets"]:
        raise ValueError(f"unknown mini-rwku target {target!r}; targets: {', '.join(data['targets'])}")
    return data["targets"][target]


def _verdict(judge: str | None, data: str | None) -> Any:
    """``(answers, rows) -> [answered?]``: mini-RWKU's answer match, or the local LM ``judge`` (``llm/judge.py``)."""
    if not judge:
        from evals.judges import probe_matcher

        return probe_matcher()
    from llm.judge import default_judge

    return default_judge(judge, data)


class MiniRwkuBenchmark:
    """Real-knowledge unlearning on a pretrained LLM (after RWKU, https://arxiv.org/abs/2406.10890)."""

    name = "mini-rwku"
    modality = "llm"
    target = "target"
    summary_keys = ("target", "forget_qa", "forget_fb", "forget_adversarial", "neighbour", "utility", "fluency_ppl",
                    "mia_auc", "seconds")
    utility_keys = ("neighbour", "utility", "fluency_ppl")
    options = {"erase": (_TARGET, _DATA), "eval": (_TARGET, _DATA, _JUDGE), "audit": (_TARGET, _DATA, _JUDGE)}

    def erase_data(self, adapter: Any, *, target: str | None = None, data: str | None = None) -> tuple[list, list]:
        """(forget rows: the target's forget corpus, retain rows: the unrelated-topics corpus, the base model's
        answers to general questions and the other targets' forget corpora, as TOFU retains the other authors)."""
        d = load_data(data)
        others = [row for name, t in d["targets"].items() if name != target for row in t["corpus"]]
        retain = d["retain_corpus"] + d.get("retain_qa", []) + others
        return qa_rows(_target(d, target)["corpus"]), qa_rows(retain)

    def evaluate(self, adapter: Any, *, model: str, out: str | None = None, seed: int = 0, target: str | None = None,
                 data: str | None = None, judge: str | None = None) -> dict:
        """Forget accuracy per probe form, neighbour and utility accuracy, fluency and MIA for ``target``.

        Args:
            adapter: the model's ``CausalLMAdapter``.
            model: its name or folder (recorded).
            out: output folder (``eval.json``; nothing written when None).
            seed: unused (greedy decoding and likelihoods are deterministic).
            target: the erased target.
            data: a mini-RWKU data file (default: the shipped one).
            judge: a local causal LM that judges the answers (``llm.judge.default_judge``; None: answer matching).
        """
        from evals.muse import auc
        from evals.rwku import perplexity
        from evals.tofu_run import min_k_scores
        from llm.rwku_data import ADVERSARIAL_FORMS, FORGET_FORMS

        t0 = time.time()
        d = load_data(data)
        t = _target(d, target)
        adapter.model.eval()

        verdict = _verdict(judge, data)

        def accuracy(rows: list[dict]) -> tuple[dict, list[str]]:
            answers = adapter.generate(rows)
            values = [float(v) for v in verdict(answers, rows)]
            return {"agg_value": sum(values) / len(values), "value_by_index": values}, answers

        def answered(rows: list[dict], answers: list[str], scores: dict, form: str | None = None) -> list[dict]:
            return [{"form": form or r["form"], "question": r["question"], "answer": a, "answered": bool(v)}
                    for r, a, v in zip(rows, answers, scores.get("value_by_index", []))]

        forget, forget_answers = accuracy(t["forget"])
        by_form = {f: [v for v, r in zip(forget["value_by_index"], t["forget"]) if r["form"] == f] for f in FORGET_FORMS}
        adversarial = [v for f in ADVERSARIAL_FORMS for v in by_form[f]]
        neighbour, neighbour_answers = accuracy(t["neighbours"]) if t["neighbours"] else ({"agg_value": None}, [])
        utility, utility_answers = accuracy(d["utility"])
        ppl = perplexity(*(x.tolist() for x in adapter.text_nll(d["fluency"])))
        members = min_k_scores(adapter, qa_rows(t["corpus"]), plus_plus=True)
        heldout = min_k_scores(adapter, qa_rows(d["holdout_corpus"]), plus_plus=True)
        record = {
            "target": target, "model": model, "judge": judge or "answer match",
            **{f"forget_{f}": (sum(v) / len(v) if v else None) for f, v in by_form.items()},
            "forget_adversarial": sum(adversarial) / len(adversarial) if adversarial else None,
            "neighbour": neighbour["agg_value"], "utility": utility["agg_value"], "fluency_ppl": ppl["agg_value"],
            "mia_auc": auc(members, heldout),
            "n": {"forget": len(t["forget"]), "neighbour": len(t["neighbours"]), "utility": len(d["utility"])},
            "probes": (answered(t["forget"], forget_answers, forget)
                       + answered(t["neighbours"], neighbour_answers, neighbour, "neighbour")
                       + answered(d["utility"], utility_answers, utility, "utility")),
            "seconds": round(time.time() - t0, 1),
        }
        if getattr(adapter, "guard", None) is not None:  # ECO: how often its classifier flags each kind of probe
            record["guard_flag_rate"] = adapter.guard_flag_rates(
                {**{name: [r["question"] for r in rows]
                    for name, rows in (("forget", t["forget"]), ("neighbour", t["neighbours"]), ("utility", d["utility"]))},
                 "fluency": list(d["fluency"])})
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "eval.json").write_text(report_json(record))
        return record

    def prepare_audit(self, adapter: Any, *, original: Any = None, seed: int = 0, n: int | None = None,
                      target: str | None = None, data: str | None = None, judge: str | None = None) -> AuditPlan:
        """The target's direct probes (QA and fill-in-the-blank, first ``n``), with the base model's answers as the
        text attacks optimise towards, judged by answer match or by the local LM ``judge``."""
        t = _target(load_data(data), target)
        rows = [{"question": r["question"], "answer": r["base_answer"], "answers": r["answers"]}
                for r in t["forget"] if r["form"] in DIRECT_FORMS][: n or None]
        return AuditPlan(rows=rows, judge=_verdict(judge, data), context={"target": target, "judge": judge or "answer match"},
                         eval_options={"target": target, "data": data, "judge": judge})


MINI_RWKU = MiniRwkuBenchmark()
