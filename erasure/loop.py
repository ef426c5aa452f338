"""The unlearning loop shared by every method and modality.

One step: draw the step's forget/retain rows (a pure function of seed and step), let the objective score
them through the adapter, check the loss is finite, backpropagate through accelerate, step the optimizer.
Checkpoints hold the trainable tensors, the optimizer state and the history, all as safetensors + JSON, so
a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from erasure.adapter import Adapter
from erasure.adversary import Adversary
from erasure.config import TrainConfig
from erasure.errors import NonFiniteLossError
from erasure.files import fsync_dir, fsync_tree
from erasure.masks import Mask, MaskedUpdate
from erasure.objectives import Objective, StepScores
from erasure.progress import progress
from erasure.reference import PeftReference, Reference, SnapshotReference
from erasure.selectors import Selector
from erasure.sophia import Sophia, estimator_for, gnb_estimate, hutchinson_estimate, twice_differentiable

logger = logging.getLogger(__name__)


RETRY_HINT = "; try a lower lr (or mixed precision off)"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _state(trainable: dict[str, torch.nn.Parameter], optimizer: Any, snapshot: bool = False) -> tuple[dict, dict]:
    """(trainable tensors, optimizer state) on the CPU; with ``snapshot``, copies detached from the live ones."""
    weights = {n: p.detach().cpu() for n, p in trainable.items()}
    opt = optimizer.state_dict()
    if snapshot:
        weights = {n: w.clone() for n, w in weights.items()}
        opt = {"state": {i: {k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in st.items()}
                         for i, st in opt["state"].items()},
               "param_groups": copy.deepcopy(opt["param_groups"])}
    return weights, opt


def _digest_rows(rows: Sequence[Any] | None) -> str | None:
    """sha256 of a data set's rows (text as JSON; tensors by their bytes), so a resumed run uses the same data."""
    if rows is None:
        return None
    h = hashlib.sha256()

    def add(value: Any) -> None:
        if torch.is_tensor(value):
            h.update(fingerprint_tensors({"t": value}).encode())
        elif isinstance(value, dict):
            for k in sorted(value):
                h.update(str(k).encode())
                add(value[k])
        elif hasattr(value, "tobytes"):  # PIL images, numpy arrays
            h.update(value.tobytes())
        elif isinstance(value, (list, tuple)):
            h.update(b"[")
            for v in value:
                add(v)
            h.update(b"]")
        else:
            h.update(json.dumps(value, default=str).encode())

    for i in range(len(rows)):
        add(rows[i])
    return h.hexdigest()


def fingerprint_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes, dtypes and bytes of ``tensors`` (the model a checkpoint belongs to)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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


def _has_accelerator() -> bool:
    """A GPU-like device accelerate could use; without one it runs on the CPU (several processes: gloo)."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or (
        hasattr(torch, "xpu") and torch.xpu.is_available())


def _mean_across(accelerator: Any, values: Sequence[float]) -> list[float]:
    """Each float's mean over the processes (one all-reduce)."""
    return accelerator.reduce(torch.tensor(list(values), dtype=torch.float64, device=accelerator.device),
                              reduction="mean").tolist()


