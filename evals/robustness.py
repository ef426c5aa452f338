"""The robustness evaluator: run registered attacks against an erased model and report attack success rates.

ASR as in UnlearnDiff: (rows whose plain generation already shows the concept + rows the attack breaks) / N.
Everything here goes through the adapter (``collate``, ``generate``), the benchmark (rows + judge, utility) and
the attack registry, so one evaluator serves every modality: a diffusion audit attacks each of a concept's
prompts (``per_example`` attacks such as UnlearnDiff), an LLM audit the whole forget set at once (a universal
soft prompt, relearning). The report carries the model's utility so robustness and utility are read side by side.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from erasure.adversary import Adversary, Judge
from erasure.files import report_json
from erasure.reference import SnapshotReference
from erasure.registry import attack_options, get_attack, get_benchmark

logger = logging.getLogger(__name__)


def options_for(name: str, options: dict[str, Any] | None, names: Sequence[str]) -> dict[str, Any]:
    """The options of attack ``name``: plain keys apply to every attack, ``NAME.key`` keys to NAME only."""
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if "." not in key:
            out[key] = value
            continue
        target, sub = key.split(".", 1)
        if target not in names:
            raise ValueError(f"option {key!r} names attack {target!r}, which is not among the attacks run "
                             f"({', '.join(names)})")
        if target == name:
            out[sub] = value
    return out


def build_attacks(names: Sequence[str], options: dict[str, Any] | None = None, seed: int = 0,
                  modality: str | None = None) -> dict[str, Adversary]:
    """Each named attack with its options, {name: attack}; unknown names or options fail here, before any work.
    Attacks with a ``seed`` option get ``seed``."""
    if not names:
        raise ValueError("no attacks given: name at least one")
    if len(set(names)) != len(names):
        raise ValueError(f"an attack is named twice: {list(names)}")
    built = {}
    for n in names:
        seeded = {"seed": seed} if "seed" in attack_options(n) else {}
        built[n] = get_attack(n, for_modality=modality, **{**seeded, **options_for(n, options, names)})
    return built


def with_seed(attack: Adversary, seed: int) -> Adversary:
    """A copy of a dataclass attack with its ``seed`` (init + judged-generation noise) set; others unchanged."""
    if dataclasses.is_dataclass(attack) and any(f.name == "seed" for f in dataclasses.fields(attack)):
        return dataclasses.replace(attack, seed=seed)
    return attack


def with_concept(attack: Adversary, concept: str | None) -> Adversary:
    """A copy of a dataclass attack whose ``concept`` option is unset, given the audit's concept (Ring-A-Bell, CCE
    work on the concept's words); others unchanged."""
    if concept and dataclasses.is_dataclass(attack) and getattr(attack, "concept", "") is None:
        return dataclasses.replace(attack, concept=concept)
    return attack


def _prompt_row(batch: Any, row: Any) -> list[Any]:
    """What to generate from with ``batch.prefix``: the batch's own prompt when it has prompts (an attack that
    replaces the prompt returns an empty one), else the row."""
    prompts = getattr(batch, "prompts", None)
    return [prompts[0]] if prompts else [row]


def _describe(row: Any) -> dict[str, Any]:
    """The plain fields of a row (prompt; question and answer) for the per-example report."""
    if isinstance(row, str):
        return {"prompt": row}
    return {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool))}


