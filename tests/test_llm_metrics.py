"""TOFU and MUSE metrics (evals.tofu, evals.muse) against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evals import muse, tofu
from evals.metrics import get_metric

# ---------------------------------------------------------------- TOFU


def test_rouge_l_hand_case():
    # tokens: [the, cat, sat] vs [the, cat, on, the, mat]; LCS = "the cat" = 2
    r = tofu.rouge_l("The cat sat", "the cat on the mat")
    assert r["recall"] == pytest.approx(2 / 5)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))


def test_rouge_l_subsequence_not_substring_and_punctuation():
    # LCS is a subsequence: "a c e" inside "a b c d e" -> 3; punctuation/case are normalised away
    r = tofu.rouge_l("A, c... E!", "a b c d e")
    assert r["recall"] == pytest.approx(3 / 5)
    assert r["precision"] == pytest.approx(1.0)
    # order matters: reversed prediction shares only a length-1 subsequence
    assert tofu.rouge_l("e d c b a", "a b c d e")["recall"] == pytest.approx(1 / 5)


def test_rouge_l_stems_words_as_tofu_does():
    # rouge-score with use_stemmer=True: "cats running" and "cat runs" both stem to "cat run"
    assert tofu.rouge_l("cats running", "cat runs") == {"recall": 1.0, "precision": 1.0, "f1": 1.0}
    assert tofu.rouge_l("It was published in London.", "published in london")["recall"] == pytest.approx(1.0)


def test_rouge_l_empty_inputs_are_zero():
    for pred, ref in [("", "a b"), ("a b", ""), ("", ""), ("!!!", "a")]:
        assert tofu.rouge_l(pred, ref) == {"recall": 0.0, "precision": 0.0, "f1": 0.0}


def test_tofu_rouge_registered_per_example_recall():
    out = get_metric("tofu_rouge")(["the cat sat", "x"], ["the cat on the mat", "x y"])
    assert out["value_by_index"] == pytest.approx([2 / 5, 1 / 2])
    assert out["agg_value"] == pytest.approx((2 / 5 + 1 / 2) / 2)
    with pytest.raises(ValueError):
        tofu.rouge_l_recall(["a"], ["a", "b"])


def test_probability_is_length_normalised():
    out = get_metric("tofu_prob")(torch.tensor([2.0, 3.0]), torch.tensor([4, 1]))
    assert out["value_by_index"] == pytest.approx([math.exp(-0.5), math.exp(-3.0)])
    assert out["agg_value"] == pytest.approx((math.exp(-0.5) + math.exp(-3.0)) / 2)
    with pytest.raises(ValueError):
        tofu.probability(torch.tensor([1.0]), torch.tensor([0]))


def _tr_case():
    # ex 0: log P_para = -2/2 = -1; perturbed -3/3 = -1, -6/3 = -2 -> mean -1.5 -> TR = e^-0.5
    # ex 1: log P_para = -6/3 = -2; perturbed -2/2 = -1, -4/4 = -1 -> mean -1 -> TR = e^1
    return (torch.tensor([2.0, 6.0]), torch.tensor([2, 3]),
            torch.tensor([[3.0, 6.0], [2.0, 4.0]]), torch.tensor([[3, 3], [2, 4]]))


def test_truth_ratio_forget_mode_hand_case():
    out = get_metric("tofu_truth_ratio")(*_tr_case(), mode="forget")
    assert out["ratios"] == pytest.approx([math.exp(-0.5), math.e])
    assert out["value_by_index"] == pytest.approx([math.exp(-0.5), math.exp(-1.0)])
    assert out["agg_value"] == pytest.approx((math.exp(-0.5) + math.exp(-1.0)) / 2)


def test_truth_ratio_retain_mode_hand_case():
    out = tofu.truth_ratio(*_tr_case(), mode="retain")
    assert out["ratios"] == pytest.approx([math.exp(-0.5), math.e])
    assert out["value_by_index"] == pytest.approx([1 - math.exp(-0.5), 0.0])
    assert out["agg_value"] == pytest.approx((1 - math.exp(-0.5)) / 2)


def test_truth_ratio_rejects_unknown_mode_and_bad_shapes():
    with pytest.raises(ValueError, match="mode"):
        tofu.truth_ratio(*_tr_case(), mode="closer_to_1")
    para_nll, para_len, pert_nll, pert_len = _tr_case()
    with pytest.raises(ValueError):
        tofu.truth_ratio(para_nll, para_len, pert_nll[:1], pert_len[:1], mode="forget")


def test_forget_quality_ks_pvalue():
    rng = np.random.default_rng(0)
    same = rng.lognormal(size=200)
    out = get_metric("tofu_forget_quality")(same, same.copy())
    assert out["agg_value"] == pytest.approx(1.0)
    assert out["ks_statistic"] == pytest.approx(0.0)
    assert out["value_by_index"] == []
    different = tofu.forget_quality(rng.normal(0.0, 1.0, 200), rng.normal(3.0, 1.0, 200))
    assert different["agg_value"] < 0.01
    assert different["ks_statistic"] > 0.5
    with pytest.raises(ValueError):
        tofu.forget_quality([], [0.5])


def test_model_utility_harmonic_mean():
    out = get_metric("tofu_model_utility")({"prob": 1.0, "rouge": 0.5})
    assert out["agg_value"] == pytest.approx(2 / 3)
    assert out["value_by_index"] == [1.0, 0.5]
    assert out["components"] == {"prob": 1.0, "rouge": 0.5}
    assert tofu.model_utility({"prob": 1.0, "rouge": 0.5, "tr": 0.0})["agg_value"] == 0.0
    with pytest.raises(ValueError):
        tofu.model_utility({"prob": -0.1})
    with pytest.raises(ValueError):
        tofu.model_utility({})


# ---------------------------------------------------------------- MUSE


def test_min_k_hand_case_and_mask():
    lp = torch.tensor([-1.0, -5.0, -3.0, -2.0, -4.0])
    assert muse.min_k_score(lp, k=0.4) == pytest.approx(-4.5)  # ceil(2) lowest: -5, -4
    assert muse.min_k_score(lp, k=1.0) == pytest.approx(-3.0)
    # masking out -5 and -4: valid [-1, -3, -2], int(0.4 * 3) = 1 lowest: -3 (MUSE / open-unlearning count)
    mask = torch.tensor([1, 0, 1, 1, 0])
    assert muse.min_k_score(lp, k=0.4, mask=mask) == pytest.approx(-3.0)
    # int, not ceil: 0.5 * 5 = 2.5 keeps 2 tokens (0, 1); 0.3 * 10 keeps 3; at least one token is always kept
    assert muse.min_k_score(torch.arange(5.0), k=0.5) == pytest.approx(0.5)
    assert muse.min_k_score(torch.arange(10.0), k=0.3) == pytest.approx(1.0)
    assert muse.min_k_score(torch.tensor([-2.0, -1.0]), k=0.1) == pytest.approx(-2.0)
    with pytest.raises(ValueError):
        muse.min_k_score(lp, k=0.0)
    with pytest.raises(ValueError):
        muse.min_k_score(lp, mask=torch.zeros(5))


def test_vocab_moments_hand_case():
    ln2 = math.log(2)
    # position 0: p = [1/2, 1/4, 1/4] -> mu = -1.5 ln2, E[log^2] = 2.5 ln2^2, sigma = 0.5 ln2
    # position 1: p = [0.8, 0.1, 0.1]
    p1 = [0.8, 0.1, 0.1]
    mu1 = sum(p * math.log(p) for p in p1)
    sigma1 = math.sqrt(sum(p * math.log(p) ** 2 for p in p1) - mu1 ** 2)
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.25], p1], dtype=torch.float64))
    mu, sigma = muse.vocab_moments(logp)
    assert mu.tolist() == pytest.approx([-1.5 * ln2, mu1])
    assert sigma.tolist() == pytest.approx([0.5 * ln2, sigma1])
    # logits (shifted) give the same moments; zero-probability entries don't produce NaN
    mu_l, sigma_l = muse.vocab_moments(logp + 7.0)
    assert mu_l.tolist() == pytest.approx(mu.tolist()) and sigma_l.tolist() == pytest.approx(sigma.tolist())
    mu_z, sigma_z = muse.vocab_moments(torch.log(torch.tensor([[0.5, 0.5, 0.0]])))
    assert mu_z.tolist() == pytest.approx([-ln2]) and sigma_z.tolist() == pytest.approx([0.0], abs=1e-3)


def test_min_k_plus_plus_hand_case():
    ln2 = math.log(2)
    p1 = [0.8, 0.1, 0.1]
    logp_full = torch.log(torch.tensor([[0.5, 0.25, 0.25], p1], dtype=torch.float64))
    mu, sigma = muse.vocab_moments(logp_full)
    tokens = [1, 0]  # position 0 picks p = 1/4, position 1 picks p = 0.8
    token_lp = logp_full[torch.arange(2), tokens]
    z0 = (-2 * ln2 + 1.5 * ln2) / (0.5 * ln2)  # = -1
    mu1 = sum(p * math.log(p) for p in p1)
    sigma1 = math.sqrt(sum(p * math.log(p) ** 2 for p in p1) - mu1 ** 2)
    z1 = (math.log(0.8) - mu1) / sigma1
    assert z0 == pytest.approx(-1.0) and z1 > 0
    assert muse.min_k_plus_plus_score(token_lp, mu, sigma, k=0.5) == pytest.approx(z0)
    assert muse.min_k_plus_plus_score(token_lp, mu, sigma, k=1.0) == pytest.approx((z0 + z1) / 2)
    assert muse.min_k_plus_plus_score(token_lp, mu, sigma, k=0.5, mask=torch.tensor([0, 1])) == pytest.approx(z1)


def test_auc_cases():
    assert muse.auc([3.0, 4.0, 5.0], [0.0, 1.0, 2.0]) == pytest.approx(1.0)
    assert muse.auc([0.0, 1.0], [3.0, 4.0]) == pytest.approx(0.0)
    assert muse.auc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(0.5)
    # pairs: 2 vs {1: win, 2: tie, 3: loss} = 1.5; 3 vs {1, 2 win, 3 tie} = 2.5 -> 4 / 6
    assert muse.auc([2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(4 / 6)
    # scores far outside [0, 1] (summed log-likelihoods) keep their order: no saturation into ties
    assert muse.auc([40.0, 50.0, 60.0], [38.0, 39.0, 41.0]) == pytest.approx(8 / 9)
    assert muse.auc([100.0, 200.0], [50.0, 60.0]) == pytest.approx(1.0)
    assert muse.auc([-100.0, -200.0], [-50.0, -60.0]) == pytest.approx(0.0)
    # agrees with brute-force pair counting on random data with ties
    rng = np.random.default_rng(1)
    m, n = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 40).astype(float)
    brute = ((m[:, None] > n[None]).sum() + 0.5 * (m[:, None] == n[None]).sum()) / (30 * 40)
    assert muse.auc(m, n) == pytest.approx(brute)
    with pytest.raises(ValueError):
        muse.auc([], [1.0])


def test_privleak_in_muses_orientation():
    # a never-unlearned model separates forget from holdout (member-higher AUC 0.99): MUSE's AUC is 1 - 0.99;
    # against a retrained model at chance: (0.01 - 0.5) / 0.5 * 100 = -98 (MUSE's target model: about -100)
    out = get_metric("muse_privleak")(0.99, 0.5)
    assert out["agg_value"] == pytest.approx(-98.0)
    assert out["auc"] == pytest.approx(0.01) and out["auc_retrain"] == pytest.approx(0.5)
    assert muse.privleak(0.5, 0.5)["agg_value"] == pytest.approx(0.0)  # as the retrained model: 0
    assert muse.privleak(0.4, 0.5)["agg_value"] == pytest.approx(20.0)  # forget set less familiar: over-unlearned
    with pytest.raises(ValueError):
        muse.privleak(0.5, 1.0)


def test_verbmem_and_knowmem_are_unstemmed_rouge_l_f1_as_muse_computes_them():
    preds, refs = ["the cat sat", "a b"], ["the cat on the mat", "a b"]
    f1_0 = 2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5)
    for name in ("muse_verbmem", "muse_knowmem"):  # MUSE's mean_rougeL: the F1 measure for both
        got = get_metric(name)(preds, refs)
        assert got["value_by_index"] == pytest.approx([f1_0, 1.0])
        assert got["agg_value"] == pytest.approx((f1_0 + 1.0) / 2)
        # MUSE's scorer does not stem (TOFU's does): "cats running" shares no word with "cat runs"
        assert get_metric(name)(["cats running"], ["cat runs"])["agg_value"] == 0.0
    assert tofu.rouge_l("cats running", "cat runs", stem=False)["f1"] == 0.0
    with pytest.raises(ValueError):
        muse.verbmem(["a"], [])


class _CharNLL:
    """A stand-in adapter: an answer's summed NLL is its character count, its length its word count, and it
    answers every question with the gold answer (so the hand computation below is exact)."""

    def collate(self, rows):
        return list(rows)

    def per_example_nll(self, batch, generator=None):
        return (torch.tensor([float(len(r["answer"])) for r in batch]),
                torch.tensor([float(len(r["answer"].split())) for r in batch]))

    def generate(self, rows, prefix=None, seeds=None):
        return [r["answer"] for r in rows]


def test_truth_ratio_uses_the_answer_on_real_authors_and_the_paraphrase_on_forget():
    from evals.tofu_run import qa_scores

    row = {"question": "q", "answer": "ab cd", "paraphrased_answer": "abcdef gh", "perturbed_answer": ["x y z"]}
    # log P = -chars / words: answer -5/2, paraphrase -9/2, perturbed -5/3
    normalised = qa_scores(_CharNLL(), [row], mode="retain", normalised_prob=True)  # real authors / world facts
    assert normalised["ratios"] == pytest.approx([math.exp(-5 / 3 + 5 / 2)])
    forget = qa_scores(_CharNLL(), [row], mode="forget")
    assert forget["ratios"] == pytest.approx([math.exp(-5 / 3 + 9 / 2)])
