"""The unlearning loop shared by every method and modality.

One step: draw the step's forget/retain rows (a pure function of seed and step), let the objective score
them through the adapter, check the loss is finite, backpropagate through accelerate, step the optimizer.
Checkpoints hold the trainable tensors, the optimizer state and the history, all as safetensors + JSON, so
a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from erasure.adapter import Adapter
from erasure.adversary import Adversary
from erasure.config import TrainConfig
from erasure.objectives import Objective, StepScores
from erasure.progress import progress
from erasure.reference import PeftReference, Reference, SnapshotReference
from erasure.selectors import Selector

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good state was checkpointed (if checkpointing is on)."""


@dataclass
class LoopResult:
    """What a finished run reports."""

    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    trainable_parameters: int = 0
    reference: str | None = None


def batch_indices(n: int, step: int, batch_size: int, seed: int, split: int) -> list[int]:
    """Rows for ``step``: consecutive slices of a per-epoch seeded permutation (pure function of its inputs)."""
    if n == 0:
        raise ValueError("cannot draw a batch from an empty set")
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7 + split))
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset : offset + take].tolist())
        pos += take
    return out


def _optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_reference(modules: dict[str, torch.nn.Module], trainable: dict[str, torch.nn.Parameter],
                   selector: Selector) -> Reference:
    """The cheapest exact reference: LoRA off when training LoRA, else a snapshot of the trained tensors."""
    return PeftReference(modules) if selector.lora is not None else SnapshotReference(trainable, modules)


