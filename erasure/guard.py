"""ECO: unlearning through embedding-corrupted prompts (Liu et al. 2024, https://arxiv.org/abs/2406.07933).

No weight changes. A prompt classifier flags forget-scope prompts; a flagged prompt's embeddings are corrupted before
the model reads them, with a strength chosen by zeroth-order search so the model's outputs on the forget set reach
the level of a model that never learned them. This file holds what both modalities share; each adapter supplies the
prompt features, where the corruption applies and the distance the search minimises:

* Classifier (``PromptGuard``, ``fit_probe``): logistic regression on standardised prompt features (an LLM: its own
  mean-pooled last hidden states of the prompt; a text-to-image model: its text encoder's mean hidden state),
  class-balanced, trained on the forget rows against the retain rows; flagged when its probability exceeds
  ``threshold``.
* Corruption (``corrupt``; the official code's functions, on every position of a flagged prompt): ``noise`` adds
  N(0, (s * rms)^2) to the first ``dims`` dimensions (``rand_noise_first_n``; rms is the embeddings' root mean
  square, so s is unit-free), ``zero`` zeroes the round(s * D) largest-magnitude dimensions (``zero_out_top_k``),
  ``flip`` flips their signs (``flip_sign_top_k``). Noise comes from a fixed seed: a prompt is always corrupted the
  same way.
* Strength (``search_strength``): g = [f(s + e) - f(s - e)] / (2e), s <- max(s - lr * g, s_min) for ``iterations``
  steps, with f the adapter's ``eco_distance`` to the unlearning target (``eco_reference``).

``result.save(folder)`` writes ``eco.json`` and ``eco.safetensors`` (the probe) and names the base model, which
the modality's ``load(folder)`` loads with the guard on it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn


logger = logging.getLogger(__name__)

KINDS = ("noise", "zero", "flip")
GUARD_CONFIG = "eco.json"
GUARD_WEIGHTS = "eco.safetensors"
GUARD_VERSION = 2  # bump when what a guard does to a prompt changes (cached evaluations of guarded models expire)
BASE_FOLDER = "base"  # where a guard or a prompt keeps its base model when that came from no folder


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
class PromptGuard(nn.Module):
    """A prompt classifier (a linear probe on pooled features) and the corruption it triggers.

    Args:
        width: the features' size D.
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

    @property
    def config(self) -> dict:
        """Its settings and how it applies them (``evals.eval_cache.config_of`` keys cached evaluations on them)."""
        return {**self.settings(), "version": GUARD_VERSION}

    def settings(self) -> dict:
        return {"kind": self.kind, "strength": self.strength, "dims": self.dims, "threshold": self.threshold,
                "seed": self.seed, "rms": self.rms}

    def probability(self, features: torch.Tensor) -> torch.Tensor:
        """(N,) probability that each pooled feature vector (N, D) is a forget-scope prompt."""
        z = (features.float() - self.mean) / self.scale
        return torch.sigmoid(z @ self.weight + self.bias)

    def flags(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) which prompts are forget-scope, from their pooled features (B, D)."""
        with torch.no_grad():
            return self.probability(features) > self.threshold

    def apply(self, features: torch.Tensor, emb: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``emb`` (B, T, D) with the ``positions`` (B, T; default all) of the flagged prompts corrupted."""
        where = self.flags(features)[:, None].expand(emb.shape[:2])
        if positions is not None:
            where = where & positions.bool()
        return corrupt(emb, where, self.kind, self.strength, self.dims, self.rms, self.seed)


