"""TOFU + MUSE evaluation of a causal LM on (mini-)TOFU: the numbers behind ``erasure eval --benchmark``.

Forget quality needs the retain-only model of the same split (it never saw the forget authors): the KS test
compares the truth-ratio distributions of the evaluated model and of that retain model on the forget set.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import torch

from evals import muse, tofu

logger = logging.getLogger(__name__)


def _nll(adapter: Any, rows: Sequence[dict], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer NLL (N,) and answer lengths (N,) for QA rows, in eval mode without gradients."""
    nlls, lens = [], []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            nll, length = adapter.per_example_nll(adapter.collate(rows[i : i + batch_size]))
            nlls.append(nll.float().cpu())
            lens.append(length.float().cpu())
    return torch.cat(nlls), torch.cat(lens)


def _with_answer(rows: Sequence[dict], key: str, index: int | None = None) -> list[dict]:
    return [{"question": r["question"], "answer": r[key] if index is None else r[key][index]} for r in rows]


def qa_scores(adapter: Any, rows: Sequence[dict], mode: str, normalised_prob: bool = False) -> dict:
    """Probability, ROUGE-L recall of greedy answers and truth ratio of one TOFU evaluation set.

    The truth ratio's correct answer is the paraphrased one on forget / retain and the answer itself on real
    authors / world facts (``normalised_prob``), as TOFU's evaluation config and open-unlearning have it.
    """
    nll, length = _nll(adapter, rows)
    if normalised_prob:  # real authors / world facts: P(answer) relative to the perturbed options (TOFU)
        p_true = torch.exp(-nll / length)
        n_pert = len(rows[0]["perturbed_answer"])
        p_pert = torch.stack([torch.exp(-torch.div(*_nll(adapter, _with_answer(rows, "perturbed_answer", j))))
                              for j in range(n_pert)], dim=1)  # (N, P)
        prob = {"agg_value": float((p_true / (p_true + p_pert.sum(1))).mean())}
    else:
        prob = tofu.probability(nll, length)
    answers = adapter.generate(rows)
    rouge = tofu.rouge_l_recall(answers, [r["answer"] for r in rows])
    correct, correct_len = ((nll, length) if normalised_prob
                            else _nll(adapter, _with_answer(rows, "paraphrased_answer")))
    n_pert = min(len(r["perturbed_answer"]) for r in rows)
    pert = [_nll(adapter, _with_answer(rows, "perturbed_answer", j)) for j in range(n_pert)]
    tr = tofu.truth_ratio(correct, correct_len, torch.stack([p[0] for p in pert], 1),
                          torch.stack([p[1] for p in pert], 1), mode=mode)
    return {"prob": prob["agg_value"], "rouge": rouge["agg_value"], "truth_ratio": tr["agg_value"],
            "ratios": tr["ratios"], "answers": answers, "nll": nll, "length": length}


def min_k_scores(adapter: Any, rows: Sequence[dict], k: float = 0.4, plus_plus: bool = False) -> list[float]:
    """Min-K% (or Min-K%++) membership scores of the answer tokens of each row."""
    scores = []
    with torch.no_grad():
        for r in rows:
            batch = adapter.collate([r])
            logp, mask = adapter._logprobs(batch)  # (1, T-1, V), (1, T-1)
            tok_lp = logp.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)[0]  # (T-1,)
            m = mask[0].bool()
            if plus_plus:
                mu, sigma = muse.vocab_moments(logp[0])
                scores.append(muse.min_k_plus_plus_score(tok_lp, mu, sigma, k=k, mask=m))
            else:
                scores.append(muse.min_k_score(tok_lp, k=k, mask=m))
    return scores


