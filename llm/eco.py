"""ECO: unlearning through embedding-corrupted prompts (Liu et al. 2024, https://arxiv.org/abs/2406.07933).

No weight changes. A prompt classifier flags forget-scope prompts; a flagged prompt's input embeddings are
corrupted before the model reads them, with a strength chosen by zeroth-order search so the model's answers to the
forget set fall to the level of a model that never learned them.

* Classifier: logistic regression on the frozen model's own mean-pooled last hidden states of the prompt
  (standardised features, class-balanced), trained on the forget rows (questions and answer texts) against the
  retain rows; flagged when its probability exceeds ``threshold``.
* Corruption (the official code's functions, on every prompt token of a flagged prompt): ``noise`` adds N(0,
  (s * rms)^2) to the first ``dims`` embedding dimensions (``rand_noise_first_n``; rms is the embedding table's
  root mean square, so s is unit-free), ``zero`` zeroes the round(s * D) largest-magnitude dimensions
  (``zero_out_top_k``), ``flip`` flips their signs (``flip_sign_top_k``). Noise is drawn from a fixed seed, so a
  prompt is always corrupted the same way (scores stay deterministic).
* Strength: f(s) = |log p(s) - log p*| with p(s) the forget answers' mean per-token probability under corruption
  strength s and p* the unlearning target: by default the probability the uncorrupted model gives the forget
  questions *other* rows' answers (a model that does not know a fact rates the true answer like a wrong one);
  g = [f(s + e) - f(s - e)] / (2e), s <- max(s - lr * g, s_min), for ``iterations`` steps.

The LLM adapter carries the result as its ``guard`` component; ``result.save(folder)`` writes ``eco.json`` and
``eco.safetensors`` (the probe) and names the base model, which ``LLM.load(folder)`` loads with the guard on it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from erasure.registry import Method
from erasure.selectors import Selector

logger = logging.getLogger(__name__)

KINDS = ("noise", "zero", "flip")
GUARD_CONFIG = "eco.json"
GUARD_WEIGHTS = "eco.safetensors"


# ---------------------------------------------------------------------------------------------- corruption
def corrupt(emb: torch.Tensor, where: torch.Tensor, kind: str, strength: float, dims: int | None = None,
            rms: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A copy of ``emb`` (B, T, D) with the positions ``where`` (B, T) corrupted.

    Args:
        kind: "noise" (Gaussian, std ``strength * rms``, on the first ``dims`` dimensions; all when None),
            "zero" / "flip" (the round(strength * D) largest-magnitude dimensions of each position zeroed /
            sign-flipped).
        strength: s (>= 0).
        seed: seeds the noise.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ECO corruption {kind!r}; known: {', '.join(KINDS)}")
    out = emb.clone()
    if not bool(where.any()) or strength <= 0:
        return out
    rows = out[where]  # (N, D)
    d = rows.shape[-1]
    if kind == "noise":
        n = d if dims is None else min(dims, d)
        g = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(rows.shape[0], n, generator=g).to(rows) * strength * rms
        rows[:, :n] = rows[:, :n] + noise
    else:
        k = min(d, max(0, round(strength * d)))
        if k:
            top = rows.abs().topk(k, dim=-1).indices  # (N, k)
            picked = rows.gather(-1, top)
            rows.scatter_(-1, top, torch.zeros_like(picked) if kind == "zero" else -picked)
    out[where] = rows
    return out


# ---------------------------------------------------------------------------------------------- the guard
class ECOGuard(nn.Module):
    """A prompt classifier (a linear probe on pooled hidden states) and the corruption it triggers.

    Args:
        width: the model's hidden size D.
        kind, strength, dims, threshold, seed: see ``ECOConfig``.
        rms: the embedding table's root mean square (the noise unit).
    """

    switchable_adapter = True  # switched off it leaves the original model (``enable_adapters``)

    def __init__(self, width: int, kind: str = "noise", strength: float = 1.0, dims: int | None = None,
                 threshold: float = 0.5, seed: int = 0, rms: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(width), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.mean = nn.Parameter(torch.zeros(width), requires_grad=False)
        self.scale = nn.Parameter(torch.ones(width), requires_grad=False)
        self.kind, self.strength, self.dims, self.threshold = kind, float(strength), dims, float(threshold)
        self.seed, self.rms = seed, float(rms)
        self.enabled = True

    def enable_adapters(self, enabled: bool) -> None:
        self.enabled = bool(enabled)

    def settings(self) -> dict:
        return {"kind": self.kind, "strength": self.strength, "dims": self.dims, "threshold": self.threshold,
                "seed": self.seed, "rms": self.rms}

    def probability(self, features: torch.Tensor) -> torch.Tensor:
        """(N,) probability that each pooled feature vector (N, D) is a forget-scope prompt."""
        z = (features.float() - self.mean) / self.scale
        return torch.sigmoid(z @ self.weight + self.bias)

    @torch.no_grad()
    def flags(self, model: Any, input_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """(B,) which prompts are forget-scope (features: ``pooled_features``)."""
        return self.probability(pooled_features(model, input_ids, prompt_mask)) > self.threshold

    def apply(self, model: Any, input_ids: torch.Tensor, prompt_mask: torch.Tensor,
              emb: torch.Tensor) -> torch.Tensor:
        """``emb`` (B, T, D) with every prompt position of the flagged prompts corrupted."""
        where = prompt_mask.bool() & self.flags(model, input_ids, prompt_mask)[:, None]
        return corrupt(emb, where, self.kind, self.strength, self.dims, self.rms, self.seed)


@torch.no_grad()
def pooled_features(model: Any, input_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    """(B, D) mean of the model's last hidden states over each row's prompt positions (causal: the answer tokens
    after them do not change them)."""
    out = model(input_ids=input_ids, attention_mask=(prompt_mask > 0).long(), output_hidden_states=True)
    h = out.hidden_states[-1].float()  # (B, T, D)
    m = prompt_mask.to(h.dtype)[..., None]
    return (h * m).sum(1) / m.sum(1).clamp_min(1)


def prompt_features(adapter: Any, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """(N, D) pooled features of each text as a user prompt (the adapter's chat or plain template)."""
    feats = []
    for i in range(0, len(texts), batch_size):
        rows = [{"question": t, "answer": "."} for t in texts[i:i + batch_size]]
        b = adapter.collate(rows)
        feats.append(pooled_features(adapter.model, b.input_ids, b.attention_mask * (1 - b.answer_mask)))
    return torch.cat(feats)


def fit_probe(guard: ECOGuard, pos: torch.Tensor, neg: torch.Tensor, steps: int = 300, lr: float = 0.05,
              l2: float = 1e-3) -> dict:
    """Logistic regression of ``pos`` (N+, D) against ``neg`` (N-, D) into ``guard`` (class-balanced loss, L2);
    returns its training accuracy on each class."""
    x = torch.cat([pos, neg]).float()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / scale
    w = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    weights = torch.where(y > 0, 0.5 / len(pos), 0.5 / len(neg))
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        loss = (nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, reduction="none") * weights).sum()
        loss = loss + l2 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        guard.weight.copy_(w)
        guard.bias.copy_(b)
        guard.mean.copy_(mean)
        guard.scale.copy_(scale)
        p = guard.probability(x)
    flagged = p > guard.threshold
    return {"true_positive_rate": float(flagged[y > 0].float().mean()),
            "false_positive_rate": float(flagged[y == 0].float().mean()), "n_pos": len(pos), "n_neg": len(neg)}


