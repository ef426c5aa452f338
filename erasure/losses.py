"""Modality-agnostic loss math over per-example scores. Pure functions: no model, no modality.

Every function takes per-example quantities of shape (B,) that an adapter produced:
``nll`` is the negative log-likelihood of the example (LLM: summed over answer tokens; diffusion: the
denoising error, the usual likelihood surrogate) and ``length`` the number of units it was summed over
(answer tokens; 1 for diffusion). The loss is returned as a scalar mean over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gradient_ascent(nll: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """GA: maximise the forget NLL, i.e. minimise ``-mean(nll / length)``."""
    return -(nll / length).mean()


def nll_loss(nll: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Plain likelihood training (the retain term of GradDiff): ``mean(nll / length)``."""
    return (nll / length).mean()


def npo(nll: torch.Tensor, ref_nll: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Negative Preference Optimization (Zhang et al. 2024, https://arxiv.org/abs/2404.05868).

    ``-(2/beta) * log sigmoid(-beta * (log pi_theta - log pi_ref))`` with ``log pi = -nll`` (sequence level).

    Args:
        nll: (B,) summed NLL under the model being trained.
        ref_nll: (B,) summed NLL under the frozen reference.
        beta: inverse temperature.
    """
    if beta <= 0:
        raise ValueError(f"NPO beta must be > 0, got {beta}")
    log_ratio = (-nll) - (-ref_nll)  # (B,) log pi_theta - log pi_ref
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def simnpo(nll: torch.Tensor, length: torch.Tensor, beta: float = 4.5, gamma: float = 0.0) -> torch.Tensor:
    """SimNPO (Fan et al. 2024, https://arxiv.org/abs/2410.07163): reference-free, length-normalised NPO.

    ``-(2/beta) * log sigmoid(-(beta/|y|) * log pi_theta(y|x) - gamma)`` with ``log pi = -nll``.
    """
    if beta <= 0:
        raise ValueError(f"SimNPO beta must be > 0, got {beta}")
    return -(2.0 / beta) * F.logsigmoid(beta * nll / length - gamma).mean()


def dpo(nll_w: torch.Tensor, ref_nll_w: torch.Tensor, nll_l: torch.Tensor, ref_nll_l: torch.Tensor,
        beta: float = 0.1) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) with ``log pi = -nll`` (sequence level).

    ``-log sigmoid(beta * [(log pi_w - log pi_ref_w) - (log pi_l - log pi_ref_l)])``, w preferred, l rejected.
    """
    if beta <= 0:
        raise ValueError(f"DPO beta must be > 0, got {beta}")
    margin = (ref_nll_w - nll_w) - (ref_nll_l - nll_l)  # (B,) log-ratio of preferred minus rejected
    return -F.logsigmoid(beta * margin).mean()


def label_smoothed_nll(nll: torch.Tensor, uniform_nll: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Per-example label-smoothed NLL ``(1 - a) * nll + a * uniform_nll`` (a < 0 for UGradSL's ascent).

    Args:
        nll: (B,) summed NLL of the target tokens.
        uniform_nll: (B,) summed mean-over-vocabulary NLL (the cross-entropy to a uniform label).
        smoothing: the rate a.
    """
    return (1 - smoothing) * nll + smoothing * uniform_nll


def kl_divergence(ref_logp: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example KL(ref || theta) between categorical distributions, averaged over valid positions.

    Args:
        ref_logp: (B, T, V) reference log-probabilities.
        logp: (B, T, V) log-probabilities of the model being trained.
        mask: (B, T) 1 where the position counts (padding excluded); None counts all positions.

    Returns:
        (B,) mean KL per example.
    """
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)  # (B, T)
    if mask is None:
        return kl.mean(-1)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum(-1) / mask.sum(-1).clamp_min(1)


def gaussian_kl(ref_mean: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Per-example KL between isotropic Gaussians of equal variance, up to the 1/(2 sigma^2) factor.

    For diffusion models the "output distribution" at (x_t, t, c) is a Gaussian whose mean is set by the
    predicted noise, so KL(ref || theta) reduces to the mean squared difference of the predictions.

    Args:
        ref_mean: (B, ...) reference prediction.
        mean: (B, ...) prediction of the model being trained.

    Returns:
        (B,) mean squared difference per example.
    """
    return (mean - ref_mean).pow(2).flatten(1).mean(-1)
