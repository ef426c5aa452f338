"""MUSE metrics (Shi et al. 2024, https://arxiv.org/abs/2407.06460): VerbMem, KnowMem and PrivLeak, with the
Min-K% / Min-K%++ membership-inference scores and a numpy ROC AUC. Pure functions over precomputed token
log-probs / strings.

Registered (at import of this module): ``muse_verbmem``, ``muse_knowmem``, ``muse_privleak``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from evals.metrics import register_metric
from evals.tofu import rouge_l

_SIGMA_EPS = 1e-8


def _lowest_k_mean(scores: torch.Tensor, k: float, mask: torch.Tensor | None) -> float:
    """Mean of the lowest int(k * T) entries (at least one) of the valid (mask != 0) part of a 1-D tensor, as
    MUSE's and open-unlearning's Min-K% code count them."""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1]; got {k}")
    if scores.dim() != 1:
        raise ValueError(f"expected a 1-D (T,) tensor; got shape {tuple(scores.shape)}")
    if mask is not None:
        mask = torch.as_tensor(mask)
        if mask.shape != scores.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != scores shape {tuple(scores.shape)}")
        scores = scores[mask.bool()]  # (T_valid,)
    n_valid = scores.numel()
    if n_valid == 0:
        raise ValueError("no valid tokens to score")
    n = max(1, int(k * n_valid))
    return float(torch.topk(scores, n, largest=False).values.mean())


def min_k_score(token_logprobs: torch.Tensor, k: float = 0.4, mask: torch.Tensor | None = None) -> float:
    """Min-K% membership score: mean of the lowest int(k * T) token log-probs, at least one (higher = more likely
    a member).

    MUSE (https://arxiv.org/abs/2407.06460) uses it with k = 0.4 for PrivLeak.

    Args:
        token_logprobs: (T,) log p(x_t | x_<t) of the sequence's tokens.
        k: fraction of the lowest-probability tokens to average, in (0, 1].
        mask: optional (T,) of valid tokens (non-zero = valid); T counts valid tokens only.

    Returns:
        The score (a float).
    """
    return _lowest_k_mean(torch.as_tensor(token_logprobs, dtype=torch.float64), k, mask)


def vocab_moments(logp_full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of log p over the vocabulary under the model's own next-token distribution.

    mu_t = sum_v p_v log p_v, sigma_t = sqrt(sum_v p_v (log p_v)^2 - mu_t^2). The input is re-normalised with
    ``log_softmax`` (a no-op on log-probs, so logits work too); zero-probability entries contribute 0.

    Args:
        logp_full: (T, V) next-token log-probabilities (or logits) at each position.

    Returns:
        ``(mu, sigma)``, each (T,), in float32 (float64 if the input is float64).
    """
    if logp_full.dim() != 2:
        raise ValueError(f"expected a (T, V) tensor; got shape {tuple(logp_full.shape)}")
    dtype = torch.float64 if logp_full.dtype == torch.float64 else torch.float32
    logp = torch.log_softmax(logp_full.to(dtype), dim=-1)  # (T, V)
    p = logp.exp()  # (T, V)
    logp = torch.where(p > 0, logp, torch.zeros_like(logp))  # (T, V) avoid 0 * -inf
    mu = (p * logp).sum(dim=-1)  # (T,)
    var = (p * logp.square()).sum(dim=-1) - mu.square()  # (T,)
    return mu, var.clamp_min(0.0).sqrt()


def min_k_plus_plus_score(token_logprobs: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, k: float = 0.4,
                          mask: torch.Tensor | None = None) -> float:
    """Min-K%++ membership score (Zhang et al. 2024, https://arxiv.org/abs/2404.02936).

    z_t = (log p(x_t) - mu_t) / sigma_t with ``(mu, sigma) = vocab_moments(...)``; the score is the mean of
    the lowest int(k * T) z_t, at least one (higher = more likely a member). sigma is floored at 1e-8.

    Args:
        token_logprobs: (T,) log-prob of each actual token.
        mu: (T,) vocabulary mean of log p at each position.
        sigma: (T,) vocabulary std of log p at each position.
        k: fraction of the lowest z-scores to average, in (0, 1].
        mask: optional (T,) of valid tokens (non-zero = valid).

    Returns:
        The score (a float).
    """
    logp = torch.as_tensor(token_logprobs, dtype=torch.float64)  # (T,)
    mu = torch.as_tensor(mu, dtype=torch.float64)  # (T,)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)  # (T,)
    if not logp.shape == mu.shape == sigma.shape:
        raise ValueError(f"shape mismatch: logprobs {tuple(logp.shape)}, mu {tuple(mu.shape)}, "
                         f"sigma {tuple(sigma.shape)}")
    z = (logp - mu) / sigma.clamp_min(_SIGMA_EPS)  # (T,)
    return _lowest_k_mean(z, k, mask)


def auc(member_scores: Sequence[float] | np.ndarray | torch.Tensor,
        nonmember_scores: Sequence[float] | np.ndarray | torch.Tensor) -> float:
    """ROC AUC of separating members from non-members, higher score = member.

    torchmetrics' ``binary_auroc`` (the area under the ROC curve, as MUSE's sklearn ``roc_auc_score``): the fraction
    of (member, non-member) pairs ranked correctly, ties counting 1/2.

    Args:
        member_scores: (M,) scores of member (e.g. forget-set) examples.
        nonmember_scores: (N,) scores of non-member (holdout) examples.

    Returns:
        The AUC in [0, 1].
    """
    members = np.asarray(torch.as_tensor(member_scores, dtype=torch.float64).flatten())
    nonmembers = np.asarray(torch.as_tensor(nonmember_scores, dtype=torch.float64).flatten())
    if members.size == 0 or nonmembers.size == 0:
        raise ValueError("AUC needs at least one member and one non-member score")
    if np.isnan(members).any() or np.isnan(nonmembers).any():
        raise ValueError("AUC scores contain NaN")
    from scipy.stats import rankdata
    from torchmetrics.functional.classification import binary_auroc

    # ranks scaled into (0, 1]: binary_auroc reads scores outside [0, 1] as logits (a sigmoid would saturate large
    # ones into ties); ranks keep the order and the ties, so the AUC is the same
    both = np.concatenate([members, nonmembers])
    scores = torch.from_numpy(rankdata(both) / both.size)  # (M + N,)
    labels = torch.cat([torch.ones(members.size, dtype=torch.long), torch.zeros(nonmembers.size, dtype=torch.long)])
    return float(binary_auroc(scores, labels))


@register_metric("muse_privleak")
def privleak(auc_unlearned: float, auc_retrain: float) -> dict:
    """MUSE PrivLeak, in MUSE's orientation: the never-unlearned model scores near -100, the retrained model 0,
    and a positive value means over-unlearned (the forget set now looks *less* familiar than unseen text).

    MUSE's membership attack ranks by the Min-K% *loss*, so its AUC is ``1 - AUC`` of our member-higher scores
    (``auc``), as open-unlearning computes it; PrivLeak = (AUC'_unlearned - AUC'_retrain) / AUC'_retrain * 100.
    Paper: https://arxiv.org/abs/2407.06460

    Args:
        auc_unlearned: ``auc(forget scores, holdout scores)`` of the unlearned model (members scored higher).
        auc_retrain: the same AUC for the model retrained without the forget set.

    Returns:
        ``{"agg_value": PrivLeak in percent, "value_by_index": [], "auc": 1 - auc_unlearned,
        "auc_retrain": 1 - auc_retrain}`` (the AUCs in MUSE's orientation).
    """
    flipped, flipped_retrain = 1.0 - float(auc_unlearned), 1.0 - float(auc_retrain)
    if not flipped_retrain > 0:
        raise ValueError(f"the retrained model's AUC must be below 1; got {auc_retrain}")
    value = (flipped - flipped_retrain) / flipped_retrain * 100.0
    return {"agg_value": value, "value_by_index": [], "auc": flipped, "auc_retrain": flipped_retrain}


def _rouge_mean(predictions: Sequence[str], references: Sequence[str], key: str) -> dict:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("metric needs at least one example")
    values = [rouge_l(p, r, stem=False)[key] for p, r in zip(predictions, references)]  # MUSE's scorer: no stemming
    return {"agg_value": float(np.mean(values)), "value_by_index": values}


@register_metric("muse_verbmem")
def verbmem(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """MUSE VerbMem: mean ROUGE-L F1 between the model's continuations of forget-set prefixes and the true
    continuations.

    Paper: https://arxiv.org/abs/2407.06460

    Args:
        predictions: N generated continuations.
        references: N true continuations.

    Returns:
        ``{"agg_value": mean F1, "value_by_index": N F1 scores}``.
    """
    return _rouge_mean(predictions, references, "f1")


@register_metric("muse_knowmem")
def knowmem(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """MUSE KnowMem: mean ROUGE-L F1 of the model's answers against the gold QA answers (MUSE's ``mean_rougeL``).

    Paper: https://arxiv.org/abs/2407.06460

    Args:
        predictions: N generated answers.
        references: N gold answers.

    Returns:
        ``{"agg_value": mean F1, "value_by_index": N F1 scores}``.
    """
    return _rouge_mean(predictions, references, "f1")
