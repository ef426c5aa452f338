"""Parameter selectors: which weights may move. Regexes over ``"{component}.{param}"`` names, or LoRA.

Presets name the published choices: ``esd-x`` (UNet cross-attention, Gandikota et al. 2023), ``esd-u``
(UNet except cross-attention), ``esd-x-strict`` (cross-attention keys/values), ``text-encoder`` (all text
transformer blocks + final layer norm, not the embeddings: AdvUnlearn), ``all``. Everything a selector does
not choose gets ``requires_grad=False`` and stays byte-identical.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from erasure.adapter import named_parameters

logger = logging.getLogger(__name__)

PRESETS: dict[str, dict] = {
    "esd-x": {"include": [r"^unet\..*\.attn2\."]},
    "esd-x-strict": {"include": [r"^unet\..*\.attn2\.to_[kv]\."]},
    "esd-u": {"include": [r"^unet\."], "exclude": [r"\.attn2\."]},
    "esd-all": {"include": [r"^unet\."]},
    "text-encoder": {"include": [r"^text_encoder\..*(encoder\.layers\.|final_layer_norm)"]},
    "all": {"include": [r".*"]},
}


@dataclass
class LoraSpec:
    """LoRA through peft on the modules the selector's regexes pick (module names, not parameter names).

    Args:
        rank: LoRA rank r.
        alpha: LoRA scaling alpha.
        dropout: LoRA dropout.
        target_modules: module-name suffixes peft should wrap (linear layers), e.g. ``["to_k", "to_v"]``;
            None wraps every ``nn.Linear`` under the selected names.
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None


@dataclass
class Selector:
    """Regex selection of trainable parameters (optionally through LoRA).

    Args:
        include: regexes; a parameter is selected if any matches its ``component.name``.
        exclude: regexes; a match removes a parameter even if included.
        lora: when set, freeze the selected weights and train peft LoRA adapters on the selected linears.
        adapters_off: the frozen reference is the model with its adapter layers switched off (a soft prompt a
            method adds: SPUL's original model), not a snapshot of the selected tensors' starting values.
    """

    include: list[str] = field(default_factory=lambda: [r".*"])
    exclude: list[str] = field(default_factory=list)
    lora: LoraSpec | None = None
    adapters_off: bool = False

    @classmethod
    def preset(cls, name: str, lora: LoraSpec | None = None) -> "Selector":
        if name not in PRESETS:
            raise ValueError(f"unknown selector preset {name!r}; known: {', '.join(sorted(PRESETS))}")
        return cls(**PRESETS[name], lora=lora)

    def matches(self, name: str) -> bool:
        return any(re.search(r, name) for r in self.include) and not any(re.search(r, name) for r in self.exclude)

    def apply(self, modules: dict[str, nn.Module], allowed: set[str] | None = None,
              seed: int = 0) -> dict[str, nn.Parameter]:
        """Freeze everything, then enable (or LoRA-wrap) the selection. Returns the trainable parameters.

        Args:
            modules: the adapter's components.
            allowed: when set, the only parameter names that may train (a user's peft model: its adapter).
            seed: LoRA's random initialisation (its A matrices) is drawn from this seed, not from whatever state the
                process's random generator is in, so an erase repeats whatever ran before it.
        """
        for m in modules.values():
            m.requires_grad_(False)
        if self.lora is not None:
            if allowed is not None:
                raise ValueError("the model already carries a peft adapter, which is what trains: drop the LoRA "
                                 "option (or pass the base model)")
            with torch.random.fork_rng():  # the process's generator state is left as it was
                torch.manual_seed(seed)
                return self._apply_lora(modules)
        chosen = {n: p for n, p in named_parameters(modules).items()
                  if self.matches(n) and (allowed is None or n in allowed)}
        if not chosen and allowed is not None:
            raise ValueError(f"selector {self.include} matched none of the peft adapter's parameters (only the "
                             "adapter of a PeftModel trains); choose a selector that covers its adapted layers")
        if not chosen:
            raise ValueError(f"selector {self.include} (exclude {self.exclude}) matched no parameter; "
                             f"components: {', '.join(modules)}")
        for p in chosen.values():
            p.requires_grad_(True)
        logger.info("selector: %d tensors, %d parameters trainable", len(chosen),
                    sum(p.numel() for p in chosen.values()))
        return chosen

    def _apply_lora(self, modules: dict[str, nn.Module]) -> dict[str, nn.Parameter]:
        from peft import LoraConfig, inject_adapter_in_model

        spec = self.lora
        linear: tuple[type, ...] = (nn.Linear,)
        try:  # GPT-2 style models use transformers' Conv1D as their linear layer; peft supports it
            from transformers.pytorch_utils import Conv1D

            linear = (nn.Linear, Conv1D)
        except ImportError:  # pragma: no cover - transformers is a dependency
            pass
        chosen: dict[str, nn.Parameter] = {}
        for comp, module in modules.items():
            # a head tied to the input embeddings is left out: merging its LoRA would move the embeddings too
            tied = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
            targets = [n for n, m in module.named_modules()
                       if isinstance(m, linear) and id(m.weight) not in tied and self.matches(f"{comp}.{n}.weight")
                       and (spec.target_modules is None or any(n.endswith(t) for t in spec.target_modules))]
            if not targets:
                continue
            config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                                target_modules=targets)
            inject_adapter_in_model(config, module)
            for n, p in module.named_parameters():
                if "lora_" in n:
                    p.requires_grad_(True)
                    chosen[f"{comp}.{n}"] = p
        if not chosen:
            raise ValueError(f"LoRA selector {self.include} matched no linear layer")
        logger.info("selector: LoRA rank %d on %d tensors", spec.rank, len(chosen))
        return chosen


def export_lora(modules: dict[str, nn.Module]) -> dict[str, tuple[dict[str, torch.Tensor], Any]]:
    """The trained LoRA adapters, per component: (peft state dict without the adapter name, its ``LoraConfig``),
    detached copies taken before ``merge_lora`` (what each modality's ``save_lora`` writes)."""
    from peft import get_peft_model_state_dict

    out = {}
    for comp, module in modules.items():
        config = getattr(module, "peft_config", {}).get("default")
        if config is not None:
            state = get_peft_model_state_dict(module, adapter_name="default", save_embedding_layers=False)
            out[comp] = ({k: v.detach().clone().contiguous() for k, v in state.items()}, config)
    return out


def merge_lora(modules: dict[str, nn.Module]) -> None:
    """Merge every peft LoRA layer into its base weight, put the plain base layer back and drop the adapter's
    config from the module (in place): the model is a plain model again, free for later adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in modules.values():
        for parent in list(module.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, BaseTunerLayer):
                    child.merge()
                    setattr(parent, child_name, child.get_base_layer())
        for attr in ("peft_config", "_hf_peft_config_loaded"):
            if attr in vars(module):
                delattr(module, attr)


def resolve_selector(spec: str | Selector | Sequence[str]) -> Selector:
    """A preset name, a ``Selector``, or a list of include regexes -> ``Selector``."""
    if isinstance(spec, Selector):
        return spec
    if isinstance(spec, str):
        return Selector.preset(spec)
    return Selector(include=list(spec))
