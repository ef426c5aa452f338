"""``erase()``: the one entry point for every method and modality."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from erasure.adversary import Adversary
from erasure.config import TrainConfig, from_dict
from erasure.data import as_rows, is_saved_dataset
from erasure.files import atomic_dir, check_output_dir, report_json
from erasure.loop import LoopResult, Unlearner
from erasure.masks import as_mask
from erasure.models import apply_recommended, recommended_file, recommended_settings
from erasure.registry import Method, get_attack, get_method, modality_for, require_attack_modality
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
    lora: dict | None = None

    @property
    def model(self) -> Any:
        """The edited model object (a ``T2IPipeline`` for diffusion, the causal LM for LLMs)."""
        return self.adapter.model

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the erased model and ``erasure.json`` to ``path``, atomically (a hidden sibling folder, flushed,
        then renamed into place: a failure leaves no half-written model).

        Args:
            path: the output folder; it may not be the model's own folder (or inside it), and an existing,
                non-empty one is refused unless ``overwrite``. The run's own checkpoints in it are kept.
            overwrite: replace an existing output.

        Returns:
            ``path``.
        """
        path = Path(path)
        carry = _checkpoints_inside(path, self.train_config.get("checkpoint_dir"))
        check_output_dir(path, sources=[getattr(self.adapter, "source", None)], overwrite=overwrite, keep=carry,
                         what="output folder")
        with atomic_dir(path, overwrite=overwrite, carry=carry) as tmp:
            self._write(tmp)
        return path

    def _write(self, path: Path) -> None:
        self.adapter.save(path)  # the model with any LoRA merged in
        if self.lora:  # and the adapters themselves, in the ecosystem's adapter format
            if not hasattr(self.adapter, "save_lora"):
                raise ValueError(f"{type(self.adapter).__name__} has no save_lora: its LoRA adapters cannot be written")
            self.adapter.save_lora(path / "lora", self.lora)
        source = getattr(self.adapter, "source", None)
        summary = {"method": self.method, "concept": self.concept,
                   "source": str(Path(source).resolve()) if source else None,
                   "method_config": self.method_config,
                   "train_config": self.train_config, "seconds": self.loop.seconds, "steps": self.loop.steps,
                   "trainable_parameters": self.loop.trainable_parameters, "reference": self.loop.reference,
                   "history": self.loop.history, **self.info}
        (path / "erasure.json").write_text(report_json(summary))
        if self.loop.history:
            from erasure.plots import loss_curves

            loss_curves(self.loop.history, path / "loss.png", title=f"{self.method} ({self.concept or 'forget set'})")


def _checkpoints_inside(out: str | os.PathLike, checkpoint_dir: str | os.PathLike | None) -> list[str]:
    """[the checkpoint folder's name] when it sits directly in ``out`` (kept when the model is written there)."""
    if checkpoint_dir and Path(checkpoint_dir).expanduser().resolve().parent == Path(out).expanduser().resolve():
        return [Path(checkpoint_dir).name]
    return []