def audit_attack(adapter: Any, rows: Sequence[Any], attack: Adversary, judge: Judge, seed: int = 0,
                 reference: Any = None, batched: bool = True) -> dict:
    """Attack ``rows``; returns the audit record (pre/post ASR, per-example results, adversarial outputs).

    Row i is judged with evaluation seed ``seed + i``, before and during the attack, so every attack of an
    audit sees the same pre-attack verdicts. A ``per_example`` attack runs once per row the plain generation
    did not already break (with that row's seed); otherwise the attack runs once on all rows. Rows an attack
    used as data and did not judge (relearning's) are left out of N.

    Args:
        adapter: the erased model's adapter.
        rows: what to attack (``adapter.collate`` and ``adapter.generate`` accept them).
        attack: the adversary.
        judge: ``(outputs, rows) -> [concept present?]``.
        seed: seeds the evaluation and the attack.
        reference: the frozen original (for attacks with ``needs_reference``).
        batched: a per-example attack with ``attack_each`` attacks all rows in one batch (each row keeping its
            own prefix, seed and early stop); False calls ``attack`` once per row (``bench/attack_speed.py``).
    """
    rows = list(rows)
    t0 = time.time()
    seeds = [seed + i for i in range(len(rows))]
    pre = [bool(v) for v in judge(adapter.generate(rows, seeds=seeds), rows)]
    success: list[bool | None] = list(pre)
    entries: list[dict] = [{**_describe(r), "seed": s, "pre_success": p} for r, s, p in zip(rows, seeds, pre)]
    outputs, prefixes, trace = [], {}, []
    if getattr(attack, "per_example", True):
        for i in (i for i in range(len(rows)) if pre[i]):
            entries[i].update(success=True, steps=0, seconds=0.0)
        todo = [i for i in range(len(rows)) if not pre[i]]
        gens = [torch.Generator().manual_seed(seed * 1000 + i) for i in todo]
        if batched and hasattr(attack, "attack_each"):  # all rows in one batch, each with its own early stop
            results = attack.attack_each(adapter, [adapter.collate([rows[i]]) for i in todo], gens,
                                         [seeds[i] for i in todo], reference=reference, judge=judge)
        else:
            results = [with_seed(attack, seeds[i]).attack(adapter, adapter.collate([rows[i]]), g, reference=reference,
                                                          judge=judge) for i, g in zip(todo, gens)]
        for i, res in zip(todo, results):
            out = res.info.get("output")
            out = None if out is None else out[None]
            if res.success is None:  # the attack did not judge: generate from its batch and ask the judge
                out = adapter.generate(_prompt_row(res.batch, rows[i]), prefix=res.batch.prefix, seeds=seeds[i:i + 1])
                ok = bool(judge(out, [rows[i]])[0])
            else:
                ok = bool(res.success[0])
            success[i] = ok
            entries[i].update({"success": ok, **{k: res.info.get(k) for k in
                                                 ("steps", "seconds", "adversarial_prompt", "objective_start",
                                                  "objective_end")}})
            if ok:
                if out is None:  # what the successful attack made the model produce
                    out = adapter.generate(_prompt_row(res.batch, rows[i]), prefix=res.batch.prefix,
                                           seeds=seeds[i:i + 1])
                outputs.append(out[0])
                entries[i]["output_index"] = len(outputs) - 1
                if res.batch.prefix is not None:
                    prefixes[f"example_{i}"] = res.batch.prefix.detach().cpu().contiguous()
                    entries[i]["prefix_key"] = f"example_{i}"
    else:
        res = attack.attack(adapter, adapter.collate(rows), torch.Generator().manual_seed(seed), reference=reference,
                            judge=judge)
        after = res.success
        if after is None:
            after = judge(adapter.generate(rows, prefix=res.batch.prefix, seeds=seeds), rows)
        if len(after) != len(rows):
            raise ValueError(f"attack {attack.name!r} judged {len(after)} rows of {len(rows)}")
        success = [None if a is None else bool(p or a) for p, a in zip(pre, after)]
        for e, s in zip(entries, success):
            e["success"] = s
        if res.batch.prefix is not None:
            prefixes["all"] = res.batch.prefix.detach().cpu().contiguous()
        trace = res.trace
    judged = [i for i, s in enumerate(success) if s is not None]
    if not judged:
        raise ValueError(f"attack {attack.name!r} left no row to judge (give it more rows)")
    n = len(judged)
    return {"pre_asr": sum(pre[i] for i in judged) / n, "post_asr": sum(bool(success[i]) for i in judged) / n,
            "n": n, "attack": attack.name, "per_example": [entries[i] for i in judged], "trace": trace,
            "seconds": round(time.time() - t0, 2), "_outputs": outputs, "_prefixes": prefixes}


def write_audit(record: dict, out: str | Path) -> Path:
    """audit.json (+ adversarial prefix embeddings as safetensors, + a grid of the images successful attacks made)."""
    from safetensors.torch import save_file

    from evals.report import image_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(record)
    prefixes = record.pop("_prefixes", {})
    if prefixes:
        save_file(prefixes, out / "adversarial_prefixes.safetensors")
    outputs = record.pop("_outputs", [])
    images = [o for o in outputs if torch.is_tensor(o)]
    if images:  # each image with the judge's verdict under it: which prompt came back, after how many steps
        verdicts = {row["output_index"]: f"{(row.get('prompt') or '')[:14]}: back"
                    + (f" @{row['steps']}" if row.get("steps") else "")
                    for row in record["per_example"] if "output_index" in row}
        caps = [verdicts.get(i, "back") for i, o in enumerate(outputs) if torch.is_tensor(o)]
        image_grid([images[i : i + 8] for i in range(0, len(images), 8)],
                   captions=[caps[i : i + 8] for i in range(0, len(caps), 8)]).save(out / "successful_attacks.png")
    texts = {i: o for i, o in enumerate(outputs) if isinstance(o, str)}
    for row in record["per_example"]:
        if row.get("output_index") in texts:
            row["output"] = texts[row["output_index"]]
    (out / "audit.json").write_text(report_json(record))
    return out / "audit.json"


def robustness_summary(records: dict[str, dict], utility: dict | None, **context: Any) -> dict:
    """One JSON record over several audits of the same model: pre/post ASR per attack plus its utility."""
    attacks = {n: {k: r.get(k) for k in ("pre_asr", "post_asr", "n", "seconds")} for n, r in records.items()}
    return {**context, "attacks": attacks, "utility": utility}


