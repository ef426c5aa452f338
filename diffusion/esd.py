"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al. 2023, https://arxiv.org/abs/2303.07345).

    L = || eps_theta(x_t, c, t) - [ eps*(x_t, "", t) - eta * (eps*(x_t, c, t) - eps*(x_t, "", t)) ] ||^2

theta* is the frozen original (the loop's reference strategy); x_t comes from DDIM-sampling with prompt c
(guidance 3) and stopping at a random step of ``ddim_steps``. ``sampling`` chooses the sampler:

* "trained" (the default; the paper's and the original ``train-esd.py``): the model being trained samples a fresh
  partial trajectory every step (``ddim_steps`` / 2 batch-2 UNet calls on average: 25 on the paper's 50-step
  schedule) and the frozen predictions are computed at its end. On mini-canvas a 10-step schedule erases as well
  in a quarter of the time (its recommended.json sets it; README: ESD sampling).
* "rolling": the model being trained samples too, but a pool of trajectories (one per prompt) takes
  one DDIM step per training step, started at staggered steps (``diffusion.bank.RollingPool``): one batched call
  per step instead of ~25, then the frozen predictions as above. A trajectory spans ``ddim_steps`` training steps
  of slowly moving weights instead of one. Cheaper per step; on mini-canvas it erases differently at equal
  settings (README: ESD sampling), so it is not the default.
* "frozen" (the public ``esd_sd.py``): the frozen original samples, so x_t and both frozen predictions come from a
  trajectory bank built once before training (``diffusion/bank.py``); a step is one forward + backward. The
  fastest, but on mini-canvas it erases less at equal settings (README: ESD sampling).

The variants differ only
in which parameters train (selector presets): esd-x = cross-attention, esd-u = everything but cross-attention,
esd-all = the whole UNet, esd-x-strict = cross-attention keys/values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from erasure.objectives import KL, Objective, StepScores
from erasure.registry import Method


@dataclass
class ESDLoss:
    """ESD's negative-guidance regression target, as a loss term over the forget prompts.

    Args:
        eta: negative guidance strength (paper 1.0; later code 2.0).
        guidance: CFG scale used to sample x_t.
        ddim_steps: length of the DDIM schedule x_t is sampled from.
        sampling: "trained" (a fresh partial trajectory of the model being trained every step), "rolling" (a
            pool of trajectories the trained model samples, one step per training step) or "frozen" (trajectory
            bank of the frozen model).
        bank_trajectories: trajectories per prompt in the bank (each gives ``ddim_steps`` entries).
        bank_cache: keep banks on disk (``diffusion.bank.bank_dir()``) for later runs.
        pool_trajectories: trajectories per prompt in the rolling pool.
    """

    eta: float = 1.0
    guidance: float = 3.0
    ddim_steps: int = 50
    sampling: str = "trained"
    bank_trajectories: int = 4
    bank_cache: bool = True
    pool_trajectories: int = 1
    split: str = "forget"
    name: str = "esd"

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING:
            raise ValueError(f"ESD sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")

    @property
    def needs_reference(self) -> bool:
        """The frozen original computes eps* every step, except from a bank, which holds it: then the loop keeps no
        snapshot of the trained tensors (a whole UNet's copy for esd-u / esd-all) unless another term needs one."""
        return self.sampling != "frozen"

    def prepare(self, adapter: Any, reference: Any, data: dict[str, Sequence[Any]], splits: set[str],
                seed: int = 0) -> None:
        """Before the first step: give the adapter the bank (frozen sampling) or the started rolling pool (rolling
        sampling, seeded by ``seed``) of every forget prompt, and of every retain prompt when a retain term samples
        x_t too; with trained sampling, neither."""
        adapter.bank = adapter.pool = None
        if self.sampling == "trained":
            return
        from diffusion.adapter import prompt_of
        from diffusion.bank import RollingPool, get_bank

        prompts = [prompt_of(r) for r in data["forget"]]
        if "retain" in splits and data.get("retain") is not None:
            prompts += [prompt_of(r) for r in data["retain"]
                        if isinstance(r, str) or (r.get("image") is None and r.get("images") is None)]
        if self.sampling == "frozen":
            adapter.bank = get_bank(adapter.pipe, reference, prompts, self.bank_trajectories, self.ddim_steps,
                                    self.guidance, cache=self.bank_cache)
        else:
            adapter.pool = RollingPool(prompts, self.pool_trajectories, self.ddim_steps, self.guidance, seed=seed)
            adapter.pool.start(adapter.pipe)
        self._adapter = adapter

    def begin_step(self, step: int) -> None:
        """At the start of every training step: the rolling pool takes one DDIM step with the current weights."""
        if self.sampling == "rolling":
            self._adapter.pool.advance(self._adapter.pipe)

    def finish(self) -> None:
        """After training: the adapter samples with its own weights again (an audit must not draw from the bank)."""
        adapter = getattr(self, "_adapter", None)
        if adapter is not None:
            adapter.bank = adapter.pool = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must keep for an exact resume: the rolling pool's trajectories."""
        return self._adapter.pool.state_dict() if self.sampling == "rolling" else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the rolling pool from a checkpoint (refused when the checkpoint has none)."""
        if self.sampling == "rolling":
            if not state:
                raise ValueError("the checkpoint holds no ESD rolling pool: it was written with another sampling")
            self._adapter.pool.load_state_dict(state, self._adapter.pipe.device)

    def combine(self, eps_u: torch.Tensor, eps_c: torch.Tensor) -> torch.Tensor:
        """ESD's target eps_u - eta * (eps_c - eps_u) from the frozen predictions, (B, C, H, W)."""
        return eps_u - self.eta * (eps_c - eps_u)

    def target(self, s: StepScores, xt: torch.Tensor, t: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """eps*(x_t, "") - eta * (eps*(x_t, c) - eps*(x_t, "")) from the frozen reference, (B, C, H, W)."""
        pipe = s.adapter.pipe
        with torch.no_grad(), s.require_reference().active():
            cond = pipe.encode_prompts(prompts)
            uncond = pipe.encode_prompts([""]).expand_as(cond)
            eps = pipe.predict_noise(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([uncond, cond]))
        return self.combine(*eps.chunk(2))

    def __call__(self, s: StepScores) -> torch.Tensor:
        batch = s.batch(self.split)
        if batch.xt is not None:  # sampled by the adversary this step (AdvUnlearn): the same z_t
            (xt, t), frozen = batch.xt, batch.frozen
        else:
            xt, t, frozen = s.adapter.esd_latents(batch.prompts, s.generator(self.split), self.ddim_steps,
                                                  self.guidance, shard=batch.shard)
        target = self.target(s, xt, t, batch.prompts) if frozen is None else self.combine(*frozen)
        # The target comes from the clean concept prompt; the prediction uses the batch's conditioning, which
        # carries the adversary's prefix during adversarial training (AdvUnlearn).
        pred = s.adapter.pipe.predict_noise(xt, t, batch.cond(s.adapter.pipe))
        return F.mse_loss(pred, target)


SAMPLING = ("trained", "rolling", "frozen")


@dataclass
class ESDConfig:
    """ESD options.

    Args:
        eta: negative guidance (paper: 1.0).
        guidance: CFG scale when sampling x_t (paper: 3).
        ddim_steps: DDIM schedule length for x_t (paper: 50).
        retain_weight: optional output-preservation term on retain prompts (0 = the paper's ESD).
        sampling: where x_t comes from (module docstring): "trained" (default: a fresh partial trajectory of the
            model being trained every step, as the paper's train-esd.py), "rolling" (trajectories the model being
            trained samples, each advanced one DDIM step per training step) or "frozen" (a trajectory bank of the
            frozen model, as the public esd_sd.py samples).
        bank_trajectories: DDIM trajectories per prompt in the frozen bank.
        bank_cache: keep frozen banks on disk for later runs.
        pool_trajectories: trajectories per prompt in the rolling pool.
    """

    eta: float = 1.0
    guidance: float = 3.0
    ddim_steps: int = 50
    retain_weight: float = 0.0
    sampling: str = "trained"
    bank_trajectories: int = 4
    bank_cache: bool = True
    pool_trajectories: int = 1


def esd_loss(c: Any) -> ESDLoss:
    """ESD's loss term from a config with ESD's sampling fields (ESD's, AdvUnlearn's)."""
    return ESDLoss(eta=c.eta, guidance=c.guidance, ddim_steps=c.ddim_steps, sampling=c.sampling,
                   bank_trajectories=c.bank_trajectories, bank_cache=c.bank_cache,
                   pool_trajectories=c.pool_trajectories)


def build_esd(c: ESDConfig, adapter: object = None) -> Objective:
    terms = [(1.0, esd_loss(c))]
    if c.retain_weight:
        terms.append((c.retain_weight, KL()))
    return Objective(terms)


_PAPER = "https://arxiv.org/abs/2303.07345"
_DEFAULTS = {"lr": 1e-5, "steps": 1000, "batch_size": 1, "optimizer": "adam"}
ESD_X = Method("esd-x", "diffusion", ESDConfig, build_esd, selector="esd-x", train_defaults=_DEFAULTS, paper=_PAPER)
ESD_U = Method("esd-u", "diffusion", ESDConfig, build_esd, selector="esd-u", train_defaults=_DEFAULTS, paper=_PAPER)
ESD_ALL = Method("esd-all", "diffusion", ESDConfig, build_esd, selector="esd-all", train_defaults=_DEFAULTS,
                 paper=_PAPER)
ESD_X_STRICT = Method("esd-x-strict", "diffusion", ESDConfig, build_esd, selector="esd-x-strict",
                      train_defaults=_DEFAULTS, paper=_PAPER)