class Unlearner:
    """Runs an objective over forget/retain data on an adapter's selected parameters.

    Args:
        adapter: the modality adapter (owns the model).
        objective: the loss to minimise.
        selector: which parameters train.
        config: loop settings.
        forget: forget records (any sequence the adapter's ``collate`` accepts).
        retain: retain records, or None when the objective has no retain term.
        on_step: optional callback ``(step, logs)`` after each step.
        adversary: optional ``Adversary`` rewriting each forget batch (after ``config.adversary_warmup`` steps)
            before the objective sees it: adversarial unlearning's inner maximisation.
    """

    def __init__(self, adapter: Adapter, objective: Objective, selector: Selector, config: TrainConfig,
                 forget: Sequence[Any], retain: Sequence[Any] | None = None,
                 on_step: Callable[[int, dict], None] | None = None, adversary: Adversary | None = None):
        if forget is None or len(forget) == 0:
            raise ValueError("the forget set is empty: give at least one forget example or concept prompt")
        if "retain" in objective.splits and (retain is None or len(retain) == 0):
            raise ValueError("this method has a retain term, but the retain set is empty")
        self.adapter, self.objective, self.selector, self.config = adapter, objective, selector, config
        self.forget, self.retain, self.on_step, self.adversary = forget, retain, on_step, adversary

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, step: int, trainable, optimizer, history) -> Path:
        root = Path(self.config.checkpoint_dir)
        final = root / f"step-{step:07d}"
        tmp = root / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({n: p.detach().cpu().contiguous() for n, p in trainable.items()}, tmp / "trainable.safetensors")
        opt_state = optimizer.state_dict()
        tensors, scalars = {}, {}
        for idx, st in opt_state["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
                else:
                    scalars[f"{idx}.{k}"] = v
        save_file(tensors, tmp / "optimizer.safetensors")
        meta = {"step": step, "param_groups": opt_state["param_groups"], "scalars": scalars,
                "history": history, "config": asdict(self.config)}
        (tmp / "state.json").write_text(json.dumps(meta))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(root.glob("step-*"))[:-2]:  # keep the two newest
            shutil.rmtree(old, ignore_errors=True)
        logger.info("checkpoint saved: %s", final)
        return final

    def _load_checkpoint(self, trainable, optimizer) -> tuple[int, list]:
        root = Path(self.config.checkpoint_dir)
        found = sorted(root.glob("step-*")) if root.is_dir() else []
        if not found:
            raise FileNotFoundError(f"resume requested but no checkpoint under {root}")
        ckpt = found[-1]
        weights = load_file(ckpt / "trainable.safetensors")
        missing = sorted(set(trainable) - set(weights))
        if missing:
            raise ValueError(f"checkpoint {ckpt} does not match this model/selector: missing {missing[:3]}...")
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(weights[n].to(p.device, p.dtype))
        meta = json.loads((ckpt / "state.json").read_text())
        tensors = load_file(ckpt / "optimizer.safetensors")
        state: dict[int, dict] = {}
        for key, v in list(tensors.items()) + list(meta["scalars"].items()):
            idx, k = key.split(".", 1)
            state.setdefault(int(idx), {})[k] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        logger.info("resumed from %s (step %d)", ckpt, meta["step"])
        return int(meta["step"]), list(meta["history"])

    # ------------------------------------------------------------------ the loop
    def run(self) -> LoopResult:
        from accelerate import Accelerator

        cfg = self.config
        accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
        modules = self.adapter.modules()
        for m in modules.values():
            m.to(accelerator.device)
        trainable = self.selector.apply(modules)
        needs_ref = self.objective.needs_reference or self.adversary is not None
        reference = make_reference(modules, trainable, self.selector) if needs_ref else None
        optimizer = accelerator.prepare(_optimizer(cfg, list(trainable.values())))
        start, history = 0, []
        # reference NLL per example, reused across steps (deterministic adapters); not when an adversary rewrites
        # the forget batch every step (the cached value would belong to another input)
        reference_cache: dict | None = {} if self.adversary is None else None
        if cfg.resume:
            start, history = self._load_checkpoint(trainable, optimizer)
        t0 = time.time()
        for m in modules.values():
            m.train()
        data = {"forget": self.forget, "retain": self.retain}
        for step in progress(range(start, cfg.steps), desc="unlearning", disable=not cfg.show_progress,
                             initial=start, total=cfg.steps):
            ids = {"forget": batch_indices(len(self.forget), step, cfg.batch_size, cfg.seed, 0)}
            if self.retain is not None and len(self.retain) > 0:
                ids["retain"] = batch_indices(len(self.retain), step, cfg.batch_size, cfg.seed, 1)
            rows = {split: [data[split][i] for i in idx] for split, idx in ids.items()}
            batches = {split: self.adapter.collate(r) for split, r in rows.items()}
            if self.adversary is not None and step >= cfg.adversary_warmup:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + 7_919)
                attack = self.adversary.attack(self.adapter, batches["forget"], gen, reference=reference)
                batches["forget"] = attack.batch
            scores = StepScores(self.adapter, reference, batches, seed=cfg.seed * 1_000_003 + step, rows=rows,
                                row_ids=ids, reference_cache=reference_cache)
            with accelerator.autocast():
                loss, logs = self.objective(scores)
            if not math.isfinite(float(loss.detach())):
                where = ""
                if cfg.checkpoint_dir:
                    where = f"; last good state saved to {self._save_checkpoint(step, trainable, optimizer, history)}"
                raise NonFiniteLossError(f"loss became {float(loss.detach())} at step {step} (terms: {logs}){where}")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(list(trainable.values()), cfg.grad_clip)
            optimizer.step()
            logs = {"step": step + 1, "loss": float(loss.detach()), **logs}
            history.append(logs)
            if cfg.log_every and (step + 1) % cfg.log_every == 0:
                logger.info("step %d %s", step + 1, {k: round(v, 5) for k, v in logs.items() if k != "step"})
            if self.on_step:
                self.on_step(step + 1, logs)
            if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                self._save_checkpoint(step + 1, trainable, optimizer, history)
        for m in modules.values():
            m.eval()
            m.requires_grad_(False)
        return LoopResult(steps=cfg.steps, seconds=round(time.time() - t0, 3), history=history,
                          trainable_parameters=sum(p.numel() for p in trainable.values()),
                          reference=reference.name if reference else None)
