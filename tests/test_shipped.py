"""The shipped defaults meet their bars (fast checks here; generation fidelity is a slow test)."""

from __future__ import annotations

import json

import pytest

from canvas_data.dataset import build_mini_canvas, to_tensor
from canvas_data.train import HELDOUT_START, check_fidelity
from erasure.models import resolve_model_path
from evals.judges import CanvasClassifier, accuracy


def test_evaluator_recognises_heldout_mini_canvas_images():
    judge = CanvasClassifier.load(resolve_model_path("mini-canvas-evaluator"))
    ds = build_mini_canvas(per_pair=3, start_index=HELDOUT_START + 500)  # never seen in training
    pred = judge.predict(to_tensor(ds["image"]))
    assert accuracy(pred["style"], ds["style_id"]) >= 0.95
    assert accuracy(pred["object"], ds["object_id"]) >= 0.95


def test_shipped_model_files_are_safetensors_with_concepts():
    root = resolve_model_path("mini-canvas")
    assert (root / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (root / "text_encoder" / "model.safetensors").is_file()
    assert not list(root.rglob("*.bin")) and not list(root.rglob("*.pt"))
    concepts = json.loads((root / "concepts.json").read_text())
    assert len(concepts["styles"]) == 10 and len(concepts["objects"]) == 10


@pytest.mark.slow
def test_generations_show_the_prompted_style_and_object():
    report = check_fidelity(str(resolve_model_path("mini-canvas")), str(resolve_model_path("mini-canvas-evaluator")),
                            per_prompt=2)
    assert report["style_acc"] >= 0.8 and report["object_acc"] >= 0.8, report
