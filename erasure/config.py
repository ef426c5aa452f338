"""Config dataclasses and strict construction from dicts (unknown keys fail loudly)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


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
    return cls(**values)


@dataclass
class TrainConfig:
    """The unlearning loop's settings (shared by every method and modality).

    Args:
        steps: optimizer steps.
        lr: learning rate.
        batch_size: forget (and retain) examples per step.
        seed: seeds data order and every random draw; the same seed gives the same run.
        optimizer: "adam" | "adamw" | "sgd".
        weight_decay: optimizer weight decay.
        grad_clip: max gradient norm (None: no clipping).
        mixed_precision: "no" | "bf16" | "fp16" (passed to accelerate).
        checkpoint_every: save a resumable checkpoint every N steps (0: never).
        checkpoint_dir: where checkpoints go (required when checkpoint_every > 0 or resume).
        resume: continue from the newest checkpoint in checkpoint_dir.
        log_every: log the losses every N steps.
        show_progress: show a tqdm bar.
        adversary_warmup: steps without the method's adversary before adversarial training starts.
    """

    steps: int = 100
    lr: float = 1e-5
    batch_size: int = 1
    seed: int = 0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    mixed_precision: str = "no"
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    resume: bool = False
    log_every: int = 10
    show_progress: bool = True
    adversary_warmup: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: adam, adamw, sgd")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if (self.checkpoint_every > 0 or self.resume) and not self.checkpoint_dir:
            raise ValueError("checkpoint_every/resume need a checkpoint_dir")
