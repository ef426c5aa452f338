"""A randomised-smoothing defence on the prompt conditioning (the smoothing idea of SMUG, Liang et al.,
https://arxiv.org/abs/2303.12735, applied to text-to-image erasure): every noise prediction is the mean over n
Gaussian perturbations of the text embedding,

    eps_smooth(x_t, t, c) = 1/n sum_i eps(x_t, t, c + sigma * delta_i),   delta_i ~ N(0, I),

so an adversarial prompt must move the conditioning far enough to survive the noise. It wraps the UNet's forward
(hooks: the module, its weights and names are untouched), so it serves sampling, evaluation and every attack (which
then differentiates through the smoothed model: an adaptive attacker) alike. The n copies run as one batched call.
Both halves of a classifier-free-guidance batch are perturbed (the unconditional embedding too). The perturbations
of a row are drawn from (seed, the row's timestep): fresh at every denoising step, yet the same whatever the batch
or the calls before, so a smoothed generation depends only on its own seed, as an unsmoothed one does. The frozen
original of an attack (P4D's target) runs unsmoothed (``suspended``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

_POSITIONAL = ("sample", "timestep", "encoder_hidden_states")  # UNet2DConditionModel.forward's first arguments


@dataclass
class Smoothing:
    """Settings of the defence.

    Args:
        sigma: standard deviation of the Gaussian added to every element of the text embedding.
        n: perturbations averaged per noise prediction.
        seed: seeds the perturbations (with each row's timestep).
    """

    sigma: float = 0.1
    n: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sigma <= 0 or self.n < 1:
            raise ValueError(f"smoothing needs sigma > 0 and n >= 1, got sigma={self.sigma}, n={self.n}")


def _repeat(value: Any, n: int, batch: int) -> Any:
    """``value`` with every tensor whose first dimension is the batch repeated n times (n * B, ...), inside dicts,
    lists and tuples too (ControlNet residuals, SDXL's added conditions)."""
    if torch.is_tensor(value) and value.ndim and value.shape[0] == batch:
        return value.repeat(n, *([1] * (value.ndim - 1)))
    if isinstance(value, dict):
        return {k: _repeat(v, n, batch) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_repeat(v, n, batch) for v in value)
    return value


def perturbations(settings: Smoothing, timesteps: Any, batch: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The n perturbations of each row, (n, B, *shape), each row's drawn from (seed, its timestep)."""
    t = torch.as_tensor(timesteps).flatten()
    t = t.expand(batch) if t.numel() == 1 else t
    if t.numel() != batch:
        raise ValueError(f"the smoothing defence got {t.numel()} timesteps for a batch of {batch}")
    rows = [torch.randn((settings.n, *shape), generator=torch.Generator().manual_seed(
        settings.seed * 1_000_003 + int(round(float(v))))) for v in t.tolist()]
    return torch.stack(rows, dim=1)


_ACTIVE = "_erasure_smoothing"  # attribute of a smoothed UNet: its handles (``suspended`` pauses them)


class SmoothingHandle:
    """Hooks that smooth ``unet``'s noise predictions until ``remove()``."""

    def __init__(self, unet: nn.Module, settings: Smoothing):
        self.settings = settings
        self.unet = unet
        self.enabled = True
        self._batch: list[int | None] = []
        self._hooks = [unet.register_forward_pre_hook(self._before, with_kwargs=True),
                       unet.register_forward_hook(self._after, with_kwargs=True)]
        vars(unet).setdefault(_ACTIVE, []).append(self)

    def _before(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if not self.enabled:
            self._batch.append(None)
            return None
        kwargs = {**dict(zip(_POSITIONAL, args)), **kwargs}
        if len(args) > len(_POSITIONAL) or kwargs.get("encoder_hidden_states") is None:
            raise ValueError("the smoothing defence needs the UNet called with (sample, timestep, "
                             "encoder_hidden_states)")
        s, cond = self.settings, kwargs["encoder_hidden_states"]
        batch = kwargs["sample"].shape[0]
        self._batch.append(batch)
        noise = perturbations(s, kwargs["timestep"], batch, tuple(cond.shape[1:])).to(cond)  # (n, B, L, D)
        out = {k: _repeat(v, s.n, batch) for k, v in kwargs.items() if k != "encoder_hidden_states"}
        out["encoder_hidden_states"] = (cond[None] + s.sigma * noise).flatten(0, 1)  # (n * B, L, D)
        return (), out

    def _after(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        batch, n = self._batch.pop(), self.settings.n
        if batch is None:  # suspended
            return output
        pred = output[0] if isinstance(output, tuple) else output.sample
        mean = pred.unflatten(0, (n, batch)).mean(0)  # (B, C, H, W)
        if isinstance(output, tuple):
            return (mean, *output[1:])
        output.sample = mean
        return output

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        handles = vars(self.unet).get(_ACTIVE, [])
        if self in handles:
            handles.remove(self)


def apply_smoothing(pipe: Any, settings: Smoothing) -> SmoothingHandle:
    """Smooth ``pipe.unet`` (a T2IPipeline or a diffusers pipeline) until the returned handle's ``remove()``."""
    return SmoothingHandle(pipe.unet, settings)


@contextmanager
def smoothed(pipe: Any, sigma: float = 0.1, n: int = 8, seed: int = 0) -> Iterator[SmoothingHandle]:
    """Within the block, ``pipe``'s noise predictions are smoothed (see the module docstring)."""
    handle = apply_smoothing(pipe, Smoothing(sigma, n, seed))
    try:
        yield handle
    finally:
        handle.remove()


@contextmanager
def suspended(unet: nn.Module) -> Iterator[None]:
    """Within the block, ``unet`` runs unsmoothed (an attack's frozen original: the model before erasure, without
    the defence); a UNet without the defence is unaffected."""
    handles = list(vars(unet).get(_ACTIVE, []))
    states = [h.enabled for h in handles]
    try:
        for h in handles:
            h.enabled = False
        yield
    finally:
        for h, state in zip(handles, states):
            h.enabled = state