def erase(
    model: Any,
    concept: str | None = None,
    method: str = "esd-x",
    *,
    tokenizer: Any = None,
    forget: Any = None,
    retain: Any = None,
    selector: str | Selector | Sequence[str] | None = None,
    lora: LoraSpec | dict | None = None,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    train: dict | None = None,
    adversary: str | Adversary | None = None,
    adversary_options: dict | None = None,
    recommended: bool = True,
    mask: Any = None,
    free_text: bool = False,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    on_step: Callable[[int, dict], None] | None = None,
    **method_options: Any,
) -> ErasureResult:
    """Erase a concept (diffusion) or a data subset (LLM) with a registered method.

    Settings come from, in order of precedence: the explicit arguments, the model folder's ``recommended.json``
    (per method, per concept; ``recommended=False`` skips it), the method's paper defaults. The CLI calls this
    same function, so both entry points train the same model for the same seed.

    Args:
        model: a ``T2IPipeline`` or diffusers Stable Diffusion pipeline, a transformers causal LM, or an adapter;
            its modality is detected once (``erasure.registry.modality_for``).
        concept: the concept to erase (diffusion); its prompts become the forget set unless ``forget`` is given.
        method: a registered method name (``erasure.registry.method_names()``).
        tokenizer: the LLM's tokenizer (LLM only).
        forget: forget records (prompts / {"prompt", "image"} rows for diffusion; QA records for LLMs) as a list,
            a ``datasets`` Dataset, a DatasetDict with one split, an IterableDataset or a ``save_to_disk`` folder
            (``erasure.data.as_rows``); for LLMs also a mini-TOFU split name or a TOFU-schema file.
        retain: retain records (defaults to the model's other concepts / the forget split's retain split).
        selector: a preset name, regex list or ``Selector`` (default: the method's, else the adapter's).
        lora: train LoRA adapters (peft) instead of the selected weights: a ``LoraSpec`` or its dict.
        steps, lr, batch_size: loop settings.
        seed: seeds everything; the same call gives the same weights.
        train: any other ``TrainConfig`` option (checkpoint_dir, checkpoint_every, resume, mixed_precision...).
        adversary: a registered attack name (or an ``Adversary``) that rewrites every forget batch before the
            objective sees it (adversarial unlearning); default: the method's own (AdvUnlearn's prefix attack).
        adversary_options: options of a named ``adversary``.
        recommended: apply the model folder's ``recommended.json``.
        mask: a weight mask (``erasure.masks.Mask``, or its file or folder): only its entries of the selected
            tensors train, the rest stay byte-identical (WAGLE, SalUn).
        free_text: erase ``concept`` as free text even though the model ships a concept vocabulary without it.
        out: save the erased model there when training ends (``ErasureResult.save``); checked before the first
            step: not the model's folder nor inside it, writable, and empty unless ``overwrite``.
        overwrite: let ``out`` replace an existing, non-empty folder.
        on_step: called ``(step, logs)`` after every training step (1-based step; the step's loss terms), e.g.
            to evaluate the model along the way; the model is in training mode then.
        **method_options: the method's own options (e.g. ``eta=1.0`` for ESD, ``beta=0.1`` for NPO).

    Returns:
        An ``ErasureResult``; ``result.save(path)`` writes the erased model.
    """
    spec = get_method(method)
    weight_mask = as_mask(mask) if mask is not None else None
    modality = modality_for(model)
    if spec.modality not in ("any", modality.name):
        raise ValueError(f"method {method!r} is for {spec.modality} models, but the model is a {modality.name} model")
    adapter = modality.adapter(model, **({"tokenizer": tokenizer} if tokenizer is not None else {}))
    if out is not None:  # a resumed run's own checkpoints may already sit in out
        keep = _checkpoints_inside(out, (train or {}).get("checkpoint_dir")) if (train or {}).get("resume") else []
        check_output_dir(out, sources=[getattr(adapter, "source", None)], overwrite=overwrite, keep=keep,
                         what="output folder")
    if concept is not None and not str(concept).strip():
        raise ValueError("concept is empty: name the concept to erase")
    forget, retain = _rows(forget, "forget"), _rows(retain, "retain")
    forget, retain = modality.erase_data(adapter, concept=concept, forget=forget, retain=retain, free_text=free_text)

    # settings: explicit arguments > the model folder's recommended.json > the method's paper defaults
    train_values = {**(train or {}), **({"batch_size": batch_size} if batch_size is not None else {})}
    source = getattr(adapter, "source", None)
    file = recommended_file(source) if recommended and source is not None else None
    if file is not None:
        steps, lr, train_values, method_options = apply_recommended(str(source), method, steps, lr, train_values,
                                                                    method_options, concept)
    if concept is not None and "concept" in getattr(spec.config_cls, "__dataclass_fields__", {}):
        method_options = {"concept": concept, **method_options}  # a method that edits the concept's words (UCE, CA)
    method_cfg = from_dict(spec.config_cls, method_options, what=f"{method!r} method")
    loop_values = {**spec.train_defaults, **train_values, "seed": seed}
    for key, value in (("steps", steps), ("lr", lr)):
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
    if spec.solve is not None:  # a closed-form edit (UCE): no objective, no loop, no adversary
        if sel.lora is not None or adversary is not None or weight_mask is not None:
            raise ValueError(f"method {method!r} is a closed-form edit: it takes no LoRA, no adversary and no mask")
        ignored = [k for k, v in (("steps", steps), ("lr", lr), ("batch_size", batch_size),
                                  ("adversary_options", adversary_options), ("on_step", on_step)) if v]
        if ignored:
            logger.warning("%s is a closed-form edit: %s do not apply and are ignored", method, ", ".join(ignored))
        loop, solved = _solve(spec, adapter, method_cfg, sel, concept, forget, retain)
        inner = second = None
    else:
        objective = spec.build(method_cfg, adapter)
        if "retain" not in objective.splits:
            retain = None
        if weight_mask is None and spec.mask is not None:  # the method's own mask (SalUn's saliency)
            from erasure.masks import compute

            weight_mask = compute(adapter, forget=forget, retain=retain, selector=sel, seed=seed,
                                  **spec.mask(method_cfg))
        inner = _adversary(adversary, adversary_options, spec, method_cfg, modality.name)
        logger.info("erase: method=%s concept=%s forget=%d retain=%d steps=%d lr=%g adversary=%s", method, concept,
                    len(forget), len(retain or []), train_cfg.steps, train_cfg.lr, getattr(inner, "name", None))
        fingerprint = {"method": method, "concept": concept, "method_options": asdict(method_cfg),
                       "selector": [sel.include, sel.exclude, asdict(sel.lora) if sel.lora else None],
                       "adversary": getattr(inner, "name", None)}
        start = {}
        if spec.after is not None and sel.lora is None:  # the second stage needs the weights training started from
            from erasure.adapter import named_parameters

            start = {n: p.detach().clone() for n, p in named_parameters(adapter.modules()).items() if sel.matches(n)}
        loop = Unlearner(adapter, objective, sel, train_cfg, forget=forget, retain=retain, adversary=inner,
                         fingerprint=fingerprint, mask=weight_mask, on_step=on_step).run()
        solved = None
        second = spec.after(adapter, method_cfg, start) if spec.after is not None else None
    lora_state = None
    if sel.lora is not None:
        from erasure.selectors import export_lora, merge_lora

        lora_state = export_lora(adapter.modules())
        merge_lora(adapter.modules())
    info = {"modality": modality.name,
            "selector": {"include": sel.include, "exclude": sel.exclude,
                         "lora": asdict(sel.lora) if sel.lora else None},
            "adversary": getattr(inner, "name", None),
            "mask": {**weight_mask.info, "digest": weight_mask.digest()} if weight_mask is not None else None,
            "recommended": str(file) if file else None,
            "recommended_settings": (recommended_settings(str(source), method, concept, (train or {}).get("optimizer"))
                                     if file else None),
            **({"closed_form": solved} if solved is not None else {}),
            **({"second_stage": second} if second is not None else {})}
    result = ErasureResult(adapter=adapter, method=method, concept=concept, method_config=asdict(method_cfg),
                           train_config=asdict(train_cfg), loop=loop, info=info, lora=lora_state)
    if out is not None:
        from accelerate import PartialState

        state = PartialState()
        if state.is_main_process:  # several processes trained the same weights: one writes them
            result.save(out, overwrite=overwrite)
        state.wait_for_everyone()
    return result