# ---------------------------------------------------------------------------------------------- the method
@dataclass
class ECOConfig:
    """ECO options.

    Args:
        kind: "noise", "zero" or "flip" (see ``corrupt``).
        strength: the starting strength s of the search (noise: std in units of the embeddings' rms; zero / flip:
            share of the dimensions).
        dims: noise only: corrupt the first ``dims`` dimensions (None: all).
        threshold: flag a prompt when the classifier's probability exceeds it.
        iterations: zeroth-order steps of the strength search (0: keep ``strength``).
        search_lr: its step size.
        epsilon: its finite-difference half-width e.
        min_strength: s_min.
        target_prob: the forget answers' mean per-token probability to reach (None: the uncorrupted model's
            probability of mismatched answers).
        seed: seeds the noise.
    """

    kind: str = "noise"
    strength: float = 1.0
    dims: int | None = None
    threshold: float = 0.5
    iterations: int = 10
    search_lr: float = 1.0
    epsilon: float = 0.1
    min_strength: float = 0.0
    target_prob: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown ECO kind {self.kind!r}; known: {', '.join(KINDS)}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"ECO threshold must lie in (0, 1), got {self.threshold}")
        if self.strength < 0 or self.epsilon <= 0 or self.iterations < 0:
            raise ValueError("ECO needs strength >= 0, epsilon > 0 and iterations >= 0")


def answer_prob(adapter: Any, rows: Sequence[dict], batch_size: int = 16) -> float:
    """Mean over rows of exp(-mean answer-token NLL) under the adapter (its guard included)."""
    probs = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            nll, length = adapter.per_example_nll(adapter.collate(rows[i:i + batch_size]))
            probs.append(torch.exp(-nll / length))
    return float(torch.cat(probs).mean())


