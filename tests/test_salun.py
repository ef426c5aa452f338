"""SalUn for diffusion (diffusion/salun.py): its own saliency mask, the relabelling objective, the retain term."""

from __future__ import annotations

import pytest
import torch

from diffusion.adapter import DiffusionAdapter
from diffusion.salun import pseudo_concept
from erasure import erase
from erasure.adapter import named_parameters
from erasure.masks import Mask
from tests.conftest import make_tiny_pipeline


def test_pseudo_concept_is_the_next_of_its_domain():
    adapter = DiffusionAdapter(make_tiny_pipeline())
    assert pseudo_concept(adapter, "Neon") == "Sketch" and pseudo_concept(adapter, "mosaic") == "Neon"
    assert pseudo_concept(adapter, "Star") == "Circle"
    with pytest.raises(ValueError, match="pseudo="):
        pseudo_concept(adapter, "Baroque")


def test_salun_trains_only_its_saliency_mask_and_moves_the_concept(tmp_path):
    pipe = make_tiny_pipeline()
    before = {n: p.detach().clone() for n, p in named_parameters(DiffusionAdapter(pipe).modules()).items()}
    result = erase(pipe, "Neon", method="salun", steps=3, lr=1e-3, batch_size=2, images=1, ddim_steps=4,
                   recommended=False)
    assert result.info["mask"]["kind"] == "salun" and result.info["mask"]["ratio"] == 0.5
    history = result.loop.history
    assert {"salun_forget", "salun_retain"} <= set(history[0])
    after = named_parameters(result.adapter.modules())
    unet = [n for n in after if n.startswith("unet.")]
    kept = sum(int((after[n] != before[n]).sum()) for n in unet)
    assert 0 < kept <= result.loop.trainable_parameters
    total = sum(after[n].numel() for n in unet)
    assert result.loop.trainable_parameters == round(0.5 * total)  # the whole UNet scored, half kept
    assert all(torch.equal(after[n], before[n]) for n in after if not n.startswith("unet."))
    result.save(tmp_path / "m")  # the mask's record travels with the model
    assert '"kind": "salun"' in (tmp_path / "m" / "erasure.json").read_text()


def test_salun_takes_a_given_mask_instead_of_its_own():
    pipe = make_tiny_pipeline()
    adapter = DiffusionAdapter(pipe)
    names = [n for n in named_parameters(adapter.modules()) if n.startswith("unet.")]
    params = named_parameters(adapter.modules())
    only = names[0]
    mask = Mask({n: (torch.ones_like(params[n], dtype=torch.bool) if n == only else
                     torch.zeros_like(params[n], dtype=torch.bool)) for n in names}, {"kind": "given"})
    result = erase(pipe, "Neon", method="salun", steps=1, lr=1e-3, batch_size=2, ddim_steps=4, mask=mask,
                   recommended=False)
    assert result.info["mask"]["kind"] == "given" and result.loop.trainable_parameters == params[only].numel()
