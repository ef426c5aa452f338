"""Sophia (erasure/sophia.py): the update against hand-computed values, both Hessian estimators, and unlearning runs
with it on both modalities (exact resume)."""

from __future__ import annotations

import pytest
import torch

from erasure import erase
from erasure.adapter import named_parameters
from erasure.config import TrainConfig
from erasure.sophia import Sophia, estimator_for, gnb_estimate, hutchinson_estimate
from tests.generic_checks import TINY_CASES


def test_sophia_step_hand_computed():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = Sophia([p], lr=0.1, betas=(0.9, 0.95), rho=0.04, weight_decay=0.1)
    opt.update_hessian([torch.tensor([200.0, 0.0])], bs=1)  # h = 0.05 * h_hat = [10, 0]
    p.grad = torch.tensor([0.5, -0.1])
    opt.step()
    # decay: [0.99, -1.98]; m = 0.1 g = [0.05, -0.01]; ratio = min(|m| / (0.04 * 1 * h), 1) = [0.125, 1]
    assert torch.allclose(p.detach(), torch.tensor([0.99 - 0.1 * 0.125, -1.98 + 0.1]), atol=1e-7)
    state = opt.state[p]
    assert torch.allclose(state["exp_avg"], torch.tensor([0.05, -0.01])) and float(state["step"]) == 1
    opt.update_hessian([torch.tensor([0.0, 4.0])], bs=2)  # h <- 0.95 h + 0.05 h_hat = [9.5, 0.2]
    assert torch.allclose(state["hessian"], torch.tensor([9.5, 0.2]))
    assert opt.param_groups[0]["bs"] == 2.0
    with pytest.raises(ValueError, match="betas"):
        Sophia([p], betas=(0.9,))


def test_hutchinson_is_exact_on_a_diagonal_quadratic():
    x = torch.nn.Parameter(torch.tensor([1.0, 2.0, -1.0]))
    a = torch.tensor([3.0, 0.5, 2.0])
    h, bs = hutchinson_estimate(0.5 * (a * x * x).sum(), [x], torch.Generator().manual_seed(0))
    assert torch.allclose(h[0], a) and bs == 1.0  # u * (H u) = u * a * u = a for any signs u


def test_gnb_estimate_on_the_tiny_lm():
    adapter = _lm()
    adapter.model.eval()  # no dropout outside the loop
    params = [p.requires_grad_(True) for p in named_parameters(adapter.modules()).values()]
    batch = adapter.collate(TINY_CASES["llm"]().forget)
    h1, tokens = gnb_estimate(adapter, [batch], params, torch.Generator().manual_seed(3))
    h2, _ = gnb_estimate(adapter, [batch], params, torch.Generator().manual_seed(3))
    assert tokens == float(adapter.per_example_nll(batch)[1].sum())  # bs = the answer tokens
    assert all(torch.equal(a, b) for a, b in zip(h1, h2))  # seeded labels
    assert all(bool((h >= 0).all()) for h in h1) and sum(float(h.sum()) for h in h1) > 0
    assert estimator_for(adapter) == "gnb"
    assert estimator_for(TINY_CASES["diffusion"]().adapter) == "hutchinson"
    with pytest.raises(ValueError, match="Hutchinson"):
        estimator_for(TINY_CASES["diffusion"]().adapter, "gnb")


def test_sophia_settings_are_checked_and_default_to_soul():
    assert TrainConfig(optimizer="sophia").decay() == 0.1 and TrainConfig().decay() == 0.0
    for bad, match in (({"hessian": "fisher"}, "hessian estimator"), ({"betas": [0.9]}, "betas"),
                       ({"rho": 0.0}, "rho"), ({"hessian_every": 0}, "hessian_every"),
                       ({"optimizer": "lion"}, "unknown optimizer")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)


def _lm():
    return TINY_CASES["llm"]().adapter  # GPT-2 with dropout: each step seeds it, so a resumed run draws the same


def test_sophia_unlearns_and_resumes_exactly(tmp_path):
    case = TINY_CASES["llm"]()
    common = dict(method="graddiff", forget=case.forget, retain=case.retain, lr=1e-2, batch_size=2,
                  recommended=False, selector=[".*"])
    sophia = {"optimizer": "sophia", "hessian_every": 2}
    base = _lm()
    with torch.no_grad():
        before = base.per_example_nll(base.collate(case.forget))[0].sum()
    full = erase(base, steps=5, train=sophia, **common)
    with torch.no_grad():
        after = full.adapter.per_example_nll(full.adapter.collate(case.forget))[0].sum()
    assert float(after) > float(before)  # the forget loss rose
    ckpt = {**sophia, "checkpoint_dir": str(tmp_path / "c"), "checkpoint_every": 3}
    erase(_lm(), steps=3, train=ckpt, **common)
    resumed = erase(_lm(), steps=5, train={**ckpt, "resume": True}, **common)
    a, b = named_parameters(full.adapter.modules()), named_parameters(resumed.adapter.modules())
    assert all(torch.equal(a[n], b[n]) for n in a)
    adam = erase(_lm(), steps=5, **common)
    assert any(not torch.equal(a[n], w) for n, w in named_parameters(adam.adapter.modules()).items())


def test_sophia_with_hutchinson_on_the_diffusion_model():
    case = TINY_CASES["diffusion"]()
    before = {n: p.detach().clone() for n, p in named_parameters(case.adapter.modules()).items()}
    result = erase(case.adapter, method="esd-x", concept="Neon", steps=2, lr=1e-3, recommended=False,
                   train={"optimizer": "sophia", "hessian_every": 1})
    after = named_parameters(result.adapter.modules())
    changed = {n for n in after if not torch.equal(after[n], before[n])}
    assert changed and all(".attn2." in n for n in changed)  # only ESD-x's cross-attention moved
    assert all(torch.isfinite(p).all() for p in after.values())