def _mean_tensors(accelerator: Any, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's mean over the processes (one all-reduce of their concatenation)."""
    flat = accelerator.reduce(torch.cat([t.reshape(-1) for t in tensors]), reduction="mean")
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset:offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()
    return out


def _average_gradients(accelerator: Any, params: Sequence[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes (one all-reduce): with equal shares of the step's
    rows and per-row-mean losses, the gradient of the whole batch, as one process would compute it."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    for p, g in zip(params, _mean_tensors(accelerator, grads)):
        p.grad = g


def _accelerator(precision: str) -> Any:
    """An ``Accelerator`` for this run's precision. accelerate keeps one state per process and refuses another
    mixed precision later in the same process; a second ``erase()`` with another precision (an experiment script,
    a bench) resets that state first (an ``Accelerator`` the caller made earlier in the process then follows the new
    precision too). The process group (``PartialState``) is kept, so launched runs are unaffected.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    held = state.get("_mixed_precision")
    deepspeed = str(state.get("distributed_type", "")).endswith("DEEPSPEED")  # its precision lives in its config
    if held is not None and held != precision and not deepspeed:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=precision, cpu=not _has_accelerator())


def _supports_checkpointing(module: torch.nn.Module) -> bool:
    """Whether a module offers gradient checkpointing (diffusers and transformers models that implement it)."""
    offers = any(hasattr(module, f) for f in ("activation_checkpointing_enable", "gradient_checkpointing_enable",
                                               "enable_gradient_checkpointing"))
    return offers and bool(getattr(module, "supports_gradient_checkpointing",
                                   getattr(module, "_supports_gradient_checkpointing", False)))


def _checkpointing_on(modules: dict[str, torch.nn.Module], switched: list[str]) -> None:
    """Gradient checkpointing (activations recomputed in the backward pass instead of kept: less memory, about one
    more forward of time) for every module that offers it and trains something; each name goes into ``switched``
    as it is switched, so ``_checkpointing_off`` undoes exactly that, even after an error. A module that had it on
    already (any block's ``gradient_checkpointing`` flag, in diffusers and transformers alike) is left as it was."""
    for name, m in modules.items():
        if (not _supports_checkpointing(m) or not any(p.requires_grad for p in m.parameters())
                or any(getattr(sub, "gradient_checkpointing", False) is True for sub in m.modules())):
            continue
        if hasattr(m, "enable_gradient_checkpointing"):  # diffusers
            m.enable_gradient_checkpointing()
            switched.append(name)
            continue
        hooked = bool(getattr(m, "_require_grads_hooks", None))  # transformers (5: activation_*, 4: gradient_*)
        enable = getattr(m, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        switched.append(name)
        if not hooked and hasattr(m, "disable_input_require_grads"):
            # transformers also hooks the embeddings' output to require grad (for reentrant checkpoints of frozen
            # inputs); the non-reentrant checkpoint needs no hook, and it would outlive the run
            m.disable_input_require_grads()


def _checkpointing_off(modules: dict[str, torch.nn.Module]) -> None:
    """Undo ``_checkpointing_on`` for these modules."""
    for m in modules.values():
        off = (getattr(m, "activation_checkpointing_disable", None) or getattr(m, "gradient_checkpointing_disable", None)
               or m.disable_gradient_checkpointing)
        off()


def _optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    betas = {"betas": tuple(cfg.betas)} if cfg.betas is not None else {}
    if cfg.optimizer == "sophia":
        return Sophia(params, lr=cfg.lr, rho=cfg.rho, weight_decay=cfg.decay(), **betas)
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=cfg.lr, weight_decay=cfg.decay(), **betas)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.decay())


def make_reference(modules: dict[str, torch.nn.Module], trainable: dict[str, torch.nn.Parameter],
                   selector: Selector) -> Reference:
    """The cheapest exact reference: the adapters off when training new ones (LoRA, a soft prompt), else a snapshot
    of the trained tensors."""
    if selector.lora is not None or selector.adapters_off:
        return PeftReference(modules)
    return SnapshotReference(trainable, modules)


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
        fingerprint: what a checkpoint must share with this run to be resumed (method, data, seed, options...;
            JSON values); the loop adds the digest of the trainable tensors before training and the data.
        mask: optional weight mask (``erasure.masks``): only its entries of the trainable tensors move; the rest
            stay byte-identical.
    """

    def __init__(self, adapter: Adapter, objective: Objective, selector: Selector, config: TrainConfig,
                 forget: Sequence[Any], retain: Sequence[Any] | None = None,
                 on_step: Callable[[int, dict], None] | None = None, adversary: Adversary | None = None,
                 fingerprint: dict | None = None, mask: Mask | None = None):
        if forget is None or len(forget) == 0:
            raise ValueError("the forget set is empty: give at least one forget example or concept prompt")
        if "retain" in objective.splits and (retain is None or len(retain) == 0):
            raise ValueError("this method has a retain term, but the retain set is empty")
        self.adapter, self.objective, self.selector, self.config = adapter, objective, selector, config
        self.forget, self.retain, self.on_step, self.adversary = forget, retain, on_step, adversary
        self.fingerprint: dict = json.loads(json.dumps(fingerprint or {}, sort_keys=True, default=str))
        self.mask = mask

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, step: int, weights: dict[str, torch.Tensor], opt_state: dict, history: list,
                         carried: dict[str, torch.Tensor] | None = None) -> Path:
        """Write one checkpoint (trainable tensors, optimizer state, history, fingerprint, and the objective's
        carried state: ``carried``, else its current one) atomically."""
        root = Path(self.config.checkpoint_dir)
        final = root / f"step-{step:07d}"
        tmp = root / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({n: w.contiguous() for n, w in weights.items()}, tmp / "trainable.safetensors")
        tensors, scalars = {}, {}
        for idx, st in opt_state["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
                else:
                    scalars[f"{idx}.{k}"] = v
        save_file(tensors, tmp / "optimizer.safetensors")
        carried = self.objective.state_dict() if carried is None else carried  # e.g. ESD's rolling pool
        if carried:
            save_file({k: v.contiguous() for k, v in carried.items()}, tmp / "objective.safetensors")
        meta = {"step": step, "param_groups": opt_state["param_groups"], "scalars": scalars,
                "history": history, "config": asdict(self.config), "fingerprint": self.fingerprint}
        (tmp / "state.json").write_text(json.dumps(meta, default=str))
        fsync_tree(tmp)  # the files reach the disk before the rename makes the checkpoint visible
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        fsync_dir(root)
        for old in sorted(root.glob("step-*"))[:-2]:  # keep the two newest
            shutil.rmtree(old, ignore_errors=True)
        logger.info("checkpoint saved: %s", final)
        return final

    def _keep_last_good(self, bad_step: int, good: tuple | None) -> str:
        """The weights after ``bad_step`` steps gave a non-finite loss (or are non-finite themselves): remove the
        checkpoints from that step on and save ``good`` (the newest state whose loss and weights were finite, kept
        in memory while checkpointing); returns what the user can resume from."""
        if not self.config.checkpoint_dir:
            return "nothing was kept (no checkpoint folder)"
        root = Path(self.config.checkpoint_dir)
        for ckpt in root.glob("step-*"):
            if int(ckpt.name.split("-")[1]) >= bad_step:
                shutil.rmtree(ckpt, ignore_errors=True)
        from accelerate import PartialState

        if good is not None:
            if PartialState().is_main_process:
                self._save_checkpoint(*good)
            PartialState().wait_for_everyone()  # every process raises after this; the state is on disk first
            return (f"the last good state (step {good[0]}) is saved in "
                    f"{Path(self.config.checkpoint_dir) / f'step-{good[0]:07d}'}")
        kept = sorted(root.glob("step-*"))
        return f"the newest good checkpoint is {kept[-1]}" if kept else "no good state was saved"

    def _check_fingerprint(self, ckpt: Path, meta: dict) -> None:
        """Refuse to resume a checkpoint written by a different run: a field that differs is named."""
        saved = meta.get("fingerprint") or {}
        for key, value in self.fingerprint.items():
            if key in saved and saved[key] != value:
                raise ValueError(f"checkpoint {ckpt} belongs to another run: its {key} is {_short(saved[key])}, this "
                                 f"run's is {_short(value)}; resume with the same settings or use another checkpoint "
                                 "folder")
        if int(meta["step"]) > self.config.steps:
            raise ValueError(f"checkpoint {ckpt} is at step {meta['step']}, past this run's steps={self.config.steps}; "
                             f"resume with steps >= {meta['step']}")

    def _load_checkpoint(self, trainable, optimizer) -> tuple[int, list]:
        """The newest complete checkpoint (a damaged one is skipped with a warning), checked against this run."""
        root = Path(self.config.checkpoint_dir)
        found = sorted(root.glob("step-*")) if root.is_dir() else []
        if not found:
            raise FileNotFoundError(f"resume requested but no checkpoint under {root}")
        for ckpt in reversed(found):
            try:
                meta = json.loads((ckpt / "state.json").read_text())
                weights = load_file(ckpt / "trainable.safetensors")
                tensors = load_file(ckpt / "optimizer.safetensors")
                extra = ckpt / "objective.safetensors"
                carried = load_file(extra) if extra.is_file() else {}
            except (OSError, ValueError, SafetensorError) as err:
                logger.warning("checkpoint %s is damaged (%s); trying the one before it", ckpt, " ".join(str(err).split()))
                continue
            break
        else:
            raise ValueError(f"every checkpoint under {root} is damaged; start again without resume")
        self._check_fingerprint(ckpt, meta)
        missing = sorted(set(trainable) - set(weights))
        if missing:
            raise ValueError(f"checkpoint {ckpt} does not match this model/selector: missing {missing[:3]}...")
        self.objective.load_state_dict(carried)  # first: it may refuse the checkpoint before any weight changes
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(weights[n].to(p.device, p.dtype))
        state: dict[int, dict] = {}
        for key, v in list(tensors.items()) + list(meta["scalars"].items()):
            idx, k = key.split(".", 1)
            state.setdefault(int(idx), {})[k] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        for group in optimizer.param_groups:  # this run's settings (a lower lr after a divergence), not the saved ones
            group.update(lr=self.config.lr, weight_decay=self.config.decay())
        logger.info("resumed from %s (step %d)", ckpt, meta["step"])
        return int(meta["step"]), list(meta["history"])

    def _refresh_hessian(self, sophia: Sophia, estimator: str, step_scores: Callable[[], StepScores],
                         batches: dict, params: list[torch.nn.Parameter], accelerator: Any, step: int) -> None:
        """Sophia's Hessian-diagonal estimate on this step's rows: Gauss-Newton-Bartlett on the model's own sampled
        labels, or Hutchinson on the step's unlearning loss; averaged over the processes."""
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step + 104_729)
        with accelerator.autocast():
            if estimator == "gnb":
                h_hat, bs = gnb_estimate(self.adapter, list(batches.values()), params, gen)
            else:
                with twice_differentiable():
                    h_hat, bs = hutchinson_estimate(self.objective(step_scores())[0], params, gen)
        if accelerator.num_processes > 1:
            h_hat = _mean_tensors(accelerator, h_hat)
        sophia.update_hessian(h_hat, bs)

    # ------------------------------------------------------------------ the loop
    def run(self) -> LoopResult:
        cfg = self.config
        modules = self.adapter.modules()
        if cfg.gradient_checkpointing and not any(_supports_checkpointing(m) for m in modules.values()):
            raise ValueError(f"gradient_checkpointing: none of the model's modules ({', '.join(modules)}) supports it")
        accelerator = _accelerator(cfg.precision())
        world, rank = accelerator.num_processes, accelerator.process_index
        sizes = {"forget": cfg.batch_size, "retain": cfg.retain_batch_size or cfg.batch_size}  # rows per step
        for split, size in sizes.items():
            if size % world:
                option = "retain_batch_size" if split == "retain" and cfg.retain_batch_size else "batch_size"
                raise ValueError(f"{option} {size} does not split over {world} processes: give a multiple of {world} "
                                 "(each process takes an equal share of every step's rows)")
        share = {split: size // world for split, size in sizes.items()}  # this process's rows of each step's batch
        shards = {split: {} if world == 1 else {"shard": (rank * share[split], size)} for split, size in sizes.items()}
        for m in modules.values():
            m.to(accelerator.device)
        allowed = getattr(self.adapter, "adapter_weights", lambda: None)()  # a peft model: only its adapter
        trainable = self.selector.apply(modules, allowed=allowed, seed=cfg.seed * 1_000_003 + 3_571)
        masked = None
        if self.mask is not None:
            if self.selector.lora is not None:
                raise ValueError("a weight mask addresses the model's own weights; it cannot restrict LoRA adapters")
            masked = MaskedUpdate(self.mask, trainable)
            trainable = masked.params  # tensors the mask leaves nothing of do not train at all
        needs_ref = self.objective.needs_reference or self.adversary is not None
        reference = make_reference(modules, trainable, self.selector) if needs_ref else None
        raw_optimizer = _optimizer(cfg, list(trainable.values()))
        optimizer = accelerator.prepare(raw_optimizer)
        estimator = estimator_for(self.adapter, cfg.hessian) if cfg.optimizer == "sophia" else None
        start, history = 0, []
        if cfg.checkpoint_dir:  # what a checkpoint must share with this run; the model before any step
            self.fingerprint.update(seed=cfg.seed, batch_size=cfg.batch_size, retain_batch_size=sizes["retain"],
                                    forget=_digest_rows(self.forget),
                                    retain=_digest_rows(self.retain),
                                    mask=self.mask.digest() if self.mask is not None else None,
                                    model=fingerprint_tensors(trainable))
            if not cfg.resume and any(Path(cfg.checkpoint_dir).glob("step-*")):
                raise ValueError(f"checkpoint folder {cfg.checkpoint_dir} holds an earlier run's checkpoints: "
                                 "resume it, or remove them (or choose another folder) to start over")
        # reference NLL per example, reused across steps (deterministic adapters); not when an adversary rewrites
        # the forget batch every step (the cached value would belong to another input)
        reference_cache: dict | None = {} if self.adversary is None else None
        t0 = time.time()  # the run's seconds include what the objective prepares (ESD's bank or pool)
        data = {"forget": self.forget, "retain": self.retain}
        self.objective.prepare(self.adapter, reference, data, seed=cfg.seed)  # before a resume restores its state
        checkpointed: list[str] = []
        caller_rng = contextlib.ExitStack()  # each step seeds the global RNG; the caller's state comes back after
        caller_rng.enter_context(torch.random.fork_rng(devices=range(torch.cuda.device_count())))
        try:
            if cfg.gradient_checkpointing:
                _checkpointing_on(modules, checkpointed)
            if cfg.resume:
                start, history = self._load_checkpoint(trainable, optimizer)
            good: tuple | None = None  # (step, weights, optimizer, history, objective state) before the newest step
            for m in modules.values():
                m.train()
            for step in progress(range(start, cfg.steps), desc="unlearning", initial=start, total=cfg.steps,
                                 disable=not cfg.show_progress or not accelerator.is_main_process):
                torch.manual_seed(cfg.seed * 1_000_003 + step + 52_361)  # dropout: a function of (seed, step) too
                ids = {"forget": batch_indices(len(self.forget), step, sizes["forget"], cfg.seed, 0)}
                if self.retain is not None and len(self.retain) > 0:
                    ids["retain"] = batch_indices(len(self.retain), step, sizes["retain"], cfg.seed, 1)
                if world > 1:  # the step's rows are the same on every process; each takes its share
                    ids = {split: idx[rank * share[split]:(rank + 1) * share[split]] for split, idx in ids.items()}
                rows = {split: [data[split][i] for i in idx] for split, idx in ids.items()}
                batches = {split: self.adapter.collate(r, **shards[split]) for split, r in rows.items()}
                carried = self.objective.state_dict() if cfg.checkpoint_dir else {}  # as after `step` steps
                self.objective.begin_step(step)
                if self.adversary is not None and step >= cfg.adversary_warmup:
                    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + 7_919)
                    attack = self.adversary.attack(self.adapter, batches["forget"], gen, reference=reference)
                    batches["forget"] = attack.batch
                def step_scores() -> StepScores:
                    return StepScores(self.adapter, reference, batches, seed=cfg.seed * 1_000_003 + step, rows=rows,
                                      row_ids=ids, reference_cache=reference_cache)

                if estimator is not None and step % cfg.hessian_every == 0:  # Sophia's curvature estimate
                    self._refresh_hessian(raw_optimizer, estimator, step_scores, batches, list(trainable.values()),
                                          accelerator, step)
                scores = step_scores()
                with accelerator.autocast():
                    loss, logs = self.objective(scores)
                step_loss = float(loss.detach())
                if world > 1:  # every process logs (and checks) the step's loss over all rows
                    step_loss, *terms = _mean_across(accelerator, [step_loss, *logs.values()])
                    logs = dict(zip(logs, terms))
                if not math.isfinite(step_loss):
                    # the weights after `step` steps produced it: the last good state is the one before
                    raise NonFiniteLossError(f"loss became {step_loss} at step {step + 1} (terms: "
                                             f"{ {k: round(v, 4) for k, v in logs.items()} }); "
                                             f"{self._keep_last_good(step, good)}{RETRY_HINT}")
                if cfg.checkpoint_dir:  # loss and weights finite: the state to fall back to if this step breaks them
                    good = (step, *_state(trainable, optimizer, snapshot=True), list(history), carried)
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                if world > 1:
                    _average_gradients(accelerator, list(trainable.values()))
                if masked is not None:
                    masked.mask_gradients()
                if cfg.grad_clip:
                    accelerator.clip_grad_norm_(list(trainable.values()), cfg.grad_clip)
                for group in raw_optimizer.param_groups:  # a function of the step: a resumed run repeats it
                    group["lr"] = cfg.lr_at(step)
                optimizer.step()
                if masked is not None:
                    masked.restore()
                logs = {"step": step + 1, "loss": step_loss, **logs}
                history.append(logs)
                if cfg.log_every and (step + 1) % cfg.log_every == 0:
                    logger.info("step %d %s", step + 1, {k: round(v, 5) for k, v in logs.items() if k != "step"})
                if self.on_step:
                    self.on_step(step + 1, logs)
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                    weights, opt_state = _state(trainable, optimizer)
                    bad = [n for n, w in weights.items() if not bool(torch.isfinite(w).all())]
                    if bad:
                        raise NonFiniteLossError(f"weights became non-finite at step {step + 1} ({bad[0]}); "
                                                 f"{self._keep_last_good(step + 1, good)}{RETRY_HINT}")
                    if accelerator.is_main_process:  # every process holds the same weights; one writes them
                        self._save_checkpoint(step + 1, weights, opt_state, history)
                    accelerator.wait_for_everyone()
        finally:  # the adapter samples with its own weights again, even after an error
            self.objective.finish()
            _checkpointing_off({n: modules[n] for n in checkpointed})
            caller_rng.close()
        for m in modules.values():
            m.eval()
            m.requires_grad_(False)
        return LoopResult(steps=cfg.steps, seconds=round(time.time() - t0, 3), history=history,
                          trainable_parameters=(sum(p.numel() for p in trainable.values()) if masked is None
                                                else masked.kept()),
                          reference=reference.name if reference else None)
