"""``erase()``: the one entry point for every method and modality."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from erasure.config import TrainConfig, from_dict
from erasure.loop import LoopResult, Unlearner
from erasure.registry import adapter_for, get_method
from erasure.selectors import LoraSpec, Selector, resolve_selector

logger = logging.getLogger(__name__)


@dataclass
class ErasureResult:
    """The erased model (inside its adapter) plus what the run did.

    ``save(path)`` writes the model in its ecosystem's format (diffusers component folders for diffusion,
    transformers/peft for LLMs) and ``erasure.json`` with the method, options and loss history.
    """

    adapter: Any
    method: str
    concept: str | None
    method_config: dict
    train_config: dict
    loop: LoopResult
    info: dict = field(default_factory=dict)

    @property
    def model(self) -> Any:
        """The edited model object (a ``T2IPipeline`` for diffusion, the causal LM for LLMs)."""
        return getattr(self.adapter, "pipe", None) or getattr(self.adapter, "model", None)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.adapter.save(path)
        summary = {"method": self.method, "concept": self.concept, "method_config": self.method_config,
                   "train_config": self.train_config, "seconds": self.loop.seconds, "steps": self.loop.steps,
                   "trainable_parameters": self.loop.trainable_parameters, "reference": self.loop.reference,
                   "history": self.loop.history, **self.info}
        (path / "erasure.json").write_text(json.dumps(summary, indent=2))
        return path


def erase(
    model: Any,
    concept: str | None = None,
    method: str = "esd-x",
    *,
    tokenizer: Any = None,
    forget: Sequence[Any] | None = None,
    retain: Sequence[Any] | None = None,
    selector: str | Selector | Sequence[str] | None = None,
    lora: LoraSpec | dict | None = None,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    train: dict | None = None,
    **method_options: Any,
) -> ErasureResult:
    """Erase a concept (diffusion) or a data subset (LLM) with a registered method.

    Args:
        model: a ``T2IPipeline``, a diffusers Stable Diffusion pipeline, or (LLM) a transformers causal LM.
        concept: the concept to erase (diffusion); its prompts become the forget set unless ``forget`` is given.
        method: a registered method name (``erasure.registry.method_names()``).
        tokenizer: the LLM's tokenizer (LLM only).
        forget: forget records (prompts / {"prompt", "image"} rows for diffusion; QA records for LLMs).
        retain: retain records (defaults to the model's other concepts when it ships a concept vocabulary).
        selector: a preset name, regex list or ``Selector`` (default: the method's, else the adapter's).
        lora: train LoRA adapters (peft) instead of the selected weights: a ``LoraSpec`` or its dict.
        steps, lr, batch_size: loop settings (default: the method's paper settings).
        seed: seeds everything; the same call gives the same weights.
        train: any other ``TrainConfig`` option (checkpoint_dir, checkpoint_every, resume, mixed_precision...).
        **method_options: the method's own options (e.g. ``eta=1.0`` for ESD, ``beta=0.1`` for NPO).

    Returns:
        An ``ErasureResult``; ``result.save(path)`` writes the erased model.
    """
    spec = get_method(method)
    method_cfg = from_dict(spec.config_cls, method_options, what=f"{method!r} method")
    adapter_kwargs = {"tokenizer": tokenizer} if tokenizer is not None else {}
    adapter = adapter_for(model, **adapter_kwargs)
    if spec.modality not in ("any", adapter.modality):
        raise ValueError(f"method {method!r} is for {spec.modality} models, but the model is a {adapter.modality} model")
    if concept is not None and not str(concept).strip():
        raise ValueError("concept is empty: name the concept to erase")
    if forget is None:
        if concept is None:
            raise ValueError("give a concept to erase or a forget set")
        forget = adapter.forget_prompts(concept)
    if retain is None and concept is not None and hasattr(adapter, "retain_prompts"):
        retain = adapter.retain_prompts(concept) or None

    loop_values = {**spec.train_defaults, **(train or {}), "seed": seed}
    for key, value in (("steps", steps), ("lr", lr), ("batch_size", batch_size)):
        if value is not None:
            loop_values[key] = value
    train_cfg = from_dict(TrainConfig, loop_values, what="training")

    if selector is None and callable(spec.selector):
        sel = spec.selector(adapter, method_cfg)
    else:
        sel = resolve_selector(selector or spec.selector or adapter.default_selector)
    if lora is not None:
        sel = Selector(include=sel.include, exclude=sel.exclude,
                       lora=lora if isinstance(lora, LoraSpec) else from_dict(LoraSpec, lora, what="LoRA"))
    objective = spec.build(method_cfg, adapter)
    if "retain" not in objective.splits:
        retain = None
    logger.info("erase: method=%s concept=%s forget=%d retain=%d steps=%d lr=%g", method, concept, len(forget),
                len(retain or []), train_cfg.steps, train_cfg.lr)
    adversary = spec.adversary(method_cfg) if spec.adversary is not None else None
    loop = Unlearner(adapter, objective, sel, train_cfg, forget=forget, retain=retain, adversary=adversary).run()
    if sel.lora is not None:
        from erasure.selectors import merge_lora

        merge_lora(adapter.modules())
    return ErasureResult(adapter=adapter, method=method, concept=concept, method_config=asdict(method_cfg),
                         train_config=asdict(train_cfg), loop=loop,
                         info={"selector": {"include": sel.include, "exclude": sel.exclude,
                                            "lora": asdict(sel.lora) if sel.lora else None}})
