"""The contract between the modality-agnostic core and a modality (``llm``, ``diffusion``)."""

from __future__ import annotations

import os
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from erasure.reference import Reference


@runtime_checkable
class Adapter(Protocol):
    """What the unlearning loop needs from a model of one modality.

    ``modules()`` names the components whose parameters selectors address as ``"{component}.{param}"``
    (e.g. ``unet.down_blocks.1.attentions.0...`` or ``model.layers.3.mlp...``).
    """

    modality: str
    default_selector: str

    @property
    def model(self) -> Any:
        """The edited model object (what ``ErasureResult.model`` returns)."""
        ...

    @property
    def source(self) -> os.PathLike | None:
        """The folder the model was loaded from, if any (its ``recommended.json`` applies to ``erase``)."""
        ...

    def modules(self) -> dict[str, nn.Module]:
        """Named components (their parameters are what selectors choose from)."""
        ...

    def collate(self, rows: Sequence[Any], shard: tuple[int, int] | None = None) -> Any:
        """Raw forget/retain records -> one batch the other methods accept.

        ``shard`` = (offset, total): when several processes share a step, these rows are rows offset.. of the
        step's ``total``; an adapter whose scores draw random numbers per row (noise, timesteps) draws them for
        all ``total`` rows and keeps its share, so the processes together compute what one process would. The loop
        passes it only when there are several processes."""
        ...

    def per_example_nll(self, batch: Any, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(nll (B,), length (B,)): summed negative log-likelihood (or its surrogate) and its unit count."""
        ...

    def output_divergence(self, batch: Any, reference: Reference, generator: torch.Generator) -> torch.Tensor:
        """(B,) divergence of the model's output distribution from the reference's on ``batch``."""
        ...

    def generate(self, rows: Sequence[Any], prefix: torch.Tensor | None = None,
                 seeds: Sequence[int] | None = None) -> Any:
        """What the model makes of each row (images, or greedy answers), with an optional adversarial ``prefix``;
        what judges look at. ``seeds`` gives row i its own evaluation seed where generation samples."""
        ...

    def save(self, path: str | os.PathLike) -> None:
        """Write the (possibly edited) model in its ecosystem's format."""
        ...


def named_parameters(modules: dict[str, nn.Module]) -> dict[str, nn.Parameter]:
    """All parameters of the components as ``{"component.param": Parameter}`` (shared tensors once)."""
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for comp, module in modules.items():
        for name, p in module.named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out[f"{comp}.{name}"] = p
    return out


def first_device(modules: dict[str, nn.Module]) -> torch.device:
    for m in modules.values():
        for p in m.parameters():
            return p.device
    return torch.device("cpu")
