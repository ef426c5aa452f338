"""Reference strategies: how the frozen original model is evaluated while its copy trains.

Choose the cheapest strategy that is exact:

* ``SnapshotReference`` keeps a copy of *only the trainable tensors* and swaps them in under ``no_grad``.
  Everything not trained is shared, so it is exact and costs one copy of the trained subset (a full frozen
  copy is never cheaper: it also duplicates what does not change).
* ``PeftReference`` turns LoRA adapters off (peft's ``disable_adapter``), costing nothing.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(modules: list[nn.Module]) -> Iterator[None]:
    """Put modules (and all their submodules) in eval mode, restoring each one's own flag afterwards."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def frozen_weights(modules: list[nn.Module]) -> Iterator[None]:
    """No gradient for the modules' parameters (an attack differentiates through the model, not into it: the
    backward pass then skips every weight gradient), restoring each parameter's own flag afterwards."""
    flags = [(p, p.requires_grad) for module in modules for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class Reference(Protocol):
    """Within ``active()``, the model computes as the frozen reference, deterministically (eval mode: no
    dropout), under no_grad."""

    name: str

    def active(self) -> contextlib.AbstractContextManager: ...


class SnapshotReference:
    """Snapshot of the trainable tensors; ``active()`` swaps them in (O(1) pointer swaps, exact).

    Args:
        params: the parameters that will be trained, by name.
        modules: the model's components (switched to eval mode while the reference runs).
    """

    name = "snapshot"

    def __init__(self, params: dict[str, nn.Parameter], modules: dict[str, nn.Module] | None = None):
        self.params = params
        self.modules = list((modules or {}).values())
        self.snapshot = {n: p.detach().clone() for n, p in params.items()}

    @classmethod
    def of(cls, modules: dict[str, nn.Module], original: dict[str, nn.Module]) -> "SnapshotReference":
        """The reference that makes ``modules`` compute as ``original`` (another copy of the same architecture,
        e.g. the model before erasure): a snapshot of the original's values of every tensor that differs."""
        from erasure.adapter import named_parameters

        live, orig = named_parameters(modules), named_parameters(original)
        if set(live) != set(orig) or any(live[n].shape != orig[n].shape for n in live):
            raise ValueError("the original model must have the same architecture (parameter names and shapes)")
        differ = {n: p for n, p in live.items() if not torch.equal(p.detach(), orig[n].detach())}
        reference = cls(differ, modules)
        reference.snapshot = {n: orig[n].detach().clone() for n in differ}
        return reference

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.snapshot.values())

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if torch.is_grad_enabled():
            raise RuntimeError("the reference model may only run under torch.no_grad()")
        live = {}
        try:
            for n, p in self.params.items():
                live[n] = p.data
                p.data = self.snapshot[n].to(device=p.device, dtype=p.dtype)
            with eval_mode(self.modules):
                yield
        finally:
            for n, data in live.items():
                self.params[n].data = data


def adapter_layers(modules: dict[str, nn.Module]) -> list[nn.Module]:
    """The layers that switch off with ``enable_adapters(False)``, leaving the original model: peft's tuner layers
    (LoRA) and modules that declare ``switchable_adapter = True`` (a learned soft prompt)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for module in modules.values() for m in module.modules()
            if isinstance(m, BaseTunerLayer) or getattr(m, "switchable_adapter", False)]


class PeftReference:
    """Reference = the model with every adapter layer (peft LoRA, a soft prompt) switched off."""

    name = "peft"

    def __init__(self, modules: dict[str, nn.Module]):
        self.modules = list(modules.values())
        self.layers = adapter_layers(modules)
        if not self.layers:
            raise ValueError("PeftReference needs a model with peft adapters injected")

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if torch.is_grad_enabled():
            raise RuntimeError("the reference model may only run under torch.no_grad()")
        flags = [(p, p.requires_grad) for layer in self.layers for p in layer.parameters()]
        try:
            for layer in self.layers:
                layer.enable_adapters(False)
            with eval_mode(self.modules):
                yield
        finally:
            for layer in self.layers:
                layer.enable_adapters(True)
            for p, flag in flags:  # peft toggles requires_grad; restore exactly what the selector chose
                p.requires_grad_(flag)
