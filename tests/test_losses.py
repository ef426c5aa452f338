"""Loss terms against hand-computed values (pure functions: golden numbers are fine here)."""

import math

import pytest
import torch

from erasure import losses


def test_gradient_ascent_and_nll_are_negatives_of_mean_token_nll():
    nll = torch.tensor([2.0, 6.0])
    length = torch.tensor([1.0, 3.0])
    # per-example mean NLL: 2, 2 -> mean 2
    assert losses.nll_loss(nll, length).item() == pytest.approx(2.0)
    assert losses.gradient_ascent(nll, length).item() == pytest.approx(-2.0)


def test_npo_matches_hand_computation():
    nll = torch.tensor([3.0, 1.0])
    ref = torch.tensor([2.0, 2.0])
    beta = 0.5
    # log ratio = -(nll - ref) = [-1, 1];  loss_i = -(2/beta) log sigmoid(-beta * ratio_i)
    expected = [-(2 / beta) * math.log(1 / (1 + math.exp(-(-beta * r)))) for r in (-1.0, 1.0)]
    assert losses.npo(nll, ref, beta).item() == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_npo_is_2log2_over_beta_at_the_reference():
    x = torch.tensor([1.3, 0.2, 5.0])
    assert losses.npo(x, x, beta=0.1).item() == pytest.approx((2 / 0.1) * math.log(2), rel=1e-6)


def test_simnpo_matches_hand_computation():
    nll = torch.tensor([4.0])
    length = torch.tensor([2.0])
    beta, gamma = 2.0, 0.5
    # -(2/beta) log sigmoid(-(beta/|y|) log pi - gamma), log pi = -4 -> arg = 2/2*4 - 0.5 = 3.5
    expected = -(2 / beta) * math.log(1 / (1 + math.exp(-3.5)))
    assert losses.simnpo(nll, length, beta, gamma).item() == pytest.approx(expected, rel=1e-6)


def test_simnpo_decreases_as_forget_nll_rises():
    length = torch.ones(1)
    assert losses.simnpo(torch.tensor([5.0]), length) < losses.simnpo(torch.tensor([1.0]), length)


@pytest.mark.parametrize("fn", [losses.npo, losses.simnpo])
def test_beta_must_be_positive(fn):
    with pytest.raises(ValueError, match="beta"):
        fn(torch.ones(1), torch.ones(1), beta=0.0)


def test_kl_divergence_hand_computed_and_masked():
    p = torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]).log()  # reference (1, 2, 2)
    q = torch.tensor([[[0.25, 0.75], [0.9, 0.1]]]).log()
    kl0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert losses.kl_divergence(p, q).item() == pytest.approx(kl0 / 2, rel=1e-6)
    # masking the second position leaves only the first
    assert losses.kl_divergence(p, q, torch.tensor([[1, 0]])).item() == pytest.approx(kl0, rel=1e-6)
    assert losses.kl_divergence(p, p).item() == pytest.approx(0.0, abs=1e-7)


def test_gaussian_kl_is_mean_squared_difference():
    a = torch.zeros(2, 3)
    b = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
    assert losses.gaussian_kl(a, b).tolist() == pytest.approx([1.0, 3.0])


def test_dpo_matches_hand_computation():
    # preferred: log ratio +1 (nll fell by 1); rejected: log ratio -2 (nll rose by 2) -> margin 3
    loss = losses.dpo(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0]), torch.tensor([2.0]), beta=0.5)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.5))), rel=1e-6)
    with pytest.raises(ValueError, match="beta"):
        losses.dpo(torch.ones(1), torch.ones(1), torch.ones(1), torch.ones(1), beta=-1)


def test_label_smoothed_nll_hand_computed():
    out = losses.label_smoothed_nll(torch.tensor([2.0]), torch.tensor([10.0]), smoothing=-0.5)
    assert out.item() == pytest.approx(1.5 * 2.0 - 0.5 * 10.0)


def test_rmu_terms_hand_computed():
    from llm.methods import RMUForget, _masked_mse

    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, 2, 2)
    b = torch.zeros_like(a)
    # masking the second token: mean of (1, 4) over 1 token x 2 dims
    assert _masked_mse(a, b, torch.tensor([[1, 0]])).item() == pytest.approx(2.5)
    assert _masked_mse(a, b, torch.tensor([[1, 1]])).item() == pytest.approx(30 / 4)
    u = RMUForget(layer=0, seed=3).control_vector(8, torch.device("cpu"))
    assert u.norm().item() == pytest.approx(1.0) and (u >= 0).all()
    assert torch.equal(u, RMUForget(layer=0, seed=3).control_vector(8, torch.device("cpu")))
