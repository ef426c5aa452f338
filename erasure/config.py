"""Config dataclasses and strict construction from dicts (unknown keys fail loudly)."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

OPTIMIZERS = ("adam", "adamw", "sgd", "sophia")
HESSIAN_ESTIMATORS = ("auto", "gnb", "hutchinson")  # Sophia's (erasure/sophia.py)
SCHEDULES = ("constant", "cosine", "linear")


def from_dict(cls: type[T], values: Mapping[str, Any] | None, what: str | None = None) -> T:
    """Build dataclass ``cls`` from ``values``; raise ``ValueError`` naming any unknown key.

    Args:
        cls: a dataclass type.
        values: keyword values (None means all defaults).
        what: how to call the config in the error (default: the class name).
    """
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what or cls.__name__} option(s): {', '.join(unknown)}; "
                         f"valid options: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        problem = _type_problem(value, hints.get(key, Any))
        if problem:
            raise ValueError(f"{what or cls.__name__} option {key}={value!r}: {problem}")
    return cls(**values)


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (None when it fits): numbers must be real numbers and
    finite, not strings or booleans; only the simple annotations of config fields are checked."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, h) for h in typing.get_args(hint)]
        return None if any(p is None for p in problems) else next(p for p in problems if p)
    if hint is type(None):
        return None if value is None else "expected None"
    if hint is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {type(value).__name__}"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else \
            f"expected an integer, got {type(value).__name__}"
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {type(value).__name__}"
        return None if math.isfinite(value) else "expected a finite number"
    if hint is str:  # a path object is fine where a string is expected (folders)
        return None if isinstance(value, (str, os.PathLike)) else f"expected a string, got {type(value).__name__}"
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        return None if isinstance(value, (list, tuple)) else f"expected a list, got {type(value).__name__}"
    if origin is dict or hint is dict:
        return None if isinstance(value, dict) else f"expected a mapping, got {type(value).__name__}"
    return None


@dataclass
class TrainConfig:
    """The unlearning loop's settings (shared by every method and modality).

    Args:
        steps: optimizer steps.
        lr: learning rate (the peak one under a schedule).
        schedule: "constant", or the learning rate decaying to 0 over the steps: "cosine" (SPUL's), "linear".
        batch_size: forget (and retain) examples per step.
        retain_batch_size: retain examples per step when they should differ from ``batch_size`` (None: the same), e.g.
            SPUL's code, whose batches mix forget and retain rows in proportion to the two sets.
        seed: seeds data order and every random draw; the same seed gives the same run.
        optimizer: "adam" | "adamw" | "sgd" | "sophia" (SOUL's second-order optimizer, ``erasure/sophia.py``).
        weight_decay: optimizer weight decay (None: the optimizer's default, 0 except Sophia's 0.1 from SOUL).
        betas: the optimizer's (b1, b2) (None: its default; Adam (0.9, 0.999), Sophia (0.9, 0.95) from SOUL).
        rho: Sophia's clipping scale (SOUL: 0.04).
        hessian_every: Sophia refreshes its Hessian-diagonal estimate every this many steps, the first before
            step 1 (Sophia's k = 10).
        hessian: Sophia's estimator: "auto" (Gauss-Newton-Bartlett where the model has categorical outputs,
            else Hutchinson), "gnb" or "hutchinson".
        grad_clip: max gradient norm (None: no clipping).
        mixed_precision: "no" | "bf16" | "fp16" (autocast through accelerate); None: accelerate's own setting
            (``accelerate launch --mixed_precision`` / ``accelerate config``, else "no"). fp16 needs a CUDA GPU.
        checkpoint_every: save a resumable checkpoint every N steps (0: never).
        checkpoint_dir: where checkpoints go (required when checkpoint_every > 0 or resume).
        resume: continue from the newest checkpoint in checkpoint_dir.
        log_every: log the losses every N steps.
        show_progress: show a tqdm bar.
        adversary_warmup: steps without the method's adversary before adversarial training starts.
        gradient_checkpointing: recompute the model's activations in the backward pass instead of keeping them
            (diffusers UNets, transformers models): less peak memory for about one more forward pass per step.
    """

    steps: int = 100
    lr: float = 1e-5
    schedule: str = "constant"
    batch_size: int = 1
    retain_batch_size: int | None = None
    seed: int = 0
    optimizer: str = "adam"
    weight_decay: float | None = None
    betas: list[float] | None = None
    rho: float = 0.04
    hessian_every: int = 10
    hessian: str = "auto"
    grad_clip: float | None = None
    mixed_precision: str | None = None
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    resume: bool = False
    log_every: int = 10
    show_progress: bool = True
    adversary_warmup: int = 0
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        for key, value in dataclasses.asdict(self).items():
            problem = _type_problem(value, typing.get_type_hints(TrainConfig)[key])
            if problem:
                raise ValueError(f"training option {key}={value!r}: {problem}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.retain_batch_size is not None and self.retain_batch_size < 1:
            raise ValueError(f"retain_batch_size must be >= 1 (or None: batch_size), got {self.retain_batch_size}")
        for key in ("checkpoint_every", "log_every", "adversary_warmup"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.betas is not None and (len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.rho <= 0 or self.hessian_every < 1:
            raise ValueError(f"Sophia needs rho > 0 and hessian_every >= 1, got rho={self.rho}, "
                             f"hessian_every={self.hessian_every}")
        if self.hessian not in HESSIAN_ESTIMATORS:
            raise ValueError(f"unknown hessian estimator {self.hessian!r}; known: {', '.join(HESSIAN_ESTIMATORS)}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 (or None: no clipping), got {self.grad_clip}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        self.precision()  # validates, accelerate's environment setting included
        if (self.checkpoint_every > 0 or self.resume) and not self.checkpoint_dir:
            raise ValueError("checkpoint_every/resume need a checkpoint_dir")

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based) under the schedule."""
        done = step / self.steps
        factor = {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * done)), "linear": 1 - done}[self.schedule]
        return self.lr * factor

    def decay(self) -> float:
        """The weight decay this run uses: ``weight_decay``, else the optimizer's default (Sophia: SOUL's 0.1)."""
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.1 if self.optimizer == "sophia" else 0.0

    def precision(self) -> str:
        """The autocast precision this run uses: ``mixed_precision``, else accelerate's setting, else "no"."""
        value = self.mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        source = "mixed_precision" if self.mixed_precision else "ACCELERATE_MIXED_PRECISION"
        if value not in ("no", "bf16", "fp16"):
            raise ValueError(f"{source} must be no, bf16 or fp16, got {value!r}")
        if value == "fp16":
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"{source}=fp16 needs a CUDA GPU (on this machine it would silently train in fp32); "
                                 "use bf16, which works on CPUs too, or no")
        return value
