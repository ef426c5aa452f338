"""Extending the toolkit from outside: a toy method and a toy attack, one registration call each, are usable from
``erase()``, ``erasure erase``, ``erasure audit`` and the generated test rows (docs/contributing.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from erasure import Method, erase
from erasure.adversary import AttackResult
from erasure.cli import main
from erasure.objectives import Objective
from erasure.registry import ATTACKS, METHODS, register_attack, register_method
from tests.generic_checks import attack_cases, check_attack, check_method, method_cases


@dataclass
class ToyConfig:
    """Toy options.

    Args:
        scale: weight of the toy term.
    """

    scale: float = 1.0


@dataclass
class ToyTerm:
    """Pulls the text encoder's output for the forget prompts towards zero (a stand-in objective)."""

    scale: float = 1.0
    split: str = "forget"
    name: str = "toy"
    needs_reference: bool = False

    def __call__(self, s) -> torch.Tensor:
        return self.scale * s.adapter.pipe.encode_prompts(s.batch(self.split).prompts).pow(2).mean()


@dataclass
class ToyAttack:
    """Leaves the batch as it is and counts its calls (the audit then judges the plain generations)."""

    modality = "any"
    per_example = False
    needs_reference = False

    strength: float = 0.0
    name: str = "toy-attack"
    calls = [0]

    def attack(self, adapter, batch, generator, *, reference=None, judge=None) -> AttackResult:
        ToyAttack.calls[0] += 1
        return AttackResult(batch=batch, trace=[self.strength])


@pytest.fixture
def toys():
    register_method(Method("toy", "diffusion", ToyConfig, lambda c, adapter: Objective([(1.0, ToyTerm(c.scale))]),
                           selector="text-encoder"))
    register_attack("toy-attack", ToyAttack)
    ToyAttack.calls[0] = 0
    yield
    METHODS.unregister("toy")
    ATTACKS.unregister("toy-attack")


def _tiny_model_and_judge(tmp_path):
    """The tiny in-code pipeline saved as a model folder, and a (random) judge folder for its vocabulary."""
    from evals.judges import CanvasClassifier
    from tests.conftest import OBJECTS, STYLES, make_tiny_pipeline

    model = make_tiny_pipeline().save(tmp_path / "tiny")
    torch.manual_seed(0)
    CanvasClassifier({"style": list(STYLES), "object": list(OBJECTS)}, width=8, image_size=8).save(tmp_path / "judge")
    return str(model), str(tmp_path / "judge")


def test_a_registered_toy_method_and_attack_work_everywhere(toys, tmp_path, tiny_pipe, capsys):
    # the generated test rows pick them up
    assert ("toy", "diffusion") in method_cases() and ("toy-attack", "llm") in attack_cases()
    check_method("toy", "diffusion", tmp_path / "generic")
    check_attack("toy-attack", "llm")

    # erase(): as the method, and as the adversary of adversarial unlearning
    te = {n: p.clone() for n, p in tiny_pipe.text_encoder.named_parameters()}
    result = erase(tiny_pipe, "Neon", "toy", steps=2, lr=1e-2, scale=2.0, adversary="toy-attack",
                   train={"show_progress": False})
    assert result.method_config == {"scale": 2.0} and result.info["adversary"] == "toy-attack"
    assert any(not torch.equal(p, te[n]) for n, p in tiny_pipe.text_encoder.named_parameters())
    calls = ToyAttack.calls[0]
    assert calls >= 2

    # erasure erase, then erasure audit, on a model folder
    model, judge = _tiny_model_and_judge(tmp_path)
    out = tmp_path / "erased"
    assert main(["erase", "--model", model, "--concept", "Neon", "--method", "toy", "--steps", "2", "--lr", "1e-2",
                 "--adversary", "toy-attack", "--option", "scale=0.5", "--out", str(out)]) == 0
    summary = json.loads((out / "erasure.json").read_text())
    assert summary["method"] == "toy" and summary["method_config"] == {"scale": 0.5}
    assert summary["adversary"] == "toy-attack" and ToyAttack.calls[0] == calls + 2
    capsys.readouterr()
    assert main(["audit", "--model", str(out), "--concept", "Neon", "--attack", "toy-attack", "--n", "2",
                 "--evaluator", judge, "--no-utility", "--option", "strength=0.5",
                 "--out", str(tmp_path / "audit")]) == 0
    record = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert record["attack"] == "toy-attack" and record["n"] == 2 and record["trace"] == [0.5]
    assert 0.0 <= record["pre_asr"] <= record["post_asr"] <= 1.0

    # evals.audit, the Python face of erasure audit: same dispatch, same record
    from evals import audit

    again = audit(str(out), "Neon", attack="toy-attack", n=2, evaluator=judge, with_utility=False,
                  attack_options={"strength": 0.5})
    assert {k: again[k] for k in ("pre_asr", "post_asr", "n", "trace")} == \
        {k: record[k] for k in ("pre_asr", "post_asr", "n", "trace")}


def test_unregistered_names_are_clear_cli_errors(capsys):
    with pytest.raises(SystemExit) as err:
        main(["audit", "--model", "mini-canvas", "--concept", "Neon", "--attack", "toy-attack", "--out", "x"])
    assert err.value.code == 2 and "invalid choice: 'toy-attack'" in capsys.readouterr().err
