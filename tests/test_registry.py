"""Generic checks generated from the registries (tests/generic_checks.py), plus the registries' own behaviour."""

from __future__ import annotations

import pytest

from erasure.registry import (BENCHMARKS, MODALITIES, get_attack, get_benchmark, get_method, modality_for,
                              modality_names)
from tests.generic_checks import TINY_CASES, attack_cases, check_attack, check_method, method_cases


@pytest.mark.parametrize("method, modality", method_cases())
def test_every_method_trains_its_selection_only_and_saves(method, modality, tmp_path):
    check_method(method, modality, tmp_path)


@pytest.mark.parametrize("attack, modality", attack_cases())
def test_every_attack_audits_without_touching_weights(attack, modality):
    check_attack(attack, modality)


def test_every_modality_has_a_tiny_case_and_its_benchmarks_are_registered():
    assert set(modality_names()) <= set(TINY_CASES)
    for name in modality_names():
        modality = MODALITIES.get(name)
        assert get_benchmark(modality.default_benchmark, name).modality == name
        for attack in modality.default_attacks:
            assert getattr(get_attack(attack), "modality", "any") in ("any", name)
    for name in BENCHMARKS.names():
        assert BENCHMARKS.get(name).modality in modality_names()


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="unknown method 'nope'; known methods: .*esd-x"):
        get_method("nope")
    with pytest.raises(ValueError, match="unknown attack 'nope'; known attacks: .*unlearndiff"):
        get_attack("nope")
    with pytest.raises(ValueError, match="unknown attack 'random' option"):
        get_attack("random", lr=0.1)
    with pytest.raises(ValueError, match="benchmark 'mini-tofu' is for llm models"):
        get_benchmark("mini-tofu", "diffusion")


def test_modality_is_detected_once_from_paths_and_objects(tiny_pipe, tiny_lm, tmp_path):
    from diffusion.adapter import DiffusionAdapter

    assert modality_for("mini-canvas").name == "diffusion" and modality_for("mini-tofu").name == "llm"
    assert modality_for(tiny_pipe).name == "diffusion" and modality_for(tiny_lm[0]).name == "llm"
    assert modality_for(DiffusionAdapter(tiny_pipe)).name == "diffusion"
    assert modality_for("mini-canvas", override="llm").name == "llm"
    with pytest.raises(ValueError, match="no modality accepts the model 'mini-canvas-evaluator'; tried: diffusion"):
        modality_for("mini-canvas-evaluator")  # a judge folder: neither a pipeline nor a causal LM
    with pytest.raises(ValueError, match="no modality accepts the model of type int"):
        modality_for(3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        modality_for(str(tmp_path / "nothing"))