def evaluate_tofu(adapter: Any, data: dict[str, Any], forget_split: str,
                  retain_adapter: Any | None = None, retain_eval_size: int | None = 40,
                  retain_reference: dict | None = None) -> dict:
    """All TOFU and MUSE numbers for ``adapter`` on ``forget_split``.

    Args:
        adapter: the evaluated model.
        data: mini-TOFU / TOFU splits (``forget_split``, its retain split, its holdout split (TOFU's
            ``holdout01/05/10``, or mini-TOFU's ``holdout``), real_authors, world_facts).
        forget_split: "forget01" | "forget05" | "forget10".
        retain_adapter: the retain-only model (forget quality and PrivLeak's AUC_retrain); or
        retain_reference: its cached numbers ({"forget_ratios", "auc"}) from an earlier call.
        retain_eval_size: how many retain QA to evaluate (None: all; TOFU's retain_perturbed holds 400).

    Returns:
        The flat eval record (floats) plus "retain_reference" for reuse.
    """
    t0 = time.time()
    adapter.model.eval()
    forget = data[forget_split].to_list()
    retain = data[tofu.retain_split_for(forget_split)].to_list()[:retain_eval_size]
    # TOFU ships holdout01/05/10 beside forget01/05/10; mini-TOFU one "holdout" split, of forget10's size
    holdout_split = tofu.holdout_split_for(forget_split)
    holdout = data[holdout_split if holdout_split in data else "holdout"].to_list()[: len(forget)]
    f = qa_scores(adapter, forget, mode="forget")
    r = qa_scores(adapter, retain, mode="retain")
    ra = qa_scores(adapter, data["real_authors"].to_list(), mode="retain", normalised_prob=True)
    wf = qa_scores(adapter, data["world_facts"].to_list(), mode="retain", normalised_prob=True)
    utility = tofu.model_utility({f"{name}_{k}": s[k] for name, s in (("retain", r), ("real_authors", ra),
                                                                      ("world_facts", wf))
                                  for k in ("prob", "rouge", "truth_ratio")})
    def aucs(a: Any) -> dict[str, float]:
        """Membership-inference AUC of forget (members) vs holdout (non-members), Min-K% and Min-K%++."""
        return {"minK": muse.auc(min_k_scores(a, forget), min_k_scores(a, holdout)),
                "minKpp": muse.auc(min_k_scores(a, forget, plus_plus=True), min_k_scores(a, holdout, plus_plus=True))}

    auc = aucs(adapter)
    if retain_reference is None and retain_adapter is not None:
        retain_adapter.model.eval()
        retain_reference = {"forget_ratios": qa_scores(retain_adapter, forget, mode="forget")["ratios"],
                            "auc": aucs(retain_adapter)}
    record = {
        "forget_split": forget_split,
        "forget_rouge": f["rouge"], "forget_prob": f["prob"], "forget_truth_ratio": f["truth_ratio"],
        "retain_rouge": r["rouge"], "retain_prob": r["prob"], "retain_truth_ratio": r["truth_ratio"],
        "real_authors_rouge": ra["rouge"], "world_facts_rouge": wf["rouge"],
        "model_utility": utility["agg_value"], "model_utility_components": utility["components"],
        "knowmem_forget": muse.knowmem(f["answers"], [x["answer"] for x in forget])["agg_value"],
        "knowmem_retain": muse.knowmem(r["answers"], [x["answer"] for x in retain])["agg_value"],
        "verbmem": verbmem(adapter, forget),
        "minK_auc": auc["minK"], "minKpp_auc": auc["minKpp"],
        "n_forget": len(forget), "n_retain": len(retain),
    }
    if retain_reference is not None:
        record["forget_quality"] = tofu.forget_quality(f["ratios"], retain_reference["forget_ratios"])["agg_value"]
        record["privleak"] = muse.privleak(auc["minK"], retain_reference["auc"]["minK"])["agg_value"]
        record["privleak_minkpp"] = muse.privleak(auc["minKpp"], retain_reference["auc"]["minKpp"])["agg_value"]
    else:
        record["forget_quality"] = record["privleak"] = record["privleak_minkpp"] = None
    record["seconds"] = round(time.time() - t0, 2)
    record["retain_reference"] = retain_reference
    return record


def verbmem(adapter: Any, rows: Sequence[dict]) -> float:
    """MUSE VerbMem on QA text: give the first half of each answer, ROUGE-L F1 of the greedy continuation."""
    prefixed = []
    for r in rows:
        words = r["answer"].split()
        cut = max(1, len(words) // 2)
        prefixed.append({"question": r["question"], "answer_start": " " + " ".join(words[:cut]),
                         "rest": " ".join(words[cut:])})
    cont = adapter.generate(prefixed)
    return muse.verbmem(cont, [p["rest"] for p in prefixed])["agg_value"]
