"""TOFU's protocol on a pretrained model (llm/tofu_finetune.py), on the tiny mini-TOFU model as the base."""

from __future__ import annotations

import json

import pytest
import torch

from llm.modality import LLM
from llm.tofu_finetune import ADAPTER_FILE, merge, tofu_model_names, train


def test_adapters_train_ship_and_merge_into_plain_models(tmp_path, monkeypatch):
    monkeypatch.setenv("ERASURE_CACHE", str(tmp_path / "cache"))
    base = LLM.load("mini-tofu")
    before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    reports = train("mini-tofu", epochs=0.05, batch=8, lr=1e-2, rank=2, root=tmp_path / "weights")
    assert set(reports) == {"mini-tofu-tofu", "mini-tofu-tofu-retain90"}
    # every answer twice: as written and paraphrased (the recipe of the tiny models)
    assert reports["mini-tofu-tofu"]["rows"] == 800 and reports["mini-tofu-tofu-retain90"]["rows"] == 720
    for name in tofu_model_names("mini-tofu"):
        folder = tmp_path / "weights" / name
        assert (folder / ADAPTER_FILE).is_file()
        assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "mini-tofu"

    merged = merge("mini-tofu", root=tmp_path / "weights")
    tuned = LLM.load(str(merged["mini-tofu-tofu"]))
    # the base model's own files are untouched; the merged model differs from it only in the LoRA'd linears
    fresh = LLM.load("mini-tofu")
    assert all(torch.equal(before[n], p) for n, p in fresh.model.named_parameters())
    changed = [n for n, p in tuned.model.named_parameters() if not torch.equal(before[n], p)]
    assert changed and all("proj" in n for n in changed), changed
    # merging again is skipped (same adapter bytes), and the merged folder is a plain model (no adapter files)
    stamp = (merged["mini-tofu-tofu"] / "merged_from.json").stat().st_mtime_ns
    assert merge("mini-tofu", root=tmp_path / "weights")["mini-tofu-tofu"] == merged["mini-tofu-tofu"]
    assert (merged["mini-tofu-tofu"] / "merged_from.json").stat().st_mtime_ns == stamp
    assert not (merged["mini-tofu-tofu"] / ADAPTER_FILE).exists()


def test_merge_without_adapters_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="llm.tofu_finetune train"):
        merge("mini-tofu", root=tmp_path)