def write_robustness(summary: dict, out: str | Path) -> Path:
    """robustness.json and robustness.md (one table: attack, ASR pre/post, n, seconds, then the utility)."""
    from evals.report import markdown_table, save_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(report_json(summary))
    utility = summary.get("utility") or {}
    heads = ["attack", "ASR pre-attack", "ASR post-attack", "n", "seconds", *utility]
    rows = [[n, r["pre_asr"], r["post_asr"], r["n"], r["seconds"], *utility.values()]
            for n, r in summary["attacks"].items()]
    what = ", ".join(f"{k} `{v}`" for k, v in summary.items() if k not in ("attacks", "utility"))
    save_text(out / "robustness.md", f"# Robustness audit\n\n{what}\n\n{markdown_table(heads, rows)}\n\n"
              "ASR = (rows already showing the concept + rows the attack breaks) / n. The utility columns "
              "are the same model's numbers, unattacked.\n")
    return out / "robustness.json"


def run_audit(modality: Any, model: str, attacks: str | Sequence[str] | None = None, out: str | None = None, *,
              benchmark: str | None = None, n: int | None = None, seed: int = 0, original: str | None = None,
              attack_options: dict | None = None, with_utility: bool = True, adapter: Any = None,
              context: dict | None = None, **options: Any) -> dict:
    """``erasure audit`` for any modality: attack ``model`` with one or several registered attacks.

    One attack writes out/audit.json (+ adversarial_prefixes.safetensors, successful_attacks.png) and returns its
    record; several write out/ATTACK/audit.json each and return the combined summary. Both also write
    out/robustness.json and out/robustness.md: ASR pre/post per attack next to the model's utility.

    Args:
        modality: the model's modality entry.
        model: an erased model folder or a built-in name.
        attacks: an attack name or a list of them (default: the modality's).
        out: output folder (nothing written when None).
        benchmark: whose rows and judge the audit uses (default: the modality's).
        n: attack at most the first ``n`` rows.
        seed: row i is judged with evaluation seed ``seed + i``; seeds the attacks.
        original: the model before erasure (UnlearnDiff's targets are its generations; attacks that need the
            frozen original use it).
        attack_options: options for every attack, or ``NAME.key`` for one (e.g. ``embedding.lr``).
        with_utility: also evaluate the same model on the benchmark.
        adapter: ``model`` already loaded (e.g. behind a defence); default ``modality.load(model)``.
        context: more to record in every report (e.g. the defence's settings).
        **options: the benchmark's options (e.g. ``concept``, ``evaluator``; ``forget``, ``threshold``).
    """
    names = [attacks] if isinstance(attacks, str) else list(attacks or modality.default_attacks)
    built = build_attacks(names, attack_options, seed=seed, modality=modality.name)
    bench = get_benchmark(benchmark or modality.default_benchmark, modality.name)
    adapter = adapter if adapter is not None else modality.load(model)
    original_adapter = modality.load(original) if original else None
    plan = bench.prepare_audit(adapter, original=original_adapter, seed=seed, n=n, **options)
    needy = [a for a, attack in built.items() if getattr(attack, "needs_reference", False)]
    if needy and original_adapter is None:
        raise ValueError(f"attack {needy[0]!r} needs the model before erasure: give --original")
    reference = None  # the original's values of the tensors that differ, for the attacks that need or use it
    if needy:
        reference = SnapshotReference.of(adapter.modules(), original_adapter.modules())
    elif original_adapter is not None and any(getattr(a, "uses_reference", False) for a in built.values()):
        try:  # optional (Ring-A-Bell's encoder): an original of another architecture only gives its targets
            reference = SnapshotReference.of(adapter.modules(), original_adapter.modules())
        except ValueError as err:
            logger.warning("the original cannot serve as the attacks' reference (%s); they use the audited model", err)
    built = {name: with_concept(attack, plan.context.get("concept")) for name, attack in built.items()}
    utility = None
    if with_utility:
        ev = bench.evaluate(adapter, model=model, seed=seed, **plan.eval_options)
        utility = {k: ev[k] for k in bench.utility_keys}

    records = {}
    for name, attack in built.items():
        logger.info("audit: %s on %d rows", name, len(plan.rows))
        record = audit_attack(adapter, plan.rows, attack, plan.judge, seed=seed, reference=reference)
        record.update({"model": model, **plan.context, **(context or {}), "utility": utility})
        if out:
            write_audit(record, out if len(names) == 1 else Path(out) / name)
        records[name] = {k: v for k, v in record.items() if not k.startswith("_")}
    summary = robustness_summary(records, utility, model=model, **plan.context, **(context or {}))
    if out:
        from erasure.plots import attack_heatmap

        Path(out).mkdir(parents=True, exist_ok=True)
        # per_example keeps the judged rows only (relearn leaves some out): align the columns by each row's seed
        rows_seen = {e["seed"]: e.get("prompt") or e.get("question") or str(e["seed"])
                     for r in records.values() for e in r["per_example"]}
        order = sorted(rows_seen)
        verdicts = {name: [{e["seed"]: e.get("success") for e in r["per_example"]}.get(s) for s in order]
                    for name, r in records.items()}
        attack_heatmap(verdicts, Path(out) / "attack_heatmap.png", example_labels=[rows_seen[s] for s in order])
    if out:
        write_robustness(summary, out)
    return records[names[0]] if len(names) == 1 else summary
