"""Weight masks: which entries of the trainable tensors an unlearning run may move.

A mask is computed once from the model's gradients on the forget and retain sets, saved as safetensors (one boolean
tensor per parameter), and then given to any method: the loop multiplies every gradient by it before the optimizer
step and puts the entries outside it back afterwards, so they stay byte-identical whatever the optimizer (Adam's
epsilon, weight decay, Sophia) would have done to them.

Kinds (``SCORES``, the one registration place; each keeps the top ``ratio`` of its scores):

- ``wagle``: weight attribution, WAGLE (Jia et al. 2024, https://arxiv.org/abs/2410.17509):
  score_i = | (theta_i - grad_r,i / mu) * grad_f,i |, the forget and retain gradients summed over the sets.
- ``salun``: gradient saliency, SalUn (Fan et al. 2023, https://arxiv.org/abs/2310.12508): score_i = | grad_f,i |.
- ``random`` and ``magnitude`` (| theta_i |): the baselines WAGLE compares with.

    mask = erasure.masks.wagle(model, forget, retain, ratio=0.95, mu=1e-6)
    mask.save("masks/hp")
    erase(model, ..., method="npo", mask="masks/hp")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

logger = logging.getLogger(__name__)

FILE = "mask.safetensors"


# ---------------------------------------------------------------------- scores (pure functions)
def wagle_scores(theta: torch.Tensor, grad_forget: torch.Tensor, grad_retain: torch.Tensor,
                 mu: float) -> torch.Tensor:
    """WAGLE's weight attribution | (theta - grad_r / mu) * grad_f | (Jia et al. 2024, arXiv 2410.17509, eq. 9):
    how much the forget loss moves when the weight is reset, with the retain loss's first-order pull (1/mu).

    Args:
        theta, grad_forget, grad_retain: one tensor's weights and its summed forget / retain gradients (same shape).
        mu: the retain term's weight (the paper's 1/mu scaling of the retain gradient; 1e-6 .. 1e-3).

    Returns:
        Scores, same shape; larger = more worth unlearning.
    """
    if mu <= 0:
        raise ValueError(f"WAGLE's mu must be > 0, got {mu}")
    return ((theta - grad_retain / mu) * grad_forget).abs()


def salun_scores(grad_forget: torch.Tensor) -> torch.Tensor:
    """SalUn's gradient saliency | grad_f | (Fan et al. 2023, arXiv 2310.12508)."""
    return grad_forget.abs()