def _rows(data: Any, what: str) -> Any:
    """Rows from any ``datasets`` type or saved folder; other strings (split names, files) stay for the modality."""
    if isinstance(data, (str, os.PathLike)) and not is_saved_dataset(data):
        return str(data)
    return as_rows(data, what)


def _solve(spec: Method, adapter: Any, cfg: Any, sel: Selector, concept: str | None, forget: Any,
           retain: Any) -> tuple[LoopResult, dict]:
    """Run a closed-form method: (the loop's record of it, what the method reports)."""
    from erasure.adapter import named_parameters

    logger.info("erase: method=%s (closed form) concept=%s forget=%d retain=%d", spec.name, concept, len(forget),
                len(retain or []))
    t0 = time.perf_counter()
    solved = spec.solve(adapter, cfg, forget=forget, retain=retain, selected=sel)
    edited = sum(p.numel() for n, p in named_parameters(adapter.modules()).items() if sel.matches(n))
    return LoopResult(steps=0, seconds=round(time.perf_counter() - t0, 3), trainable_parameters=edited), solved


def _adversary(adversary: str | Adversary | None, options: dict | None, spec: Method, method_cfg: Any,
               modality: str) -> Adversary | None:
    """The inner attack: the one named (built from the attack registry), else the method's own."""
    if adversary is None:
        if options:
            raise ValueError("adversary_options given without an adversary")
        return spec.adversary(method_cfg) if spec.adversary is not None else None
    if isinstance(adversary, str):
        return get_attack(adversary, for_modality=modality, **(options or {}))
    return require_attack_modality(adversary, modality)
