"""Checks every registered method and attack gets for free (peft's TEST_CASES idea): the rows come from the
registries, so a new method or attack is tested by registering it, and a new modality only needs its tiny case
in ``TINY_CASES``.

Methods: a few steps on the modality's tiny model train something, change nothing outside the method's selector,
keep the loss finite, and the result saves and loads back through the modality. Attacks: an audit on the tiny
model runs, leaves every weight byte-identical, and reports 0 <= ASR pre <= ASR post <= 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from erasure import erase
from erasure.adapter import named_parameters
from erasure.registry import ATTACKS, attack_options, get_attack, get_method, get_modality, method_names, \
    modality_names
from erasure.selectors import Selector


@dataclass
class TinyCase:
    """A modality's tiny seeded model and data."""

    adapter: Any
    forget: list
    retain: list
    audit_rows: list


def _diffusion_case() -> TinyCase:
    from diffusion.adapter import DiffusionAdapter
    from tests.conftest import make_tiny_pipeline

    g = torch.Generator().manual_seed(0)
    forget = [{"prompt": "a circle image in neon style .", "image": torch.rand(3, 8, 8, generator=g)} for _ in range(2)]
    retain = [{"prompt": "a square image in sketch style .", "image": torch.rand(3, 8, 8, generator=g)}
              for _ in range(2)]
    audit = [{"prompt": p, "images": torch.rand(2, 3, 8, 8, generator=g)}
             for p in ("a circle image in neon style .", "a star image in neon style .")]
    return TinyCase(DiffusionAdapter(make_tiny_pipeline()), forget, retain, audit)


def _llm_case() -> TinyCase:
    from llm.adapter import CausalLMAdapter
    from tests.conftest import QA, make_trained_tiny_lm

    return TinyCase(CausalLMAdapter(*make_trained_tiny_lm()), QA[:2], QA[2:], list(QA))


# modality -> its tiny case; every registered modality must have one
TINY_CASES: dict[str, Callable[[], TinyCase]] = {"diffusion": _diffusion_case, "llm": _llm_case}

# the concept the tiny case's forget rows hold (given to methods that edit it inside them: UCE, CA)
CONCEPTS = {"diffusion": "neon"}

# small settings for any method / attack that has these options (everything else keeps its defaults)
FAST_METHOD_OPTIONS = {"ddim_steps": 3, "attack_steps": 1, "num_tokens": 2}
FAST_ATTACK_OPTIONS = {"iterations": 2, "steps": 2, "tries": 1, "sample_steps": 2, "ddim_steps": 3, "k": 1,
                       "check_every": 1, "generations": 2, "population": 4, "n_tokens": 2}


def tiny_case(modality: str) -> TinyCase:
    if modality not in TINY_CASES:
        raise AssertionError(f"modality {modality!r} has no tiny case in tests/generic_checks.py TINY_CASES")
    return TINY_CASES[modality]()


def _modalities_of(entry_modality: str) -> list[str]:
    return list(modality_names()) if entry_modality == "any" else [entry_modality]


def method_cases() -> list[tuple[str, str]]:
    """(method, modality) for every registered method and every modality it serves."""
    return [(m, mod) for m in method_names() for mod in _modalities_of(get_method(m).modality)]


def attack_cases() -> list[tuple[str, str]]:
    """(attack, modality) for every registered attack and every modality it serves."""
    return [(a, mod) for a in sorted(ATTACKS.names()) for mod in _modalities_of(getattr(ATTACKS.get(a), "modality",
                                                                                          "any"))]


def _weights(adapter: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in named_parameters(adapter.modules()).items()}


def check_method(name: str, modality: str, tmp_path) -> None:
    case = tiny_case(modality)
    spec = get_method(name)
    options = {k: v for k, v in FAST_METHOD_OPTIONS.items() if k in spec.config_cls.__dataclass_fields__}
    before = _weights(case.adapter)
    concept = CONCEPTS.get(modality) if "concept" in spec.config_cls.__dataclass_fields__ else None
    result = erase(case.adapter, concept, method=name, forget=case.forget, retain=case.retain, steps=2, lr=1e-2,
                   seed=0, train={"show_progress": False}, free_text=True, **options)
    after = _weights(case.adapter)
    # a tensor the method added (SPUL's soft prompt) counts as changed
    changed = {n for n in after if n not in before or not torch.equal(before[n], after[n])}
    selected = Selector(include=result.info["selector"]["include"], exclude=result.info["selector"]["exclude"])
    assert changed, f"{name} on {modality}: two steps changed no weight"
    outside = sorted(n for n in changed if not selected.matches(n))
    assert not outside, f"{name} on {modality} changed weights outside its selector: {outside[:3]}"
    if spec.solve is None:  # a closed-form method has no steps
        losses = [h["loss"] for h in result.loop.history]
        assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses))), losses
    assert all(torch.isfinite(p).all() for p in after.values()), f"{name} on {modality}: non-finite weights"
    result.save(tmp_path / "saved")
    again = _weights(get_modality(modality).load(tmp_path / "saved"))
    assert all(torch.equal(after[n], again[n]) for n in after), f"{name}: saved weights differ from the trained ones"


def check_attack(name: str, modality: str) -> dict:
    from erasure.reference import SnapshotReference
    from evals.robustness import audit_attack, with_concept

    case = tiny_case(modality)
    fast = {k: v for k, v in FAST_ATTACK_OPTIONS.items() if k in attack_options(name)}
    attack = with_concept(get_attack(name, **fast), CONCEPTS.get(modality))  # as an audit gives it
    before = _weights(case.adapter)
    reference = SnapshotReference(dict(named_parameters(case.adapter.modules())), case.adapter.modules())
    never = lambda outputs, rows: [False] * len(outputs)  # noqa: E731  (the attack must run on every row)
    record = audit_attack(case.adapter, case.audit_rows, attack, never, reference=reference)
    after = _weights(case.adapter)
    assert all(torch.equal(before[n], after[n]) for n in before), f"attack {name} changed the model's weights"
    assert 0.0 <= record["pre_asr"] <= record["post_asr"] <= 1.0 and 1 <= record["n"] <= len(case.audit_rows)
    assert record["attack"] == attack.name
    return record
