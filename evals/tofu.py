"""TOFU metrics (Maini et al. 2024, https://arxiv.org/abs/2401.06121): ROUGE-L, answer probability, truth
ratio, forget quality (KS-test p-value) and model utility (harmonic mean). Pure functions over precomputed
NLLs / strings; the model forward passes live elsewhere.

Registered (at import of this module): ``tofu_rouge``, ``tofu_prob``, ``tofu_truth_ratio``,
``tofu_forget_quality``, ``tofu_model_utility``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import torch
from scipy.stats import ks_2samp

from evals.metrics import register_metric

# TOFU's splits: forget01/05/10 hold the last 1/5/10% of the authors; retain99/95/90 the rest.
FORGET_SPLITS = ("forget01", "forget05", "forget10")
FORGET_PERCENT = {"forget01": 1, "forget05": 5, "forget10": 10}


def retain_split_for(forget: str) -> str:
    """Name of the retain split complementary to a forget split.

    Args:
        forget: one of ``FORGET_SPLITS``, e.g. ``"forget10"``.

    Returns:
        The retain split, e.g. ``"retain90"``.
    """
    if forget not in FORGET_PERCENT:
        raise ValueError(f"unknown forget split {forget!r}; expected one of {FORGET_SPLITS}")
    return f"retain{100 - FORGET_PERCENT[forget]:02d}"


def holdout_split_for(forget: str) -> str:
    """TOFU's holdout split (authors never trained on, MUSE's non-members) of a forget split's size:
    ``"forget10"`` -> ``"holdout10"``."""
    retain_split_for(forget)  # validates the name
    return "holdout" + forget.removeprefix("forget")


TRUTH_RATIO_MODES = ("forget", "retain")


@lru_cache(maxsize=2)
def _scorer(stem: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem)


def rouge_l(prediction: str, reference: str, stem: bool = True) -> dict:
    """ROUGE-L of one prediction against one reference, with the ``rouge-score`` package: with Porter stemming as
    TOFU's code computes it, without (``stem=False``) as MUSE's does.

    Args:
        prediction: the generated text.
        reference: the ground-truth text.
        stem: Porter-stem the words before matching them.

    Returns:
        ``{"recall": LCS/|reference|, "precision": LCS/|prediction|, "f1": harmonic mean of both}``;
        all zeros when either side has no tokens.
    """
    score = _scorer(stem).score(reference, prediction)["rougeL"]  # score(target, prediction)
    return {"recall": float(score.recall), "precision": float(score.precision), "f1": float(score.fmeasure)}


def _mean_result(values: Sequence[float]) -> dict:
    if len(values) == 0:
        raise ValueError("metric needs at least one example")
    return {"agg_value": float(sum(values) / len(values)), "value_by_index": [float(v) for v in values]}


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


@register_metric("tofu_rouge")
def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """TOFU ROUGE: per-example ROUGE-L recall of the (greedy) answers against the gold answers.

    Paper: https://arxiv.org/abs/2401.06121

    Args:
        predictions: N generated answers.
        references: N gold answers.

    Returns:
        ``{"agg_value": mean recall, "value_by_index": N recalls}``.
    """
    _check_pairs(predictions, references)
    return _mean_result([rouge_l(p, r)["recall"] for p, r in zip(predictions, references)])


def _length_normalised_logp(nll_sum: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """-nll_sum / length, elementwise, in float64; lengths must be positive and shapes equal."""
    nll_sum = torch.as_tensor(nll_sum, dtype=torch.float64)
    length = torch.as_tensor(length, dtype=torch.float64)
    if nll_sum.shape != length.shape:
        raise ValueError(f"nll shape {tuple(nll_sum.shape)} != length shape {tuple(length.shape)}")
    if bool((length <= 0).any()):
        raise ValueError("answer lengths must be positive")
    return -nll_sum / length


@register_metric("tofu_prob")
def probability(nll_sum: torch.Tensor, length: torch.Tensor) -> dict:
    """TOFU answer probability, length-normalised as in open-unlearning: exp(-nll_sum / length).

    Paper: https://arxiv.org/abs/2401.06121

    Args:
        nll_sum: (N,) summed token NLL of each gold answer given its question.
        length: (N,) number of answer tokens the NLL was summed over.

    Returns:
        ``{"agg_value": mean probability, "value_by_index": N probabilities}``.
    """
    if torch.as_tensor(nll_sum).dim() != 1:
        raise ValueError("nll_sum must be 1-D (N,)")
    probs = _length_normalised_logp(nll_sum, length).exp()  # (N,)
    return _mean_result(probs.tolist())


@register_metric("tofu_truth_ratio")
def truth_ratio(paraphrased_nll: torch.Tensor, paraphrased_len: torch.Tensor, perturbed_nll: torch.Tensor,
                perturbed_len: torch.Tensor, mode: str) -> dict:
    """TOFU truth ratio TR = P_perturbed / P_paraphrased (length-normalised probabilities, geometric mean
    over the perturbed answers).

    Paper: https://arxiv.org/abs/2401.06121

    Args:
        paraphrased_nll: (N,) summed NLL of the paraphrased correct answer.
        paraphrased_len: (N,) its token count.
        perturbed_nll: (N, P) summed NLL of the P perturbed (wrong) answers.
        perturbed_len: (N, P) their token counts.
        mode: ``"forget"`` -> value_i = min(TR, 1/TR) (closer to 1 is better);
            ``"retain"`` -> value_i = max(0, 1 - TR) (a low TR, i.e. preferring the truth, is better).

    Returns:
        ``{"agg_value": mean value, "value_by_index": N values, "ratios": N raw TR values}``.
    """
    if mode not in TRUTH_RATIO_MODES:
        raise ValueError(f"unknown truth-ratio mode {mode!r}; expected one of {TRUTH_RATIO_MODES}")
    para = _length_normalised_logp(paraphrased_nll, paraphrased_len)  # (N,)
    pert = _length_normalised_logp(perturbed_nll, perturbed_len)  # (N, P)
    if para.dim() != 1 or pert.dim() != 2 or pert.shape[0] != para.shape[0] or pert.shape[1] == 0:
        raise ValueError(f"expected paraphrased (N,) and perturbed (N, P>0); got {tuple(para.shape)} "
                         f"and {tuple(pert.shape)}")
    ratios = (pert.mean(dim=1) - para).exp()  # (N,) log of geometric mean minus log P_para
    if mode == "forget":
        values = torch.minimum(ratios, 1.0 / ratios)  # (N,)
    else:
        values = (1.0 - ratios).clamp_min(0.0)  # (N,)
    out = _mean_result(values.tolist())
    out["ratios"] = ratios.tolist()
    return out


@register_metric("tofu_forget_quality")
def forget_quality(unlearned_ratios: Sequence[float] | torch.Tensor,
                   retain_ratios: Sequence[float] | torch.Tensor) -> dict:
    """TOFU forget quality: p-value of a two-sample KS test between the forget-set truth ratios of the
    unlearned model and of the retain-only (never saw the forget set) model.

    Paper: https://arxiv.org/abs/2401.06121

    Args:
        unlearned_ratios: raw truth ratios (``truth_ratio(...)["ratios"]``) of the unlearned model.
        retain_ratios: raw truth ratios of the retain-only model on the same forget set.

    Returns:
        ``{"agg_value": p-value, "value_by_index": [], "ks_statistic": D}``.
    """
    a = torch.as_tensor(unlearned_ratios, dtype=torch.float64).flatten().numpy()
    b = torch.as_tensor(retain_ratios, dtype=torch.float64).flatten().numpy()
    if a.size == 0 or b.size == 0:
        raise ValueError("forget quality needs non-empty truth-ratio samples")
    test = ks_2samp(a, b)
    return {"agg_value": float(test.pvalue), "value_by_index": [], "ks_statistic": float(test.statistic)}


@register_metric("tofu_model_utility")
def model_utility(values: Mapping[str, float]) -> dict:
    """TOFU model utility: harmonic mean of the retain / real-authors / world-facts {prob, ROUGE, truth
    ratio} scores (0 if any of them is 0).

    Paper: https://arxiv.org/abs/2401.06121

    Args:
        values: name -> non-negative score.

    Returns:
        ``{"agg_value": harmonic mean, "value_by_index": scores in key order, "components": values}``.
    """
    if not values:
        raise ValueError("model utility needs at least one component")
    scores = [float(v) for v in values.values()]
    if any(not s >= 0 for s in scores):  # also rejects NaN
        raise ValueError(f"model utility components must be non-negative numbers; got {dict(values)}")
    hmean = 0.0 if any(s == 0 for s in scores) else len(scores) / sum(1.0 / s for s in scores)
    return {"agg_value": hmean, "value_by_index": scores, "components": dict(values)}