def top_fraction(scores: dict[str, torch.Tensor], ratio: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Keep exactly round(ratio * n) entries with the highest scores: over all tensors at once (``global``) or
    within each tensor (``tensor``). Ties at the threshold go to the earlier entries (a deterministic count).

    Args:
        scores: {parameter name: scores}.
        ratio: the fraction kept, in [0, 1].
        scope: "global" or "tensor".

    Returns:
        {parameter name: bool tensor}, True = trainable.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be within [0, 1], got {ratio}")
    if scope not in ("global", "tensor"):
        raise ValueError(f"mask scope must be 'global' or 'tensor', got {scope!r}")
    if scope == "tensor" or not scores:
        return {n: _top(s.reshape(-1).float(), ratio).view(s.shape) for n, s in scores.items()}
    flat = torch.cat([s.reshape(-1).float() for s in scores.values()])
    keep = _top(flat, ratio)
    out, offset = {}, 0
    for n, s in scores.items():
        out[n] = keep[offset:offset + s.numel()].view(s.shape)
        offset += s.numel()
    return out


def _top(flat: torch.Tensor, ratio: float) -> torch.Tensor:
    """Bool (N,): the round(ratio * N) largest entries of ``flat`` (earlier entries win ties)."""
    n = flat.numel()
    k = int(round(ratio * n))
    if k == 0:
        return torch.zeros(n, dtype=torch.bool)
    if k == n:
        return torch.ones(n, dtype=torch.bool)
    threshold = torch.kthvalue(flat, n - k + 1).values  # the k-th largest value
    keep = flat > threshold
    tied = (flat == threshold).nonzero().reshape(-1)
    keep[tied[: k - int(keep.sum())]] = True
    return keep


# ---------------------------------------------------------------------- the mask object
@dataclass
class Mask:
    """One boolean tensor per parameter (``"component.param"`` names, as selectors use), True = may train.

    Args:
        tensors: the masks.
        info: how it was made (kind, ratio, scope, mu, seconds...), saved with it.
    """

    tensors: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)

    @property
    def density(self) -> float:
        """The fraction of entries that may train."""
        total = sum(t.numel() for t in self.tensors.values())
        return sum(int(t.sum()) for t in self.tensors.values()) / max(total, 1)

    def digest(self) -> str:
        """sha256 over names and bits (what a checkpoint records, so a resume uses the same mask)."""
        h = hashlib.sha256()
        for name in sorted(self.tensors):
            h.update(name.encode())
            h.update(self.tensors[name].to(torch.uint8).reshape(-1).numpy().tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the mask: ``path`` ending in ``.safetensors`` is the file itself, anything else a folder holding
        ``mask.safetensors`` and ``mask.json`` (how it was made). Written atomically; an existing mask is kept
        unless ``overwrite``. Returns the path written."""
        from safetensors.torch import save_file

        from erasure.files import atomic_dir, report_json

        path = check_destination(path, overwrite)
        meta = {"info": json.dumps(self.info, default=str)}
        tensors = {n: t.contiguous().cpu() for n, t in self.tensors.items()}
        if path.suffix == ".safetensors":
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.partial")
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
            return path
        with atomic_dir(path, overwrite=overwrite) as tmp:
            save_file(tensors, tmp / FILE, metadata=meta)
            (tmp / "mask.json").write_text(report_json({**self.info, "density": self.density,
                                                        "tensors": len(self.tensors)}))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Mask":
        """A mask written by ``save`` (its ``.safetensors`` file or its folder)."""
        from safetensors import safe_open

        file = Path(path)
        if file.is_dir():
            file = file / FILE
        if not file.is_file():
            raise FileNotFoundError(f"no mask at {path} (expected a .safetensors file or a folder with {FILE}); "
                                    "make one with `erasure mask` or erasure.masks.wagle(...).save(...)")
        with safe_open(str(file), framework="pt") as f:
            info = json.loads((f.metadata() or {}).get("info", "{}"))
            tensors = {n: f.get_tensor(n) for n in f.keys()}
        bad = [n for n, t in tensors.items() if t.dtype != torch.bool]
        if bad:
            raise ValueError(f"{file} is not a mask: tensor {bad[0]} is {tensors[bad[0]].dtype}, not bool")
        return cls(tensors, info)


def check_destination(path: str | os.PathLike, overwrite: bool = False,
                      sources: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Refuse a mask destination that would lose something: an existing ``.safetensors`` file, or a folder that is
    a model's (``sources``), inside one, or not empty, unless ``overwrite``. Returns it as a ``Path``."""
    from erasure.files import check_output_dir

    path = Path(path)
    if path.suffix != ".safetensors":
        check_output_dir(path, sources=sources, overwrite=overwrite, what="mask folder")
    elif path.exists() and not overwrite:
        raise ValueError(f"mask file {path} already exists; pass overwrite=True (--overwrite) to replace it")
    return path


def as_mask(mask: "Mask | str | os.PathLike") -> Mask:
    """A ``Mask``, or one loaded from its file or folder."""
    return mask if isinstance(mask, Mask) else Mask.load(mask)


class MaskedUpdate:
    """What the loop does with a mask: which tensors still train, their gradients masked before each optimizer
    step, and the entries outside the mask put back after it (byte-identical, whatever the optimizer does).

    Args:
        mask: the mask.
        trainable: the selector's trainable parameters; every one must have a mask entry of its shape.
    """

    def __init__(self, mask: Mask, trainable: dict[str, torch.nn.Parameter]):
        missing = [n for n in trainable if n not in mask.tensors]
        if missing:
            raise ValueError(f"the mask has no entry for {missing[0]} (and {len(missing) - 1} more trainable tensors): "
                             "compute it with the same model and selector as the run")
        for n, p in trainable.items():
            if tuple(mask.tensors[n].shape) != tuple(p.shape):
                raise ValueError(f"mask entry {n} has shape {tuple(mask.tensors[n].shape)}, the parameter "
                                 f"{tuple(p.shape)}: the mask belongs to another model")
        self.keep = {n: mask.tensors[n].to(p.device) for n, p in trainable.items() if bool(mask.tensors[n].any())}
        for n in set(trainable) - set(self.keep):  # nothing of it may move: it does not train at all
            trainable[n].requires_grad_(False)
        self.outside = {n: ~m for n, m in self.keep.items() if not bool(m.all())}  # tensors trained in part
        self.frozen = {n: trainable[n].detach()[out].clone() for n, out in self.outside.items()}
        self.params = {n: trainable[n] for n in self.keep}

    def kept(self) -> int:
        """How many entries train."""
        return sum(int(m.sum()) for m in self.keep.values())

    def mask_gradients(self) -> None:
        """Zero the gradient outside the mask (before clipping and the optimizer step)."""
        for n in self.frozen:
            grad = self.params[n].grad
            if grad is not None:
                grad.mul_(self.keep[n])

    @torch.no_grad()
    def restore(self) -> None:
        """Put the entries outside the mask back (after the optimizer step)."""
        for n, values in self.frozen.items():
            self.params[n][self.outside[n]] = values


# ---------------------------------------------------------------------- computing masks
def set_gradients(adapter: Any, rows: Sequence[Any], params: dict[str, torch.nn.Parameter], batch_size: int = 8,
                  seed: int = 0, desc: str = "gradients") -> dict[str, torch.Tensor]:
    """The gradient of the set's loss summed over its rows: each row's mean loss over its units (the adapter's
    ``per_example_nll`` over answer tokens, or the denoising error), summed, so the result does not depend on
    ``batch_size``. WAGLE's code sums batch-mean gradients over one pass at batch size 1 (the same sum); SalUn's
    sums batch means of 8 (a rescaling, which a top-k mask does not see).

    Args:
        adapter: the modality adapter.
        rows: forget or retain rows (what ``adapter.collate`` takes).
        params: the parameters to differentiate (requires_grad set).
        batch_size: rows per batch.
        seed: seeds the adapter's random draws (diffusion noise and timesteps).
        desc: the progress bar's label.

    Returns:
        {name: gradient} (zeros where the loss does not depend on a parameter).
    """
    from erasure.progress import progress

    if len(rows) == 0:
        raise ValueError(f"cannot compute {desc}: the set is empty")
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    names, tensors = list(params), list(params.values())
    for start in progress(range(0, len(rows), batch_size), desc=desc):
        batch = adapter.collate([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
        nll, length = adapter.per_example_nll(batch, torch.Generator().manual_seed(seed * 1_000_003 + start))
        loss = (nll / length.clamp(min=1)).sum()
        for n, g in zip(names, torch.autograd.grad(loss, tensors, allow_unused=True)):
            if g is not None:
                grads[n] += g
    return grads


def _wagle(theta: dict, forget: Callable[[], dict], retain: Callable[[], dict], generator: torch.Generator,
           mu: float = 1e-6, **_: Any) -> dict:
    g_f, g_r = forget(), retain()
    return {n: wagle_scores(theta[n], g_f[n], g_r[n], mu) for n in theta}


def _salun(theta: dict, forget: Callable[[], dict], retain: Callable[[], dict], generator: torch.Generator,
           **_: Any) -> dict:
    return {n: salun_scores(g) for n, g in forget().items()}


def _random(theta: dict, forget: Callable[[], dict], retain: Callable[[], dict], generator: torch.Generator,
            **_: Any) -> dict:
    return {n: torch.rand(t.shape, generator=generator) for n, t in theta.items()}


def _magnitude(theta: dict, forget: Callable[[], dict], retain: Callable[[], dict], generator: torch.Generator,
               **_: Any) -> dict:
    return {n: t.abs() for n, t in theta.items()}


# kind -> (scores from theta and lazily computed forget / retain gradients, the sets whose gradients it takes)
SCORES: dict[str, tuple[Callable[..., dict], tuple[str, ...]]] = {
    "wagle": (_wagle, ("forget", "retain")), "salun": (_salun, ("forget",)), "random": (_random, ()),
    "magnitude": (_magnitude, ()),
}


def compute(model: Any, kind: str, forget: Any = None, retain: Any = None, *, ratio: float, scope: str = "global",
            mu: float = 1e-6, selector: Any = None, batch_size: int = 8, seed: int = 0, concept: str | None = None,
            out: str | os.PathLike | None = None, overwrite: bool = False) -> Mask:
    """A mask of ``kind`` over the parameters ``selector`` picks (default: the adapter's own selection).

    Args:
        model: anything ``erase`` takes (a model, a pipeline, an adapter, a model name or folder).
        kind: one of ``SCORES`` (wagle, salun, random, magnitude).
        forget, retain: rows as ``erase`` takes them (the modality turns a concept or split name into rows; an
            adapter with ``likelihood_rows`` completes them for its loss: a diffusion model draws its own image of
            each prompt without one).
        ratio: the fraction of entries kept trainable (WAGLE: 0.95 on TOFU, 0.4-0.6 on WMDP; SalUn: 0.5).
        scope: top-``ratio`` over all tensors ("global", the papers') or within each tensor ("tensor").
        mu: WAGLE's retain scaling (1e-6 in its TOFU and WMDP configs; 1e-3 its code's default).
        selector: which parameters are scored (a preset, regexes or a ``Selector``); the run that uses the mask
            must train a subset of them.
        batch_size: rows per gradient batch.
        seed: seeds the random mask and the adapter's noise.
        concept: a diffusion concept whose prompts are the forget set.
        out: save the mask there as well.
        overwrite: let ``out`` replace an existing mask.

    Returns:
        The ``Mask``; ``info`` records kind, ratio, scope, mu, density, seconds and the set sizes.
    """
    from erasure.api import _rows
    from erasure.registry import modality_for
    from erasure.selectors import Selector, resolve_selector

    if kind not in SCORES:
        raise ValueError(f"unknown mask kind {kind!r}; known: {', '.join(SCORES)}")
    score, uses = SCORES[kind]
    top_fraction({}, ratio, scope)  # validates ratio and scope before any work
    modality = modality_for(model)
    adapter = modality.adapter(model) if not isinstance(model, (str, os.PathLike)) else modality.load(str(model))
    if out is not None:  # before any gradient: not the model's folder, nothing overwritten unasked
        check_destination(out, overwrite, sources=[getattr(adapter, "source", None)])
    forget_rows, retain_rows = modality.erase_data(adapter, concept=concept, forget=_rows(forget, "forget"),
                                                   retain=_rows(retain, "retain"))
    if "retain" in uses and not retain_rows:
        raise ValueError(f"a {kind} mask needs a retain set")
    prepare = getattr(adapter, "likelihood_rows", None)  # e.g. a diffusion model's own images of its prompts
    if prepare is not None:
        forget_rows = prepare(forget_rows, seed=seed) if "forget" in uses else forget_rows
        retain_rows = prepare(retain_rows, seed=seed + 1) if "retain" in uses else retain_rows
    sel = resolve_selector(selector or adapter.default_selector)
    if isinstance(sel, Selector) and sel.lora is not None:
        raise ValueError("a mask addresses the model's own weights; it cannot be computed for LoRA adapters")
    t0 = time.time()
    modules = adapter.modules()
    params = sel.apply(modules)
    for m in modules.values():
        m.eval()
    theta = {n: p.detach() for n, p in params.items()}
    try:
        scores = score(theta, lambda: set_gradients(adapter, forget_rows, params, batch_size, seed, "forget gradients"),
                       lambda: set_gradients(adapter, retain_rows, params, batch_size, seed, "retain gradients"),
                       torch.Generator().manual_seed(seed), mu=mu)
    finally:
        for m in modules.values():
            m.requires_grad_(False)
    mask = Mask({n: k.cpu() for n, k in top_fraction(scores, ratio, scope).items()},
                {"kind": kind, "ratio": ratio, "scope": scope, "selector": [sel.include, sel.exclude],
                 **({"mu": mu} if kind == "wagle" else {}), "seed": seed, "forget": len(forget_rows),
                 "retain": len(retain_rows or []) if "retain" in uses else 0, "seconds": round(time.time() - t0, 1)})
    mask.info["density"] = mask.density
    logger.info("%s mask: %.4f of %d entries kept (%.1f s)", kind, mask.density,
                sum(t.numel() for t in mask.tensors.values()), time.time() - t0)
    if out is not None:
        mask.save(out, overwrite=overwrite)
    return mask


def wagle(model: Any, forget: Any = None, retain: Any = None, *, ratio: float = 0.95, mu: float = 1e-6,
          **options: Any) -> Mask:
    """WAGLE's weight-attribution mask (arXiv 2410.17509): ``compute(model, "wagle", ...)``."""
    return compute(model, "wagle", forget, retain, ratio=ratio, mu=mu, **options)


def salun(model: Any, forget: Any = None, retain: Any = None, *, ratio: float = 0.5, **options: Any) -> Mask:
    """SalUn's gradient-saliency mask (arXiv 2310.12508): ``compute(model, "salun", ...)``."""
    return compute(model, "salun", forget, retain, ratio=ratio, **options)
