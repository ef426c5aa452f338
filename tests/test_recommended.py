"""Every shipped recommended.json names registered methods with settings their configs accept, so a typo in a
tuned setting fails here instead of in a user's `erasure erase`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from erasure.config import OPTIMIZERS, TrainConfig
from erasure.models import recommended_settings
from erasure.registry import get_method, method_names

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for pattern in ("canvas_data/weights/**/recommended.json", "llm/weights/**/recommended.json")
               for p in ROOT.glob(pattern))


def _entries(path: Path):
    """(method, concept, optimizer, settings) for every method, concept and optimizer entry, merged as ``erase``
    receives them."""
    for method, rec in json.loads(path.read_text()).items():
        if method.startswith("_"):
            continue
        for concept in (None, *rec.get("concepts", {})):
            for optimizer in (None, *rec.get("optimizers", {})):
                yield method, concept, optimizer, recommended_settings(str(path.parent), method, concept, optimizer)


def test_there_are_shipped_recommended_files():
    names = {p.parent.name for p in FILES}
    assert {"mini-canvas", "smollm2-135m", "smollm2-135m-tofu"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT).parent))
def test_recommended_settings_are_valid(path):
    for method, concept, optimizer, rec in _entries(path):
        where = f"{path.relative_to(ROOT)}: {method}" + "".join(f" ({x})" for x in (concept, optimizer) if x)
        assert method in method_names(), f"{where}: not a registered method"
        assert optimizer in (None, *OPTIMIZERS), f"{where}: not an optimizer ({', '.join(OPTIMIZERS)})"
        m = get_method(method)
        train = {k: v for k, v in rec.items() if k != "options"}
        unknown = set(train) - {f.name for f in dataclasses.fields(TrainConfig)}
        assert not unknown, f"{where}: unknown training keys {sorted(unknown)}"
        TrainConfig(**{**m.train_defaults, **train})  # types and ranges
        options = rec.get("options", {})
        unknown = set(options) - {f.name for f in dataclasses.fields(m.config_cls)}
        assert not unknown, f"{where}: unknown {method} options {sorted(unknown)}"
        m.config_cls(**options)