def search_strength(adapter: Any, guard: ECOGuard, rows: Sequence[dict], target: float, c: ECOConfig) -> list[dict]:
    """Zeroth-order search of ``guard.strength`` towards answer probability ``target`` on ``rows``; the trace."""
    upper = None if c.kind == "noise" else 1.0

    def f(s: float) -> float:
        guard.strength = max(0.0, s if upper is None else min(s, upper))
        return abs(math.log(max(answer_prob(adapter, rows), 1e-12)) - math.log(target))

    s, trace = c.strength, []
    for i in range(c.iterations):
        g = (f(s + c.epsilon) - f(s - c.epsilon)) / (2 * c.epsilon)
        s = max(s - c.search_lr * g, c.min_strength)
        if upper is not None:
            s = min(s, upper)
        trace.append({"iteration": i + 1, "strength": round(s, 5), "gradient": round(g, 5)})
        logger.info("ECO strength search %d: s=%.4f g=%.4f", i + 1, s, g)
    guard.strength = s
    trace.append({"final_distance": round(f(s), 5), "prob": round(answer_prob(adapter, rows), 6), "target": target})
    guard.strength = s
    return trace


def _texts(rows: Sequence[Any]) -> list[str]:
    """The prompts a row stands for: its question and its answer text (both can be what a user types)."""
    out = []
    for r in rows:
        out += [r["question"], r["answer"]] if isinstance(r, dict) else [str(r)]
    return [t for t in out if t and t.strip()]


def solve_eco(adapter: Any, c: ECOConfig, *, forget: Sequence[dict], retain: Sequence[dict] | None,
              selected: Selector) -> dict:
    """Train the classifier, give ``adapter`` its guard and search the strength; returns what it did."""
    if not retain:
        raise ValueError("ECO trains its prompt classifier on forget against retain prompts: give a retain set")
    if getattr(adapter, "guard", None) is not None:
        raise ValueError("the model already carries an ECO guard; start from the base model")
    model = adapter.model
    model.eval()
    table = model.get_input_embeddings().weight.detach()
    guard = ECOGuard(table.shape[1], c.kind, c.strength, c.dims, c.threshold, c.seed,
                     rms=float(table.float().pow(2).mean().sqrt())).to(table.device)
    probe = fit_probe(guard, prompt_features(adapter, _texts(forget)), prompt_features(adapter, _texts(retain)))
    rows = [r for r in forget if isinstance(r, dict)]
    target = c.target_prob
    if target is None:  # the true answers rated like other questions' answers: a model that never learned them
        shifted = [{**r, "answer": rows[(i + 1) % len(rows)]["answer"]} for i, r in enumerate(rows)]
        target = answer_prob(adapter, shifted) if len(rows) > 1 else 1e-3
    before = answer_prob(adapter, rows)
    adapter.guard = guard
    trace = search_strength(adapter, guard, rows, target, c) if c.iterations else []
    return {"probe": probe, "forget_prob_before": round(before, 6), "target_prob": round(target, 6),
            "strength": round(guard.strength, 5), "search": trace}


def eco_selector(adapter: Any, c: ECOConfig) -> Selector:
    """What ECO adds: the guard (the model's weights stay as they are)."""
    return Selector(include=[r"^guard\."])


# ---------------------------------------------------------------------------------------------- save / load
def save_guard(path: str | os.PathLike, guard: ECOGuard, base: str | None, save_base: Any = None) -> None:
    """``eco.json`` (settings, base model) and ``eco.safetensors`` (the probe) in ``path``."""
    from safetensors.torch import save_file

    from llm.prompt_tuning import record_base

    path = Path(path)
    base_name = record_base(path, base, save_base)
    save_file({k: v.detach().cpu().contiguous() for k, v in guard.state_dict().items()}, path / GUARD_WEIGHTS,
              metadata={"format": "pt"})
    (path / GUARD_CONFIG).write_text(json.dumps({"method": "eco", "base_model_name_or_path": base_name,
                                                 "width": int(guard.weight.shape[0]), **guard.settings()}, indent=2))


def is_guard_folder(path: Path) -> bool:
    return (Path(path) / GUARD_CONFIG).is_file()


def load_guard(path: str | os.PathLike) -> tuple[ECOGuard, str]:
    """(the guard, its base model's name or folder) from an ECO folder (safetensors only)."""
    from safetensors.torch import load_file

    from llm.prompt_tuning import resolve_base

    path = Path(path)
    try:
        config = json.loads((path / GUARD_CONFIG).read_text())
        guard = ECOGuard(config["width"], config["kind"], config["strength"], config["dims"], config["threshold"],
                         config["seed"], config["rms"])
        base = config["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path / GUARD_CONFIG} is not an ECO guard's settings: {err}") from err
    if not (path / GUARD_WEIGHTS).is_file():
        raise ValueError(f"{path} has no {GUARD_WEIGHTS}")
    guard.load_state_dict(load_file(path / GUARD_WEIGHTS))
    return guard, resolve_base(path, base)


ECO = Method("eco", "llm", ECOConfig, None, selector=eco_selector, solve=solve_eco,
             paper="https://arxiv.org/abs/2406.07933")