def fit_probe(guard: PromptGuard, pos: torch.Tensor, neg: torch.Tensor, steps: int = 300, lr: float = 0.05,
              l2: float = 1e-3) -> dict:
    """Logistic regression of ``pos`` (N+, D) against ``neg`` (N-, D) into ``guard`` (class-balanced loss, L2);
    returns its training accuracy on each class."""
    x = torch.cat([pos, neg]).float()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(x.device)
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / scale
    w = torch.zeros(z.shape[1], device=x.device, requires_grad=True)
    b = torch.zeros((), device=x.device, requires_grad=True)
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
        target: the level the adapter's distance aims at (an LLM: the forget answers' mean per-token
            probability; None: the modality's never-learned proxy, see its ``eco_reference``).
        seed: seeds the noise.
        concept: the erased concept (a text-to-image model's ECO aims its prompts at themselves without it; given
            by ``erase``).
    """

    kind: str = "noise"
    strength: float = 1.0
    dims: int | None = None
    threshold: float = 0.5
    iterations: int = 10
    search_lr: float = 1.0
    epsilon: float = 0.1
    min_strength: float = 0.0
    target: float | None = None
    seed: int = 0
    concept: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown ECO kind {self.kind!r}; known: {', '.join(KINDS)}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"ECO threshold must lie in (0, 1), got {self.threshold}")
        if self.strength < 0 or self.epsilon <= 0 or self.iterations < 0:
            raise ValueError("ECO needs strength >= 0, epsilon > 0 and iterations >= 0")


def search_strength(adapter: Any, guard: PromptGuard, rows: Sequence[Any], reference: Any,
                    c: ECOConfig) -> list[dict]:
    """Zeroth-order search of ``guard.strength`` minimising ``adapter.eco_distance(rows, reference)``; the trace.
    The guard keeps the best strength the search evaluated (the plain update can step past the minimum; the
    official search keeps its last iterate)."""
    upper = None if c.kind == "noise" else 1.0
    seen: list[tuple[float, float]] = []  # (distance, strength)

    def clip(s: float) -> float:
        s = max(s, c.min_strength, 0.0)
        return s if upper is None else min(s, upper)

    def f(s: float) -> float:
        guard.strength = clip(s)
        value = float(adapter.eco_distance(rows, reference))
        seen.append((value, guard.strength))
        return value

    s, trace = clip(c.strength), []
    for i in range(c.iterations):
        g = (f(s + c.epsilon) - f(s - c.epsilon)) / (2 * c.epsilon)
        s = clip(s - c.search_lr * g)
        trace.append({"iteration": i + 1, "strength": round(s, 5), "gradient": round(g, 5)})
        logger.info("ECO strength search %d: s=%.4f g=%.4f", i + 1, s, g)
    f(s)
    best, guard.strength = min(seen)
    trace.append({"strength": round(guard.strength, 5), "distance": round(best, 5)})
    return trace


def solve_eco(adapter: Any, c: ECOConfig, *, forget: Sequence[Any], retain: Sequence[Any] | None,
              selected: Any) -> dict:
    """Train the classifier on the adapter's prompt features, give the adapter its guard and search the strength;
    returns what it did (the probe's training rates, the distance before and after, the search)."""
    if not retain:
        raise ValueError("ECO trains its prompt classifier on forget against retain prompts: give a retain set")
    if getattr(adapter, "guard", None) is not None:
        raise ValueError("the model already carries an ECO guard; start from the base model")
    for m in adapter.modules().values():
        m.eval()
    pos, neg = adapter.guard_features(forget), adapter.guard_features(retain)
    guard = PromptGuard(pos.shape[1], c.kind, c.strength, c.dims, c.threshold, c.seed,
                        rms=adapter.embedding_rms()).to(pos.device)
    probe = fit_probe(guard, pos, neg)
    reference = adapter.eco_reference(forget, c.target, retain=retain,
                                      **({"concept": c.concept} if c.concept else {}))
    before = float(adapter.eco_distance(forget, reference))
    adapter.guard = guard
    trace = search_strength(adapter, guard, forget, reference, c) if c.iterations else []
    return {"probe": probe, "distance_before": round(before, 5), "strength": round(guard.strength, 5),
            "search": trace}


def eco_selector(adapter: Any, c: ECOConfig) -> Any:
    """What ECO adds: the guard (the model's weights stay as they are)."""
    from erasure.selectors import Selector

    return Selector(include=[r"^guard\."])


# ---------------------------------------------------------------------------------------------- save / load
def save_guard(path: str | os.PathLike, guard: PromptGuard, base: str | None, save_base: Any = None) -> None:
    """``eco.json`` (settings, base model) and ``eco.safetensors`` (the probe) in ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    base_name = record_base(path, base, save_base)
    save_file({k: v.detach().cpu().contiguous() for k, v in guard.state_dict().items()}, path / GUARD_WEIGHTS,
              metadata={"format": "pt"})
    (path / GUARD_CONFIG).write_text(json.dumps({"method": "eco", "base_model_name_or_path": base_name,
                                                 "width": int(guard.weight.shape[0]), **guard.settings()}, indent=2))


def is_guard_folder(path: Path) -> bool:
    return (Path(path) / GUARD_CONFIG).is_file()


def guard_base(path: Path) -> Path | None:
    """The base model folder an ECO guard folder names (None when it names none that exists here)."""
    from erasure.models import resolve_model_path

    try:
        base = json.loads((Path(path) / GUARD_CONFIG).read_text())["base_model_name_or_path"]
        return resolve_model_path(resolve_base(Path(path), base))
    except (OSError, ValueError, KeyError):
        return None


def load_guard(path: str | os.PathLike) -> tuple[PromptGuard, str]:
    """(the guard, its base model's name or folder) from an ECO folder (safetensors only)."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        config = json.loads((path / GUARD_CONFIG).read_text())
        guard = PromptGuard(config["width"], config["kind"], config["strength"], config["dims"], config["threshold"],
                         config["seed"], config["rms"])
        base = config["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path / GUARD_CONFIG} is not an ECO guard's settings: {err}") from err
    if not (path / GUARD_WEIGHTS).is_file():
        raise ValueError(f"{path} has no {GUARD_WEIGHTS}")
    guard.load_state_dict(load_file(path / GUARD_WEIGHTS))
    return guard, resolve_base(path, base)


def record_base(path: Path, base: str | None, save_base: Any = None) -> str:
    """Create the folder ``path`` of something that runs on a base model (an ECO guard, a soft prompt) and return
    how it names that base: ``base`` itself, or ``base/`` after ``save_base(path / "base")`` writes a model that came
    from no folder."""
    path.mkdir(parents=True, exist_ok=True)
    if base is not None:
        return base
    if save_base is None:
        raise ValueError("the base model was loaded from no folder and cannot be written beside what runs on it")
    save_base(path / BASE_FOLDER)
    return BASE_FOLDER


def resolve_base(path: Path, base: str) -> str:
    """The base model named in the folder ``path``: its ``base/`` subfolder, else the name as written."""
    return str(path / BASE_FOLDER) if base == BASE_FOLDER else base
