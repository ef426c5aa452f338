"""Mini-canvas generator, the UnlearnCanvas loader, UA/IRA/CRA metrics and the judge interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from canvas_data.dataset import FEATURES, build_mini_canvas, load_unlearncanvas, to_tensor
from canvas_data.mini_canvas import OBJECTS, STYLES, make_prompt, render
from evals.canvas import judge_index, unlearncanvas_scores
from evals.metrics import get_metric, register_metric


def test_render_is_seeded_and_varies():
    a = np.asarray(render("Neon", "Star", seed=3))
    assert a.shape == (32, 32, 3)
    assert np.array_equal(a, np.asarray(render("Neon", "Star", seed=3)))
    assert not np.array_equal(a, np.asarray(render("Neon", "Star", seed=4)))
    assert not np.array_equal(a, np.asarray(render("Sketch", "Star", seed=3)))


def test_render_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown mini-canvas style"):
        render("Baroque", "Star", 0)
    with pytest.raises(ValueError, match="unknown mini-canvas object"):
        render("Neon", "Dragon", 0)


def test_at_least_ten_styles_and_objects_with_unlearncanvas_prompts():
    assert len(STYLES) >= 10 and len(OBJECTS) >= 10
    assert make_prompt("Star", "Neon") == "A Star image in Neon style."


def test_mini_canvas_dataset_schema():
    ds = build_mini_canvas(per_pair=2, styles=STYLES[:2], objects=OBJECTS[:3], size=16)
    assert len(ds) == 2 * 3 * 2
    assert set(ds.features) == set(FEATURES)
    row = ds[0]
    assert row["prompt"] == make_prompt(row["object"], row["style"])
    assert row["image"].size == (16, 16)
    assert STYLES[row["style_id"]] == row["style"]


def test_unlearncanvas_loader_reads_the_real_layout(tmp_path):
    for style in ("Van_Gogh", "Cartoon"):
        for obj in ("Dogs", "Flowers"):
            (tmp_path / style / obj).mkdir(parents=True)
            for i in (1, 2, 10):
                Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / style / obj / f"{i}.jpg")
    (tmp_path / "Seed_Images").mkdir()
    ds = load_unlearncanvas(tmp_path, max_per_pair=2)
    assert len(ds) == 2 * 2 * 2
    assert set(ds.features) == set(FEATURES)
    row = ds[0]
    assert (row["style"], row["object"], row["index"]) == ("Cartoon", "Dogs", 1)
    assert row["prompt"] == "A Dogs image in Cartoon style."
    assert [r["index"] for r in ds.select(range(2))] == [1, 2]  # numeric order, not "1, 10"
    with pytest.raises(FileNotFoundError):
        load_unlearncanvas(tmp_path / "missing")
    with pytest.raises(ValueError, match="styles not found"):
        load_unlearncanvas(tmp_path, styles=["Baroque"])


def test_ua_ira_cra_hand_computed():
    ua = get_metric("ua")(torch.tensor([0, 2, 2, 1]), target=2)
    assert ua["agg_value"] == pytest.approx(0.5) and ua["value_by_index"] == [1.0, 0.0, 0.0, 1.0]
    ira = get_metric("ira")(torch.tensor([1, 1, 0]), [1, 0, 0])
    assert ira["agg_value"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown metric"):
        get_metric("fid-typo")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("ua")(lambda: {})


class _FakeJudge:
    """Reads the class from the image itself: red channel = style id, green = object id."""

    labels = {"style": ["A", "B", "C"], "object": ["x", "y"]}

    def predict(self, images):
        return {"style": images[:, 0, 0, 0].round().long(), "object": images[:, 1, 0, 0].round().long()}


def _img(style_id, object_id):
    img = torch.zeros(3, 2, 2)
    img[0], img[1] = style_id, object_id
    return img


def test_unlearncanvas_scores_follow_the_definitions():
    judge = _FakeJudge()
    # erased style "A": two of its three images no longer look like A
    target = (torch.stack([_img(0, 0), _img(1, 1), _img(2, 0)]), [("A", "x"), ("A", "y"), ("A", "x")])
    # other styles: style right 3/4, object right 2/4
    other = (torch.stack([_img(1, 0), _img(2, 0), _img(1, 0), _img(0, 1)]),
             [("B", "x"), ("C", "y"), ("B", "y"), ("C", "y")])
    s = unlearncanvas_scores(judge, "A", "style", {"target": target, "other": other})
    assert s["ua"]["agg_value"] == pytest.approx(2 / 3)
    assert s["ira"]["agg_value"] == pytest.approx(3 / 4)
    assert s["cra"]["agg_value"] == pytest.approx(2 / 4)


def test_concept_unknown_to_judge_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown to the judge"):
        judge_index(_FakeJudge(), "style", "Z")


def test_classifier_save_load_roundtrip(tmp_path):
    from evals.judges import CanvasClassifier

    torch.manual_seed(0)
    clf = CanvasClassifier({"style": ["a", "b"], "object": ["x", "y", "z"]}, width=8)
    x = to_tensor([render("Neon", "Star", 0), render("Sketch", "Ring", 1)])
    clf.save(tmp_path)
    again = CanvasClassifier.load(tmp_path)
    for d in ("style", "object"):
        assert torch.equal(clf.predict(x)[d], again.predict(x)[d])
