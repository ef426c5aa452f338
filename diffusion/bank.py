"""ESD's trajectory bank: x_t and the frozen model's predictions there, computed once and reused.

ESD (Gandikota et al. 2023, https://arxiv.org/abs/2303.07345) trains on x_t from a partial DDIM run with
classifier-free guidance, stopped at a random step. The public ``esd_sd.py`` samples that run with the *frozen*
base model; then x_t, t, eps*(x_t, c) and eps*(x_t, "") depend only on the frozen model, and one full DDIM
trajectory yields all of them for every stopping step at once: the CFG call that moves x_i to x_{i+1} is exactly
the pair of frozen predictions the ESD target needs at x_i. So a bank of a few trajectories per prompt, computed
in large batches, replaces ~25 batch-2 sampling calls and one batch-2 frozen call per training step with a
lookup, and every step is one forward + backward of the trained model.

Entry i of a trajectory is (x_i, t_i, eps*_u(x_i), eps*_c(x_i)) with t_i = timesteps[i] of a ``ddim_steps``
schedule: what ``DiffusionAdapter.sample_xt`` would return after stopping at step i had it sampled with the
frozen model, and the reference predictions ``ESDLoss.target`` would compute there. Banks are cached in memory
and on disk (safetensors, ``$ERASURE_BANK_DIR``, default ``$ERASURE_CACHE/esd-bank``), keyed by a hash of the
frozen weights, the prompts and the sampling settings, so esd-x / esd-u / esd-all / AdvUnlearn runs of the same
concept share one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from diffusion.pipeline import T2IPipeline, share_of
from erasure.reference import eval_mode

logger = logging.getLogger(__name__)

BANK_VERSION = 1


def bank_dir() -> Path:
    """Where banks are cached: ``$ERASURE_BANK_DIR``, else ``<erasure cache>/esd-bank``."""
    from erasure.models import cache_dir

    env = os.environ.get("ERASURE_BANK_DIR")
    return Path(env).expanduser() if env else cache_dir() / "esd-bank"


@dataclass
class TrajectoryBank:
    """Frozen-model DDIM trajectories of a set of prompts, every step kept.

    Args:
        prompts: the prompts, in the order their entries are stored.
        xt: (N, C, H, W) the partially denoised latents.
        t: (N,) their timesteps.
        eps_uncond: (N, C, H, W) the frozen model's prediction with the empty prompt.
        eps_cond: (N, C, H, W) its prediction with the entry's prompt.
        prompt_index: (N,) which prompt each entry belongs to (entries of one prompt are contiguous).
        ddim_steps, guidance, trajectories, seed: how the bank was sampled.
    """

    prompts: list[str]
    xt: torch.Tensor
    t: torch.Tensor
    eps_uncond: torch.Tensor
    eps_cond: torch.Tensor
    prompt_index: torch.Tensor
    ddim_steps: int
    guidance: float
    trajectories: int
    seed: int

    def __post_init__(self) -> None:
        counts = torch.bincount(self.prompt_index, minlength=len(self.prompts))
        self._start = {p: int(s) for p, s in zip(self.prompts, torch.cumsum(counts, 0) - counts)}
        self._count = {p: int(c) for p, c in zip(self.prompts, counts)}

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def covers(self, prompts: Sequence[str], ddim_steps: int, guidance: float) -> bool:
        """Whether this bank was sampled the way asked and holds every prompt."""
        return (ddim_steps == self.ddim_steps and float(guidance) == self.guidance
                and all(self._count.get(p) for p in prompts))

    def draw(self, prompts: Sequence[str], generator: torch.Generator, shard: tuple[int, int] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One uniformly drawn entry of each prompt's trajectories: (x_t, t, eps*_u, eps*_c), each with B rows.

        With ``shard`` = (offset, total) the draws are made for ``total`` rows and these rows' share kept, so
        processes sharing a batch draw what one process would.
        """
        rows, total = share_of(shard, len(prompts))
        pick = torch.randint(0, 2**62, (total,), generator=generator)[rows]
        idx = torch.tensor([self._start[p] + int(r) % self._count[p] for p, r in zip(prompts, pick.tolist())])
        return self.xt[idx], self.t[idx], self.eps_uncond[idx], self.eps_cond[idx]

    def to(self, device: torch.device | str) -> "TrajectoryBank":
        """A bank with the tensors on ``device`` (this one unchanged)."""
        from dataclasses import replace

        return replace(self, **{n: getattr(self, n).to(device) for n in ("xt", "t", "eps_uncond", "eps_cond")})

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the bank to one safetensors file (atomically)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"prompts": json.dumps(self.prompts), "ddim_steps": str(self.ddim_steps),
                "guidance": repr(self.guidance), "trajectories": str(self.trajectories), "seed": str(self.seed),
                "version": str(BANK_VERSION)}
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        save_file({"xt": self.xt.cpu().contiguous(), "t": self.t.cpu(), "eps_uncond": self.eps_uncond.cpu().contiguous(),
                   "eps_cond": self.eps_cond.cpu().contiguous(), "prompt_index": self.prompt_index.cpu()}, tmp,
                  metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrajectoryBank":
        """Read a bank written by ``save`` (CPU tensors)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        if meta.get("version") != str(BANK_VERSION):
            raise ValueError(f"{path} is not a trajectory bank of version {BANK_VERSION}")
        tensors = load_file(str(path))
        return cls(prompts=json.loads(meta["prompts"]), ddim_steps=int(meta["ddim_steps"]),
                   guidance=float(meta["guidance"]), trajectories=int(meta["trajectories"]), seed=int(meta["seed"]),
                   **tensors)


@torch.no_grad()
def build_bank(pipe: T2IPipeline, prompts: Sequence[str], trajectories: int = 4, ddim_steps: int = 50,
               guidance: float = 3.0, seed: int = 0, batch_size: int = 32, show_progress: bool = False
               ) -> TrajectoryBank:
    """Sample ``trajectories`` full DDIM trajectories per prompt with ``pipe`` as it is (the caller activates the
    frozen reference) and keep every step.

    Args:
        pipe: the pipeline whose predictions fill the bank.
        prompts: the prompts (duplicates are dropped).
        trajectories: trajectories per prompt (each gives ``ddim_steps`` entries).
        ddim_steps: DDIM schedule length (ESD: 50).
        guidance: CFG scale of the sampling (ESD: 3).
        seed: seeds the starting noise (trajectory j of prompt k starts from draw k * trajectories + j).
        batch_size: trajectories per batch (each UNet call evaluates twice as many rows: CFG).
        show_progress: show a tqdm bar.

    Returns:
        The bank, on the pipeline's device.
    """
    from erasure.progress import progress

    if trajectories < 1 or ddim_steps < 1:
        raise ValueError(f"a trajectory bank needs trajectories >= 1 and ddim_steps >= 1, got {trajectories}, "
                         f"{ddim_steps}")
    prompts = list(dict.fromkeys(prompts))
    runs = [p for p in prompts for _ in range(trajectories)]  # trajectory order: prompt-major
    noise = torch.randn((len(runs), *pipe.latent_shape), generator=torch.Generator().manual_seed(seed))
    uncond_one = pipe.encode_prompts([""])
    parts: dict[str, list[torch.Tensor]] = {"xt": [], "eps_uncond": [], "eps_cond": []}
    timesteps = None
    for start in progress(range(0, len(runs), batch_size), desc="ESD trajectory bank", disable=not show_progress):
        batch = runs[start:start + batch_size]
        cond = pipe.encode_prompts(batch)
        uncond = uncond_one.expand_as(cond)
        x = noise[start:start + len(batch)].to(pipe.device)
        sched = pipe.ddim(ddim_steps)
        timesteps = sched.timesteps
        xs, eus, ecs = [], [], []
        for t in sched.timesteps:
            eps = pipe.predict_noise(torch.cat([x, x]), t, torch.cat([uncond, cond]))
            eps_u, eps_c = eps.chunk(2)
            xs.append(x), eus.append(eps_u), ecs.append(eps_c)
            x = sched.step(eps_u + guidance * (eps_c - eps_u), t, x).prev_sample
        # (steps, b, ...) -> (b, steps, ...): entries of one trajectory contiguous
        for name, seq in (("xt", xs), ("eps_uncond", eus), ("eps_cond", ecs)):
            parts[name].append(torch.stack(seq, 1).flatten(0, 1))
    n = len(runs) * ddim_steps
    t = timesteps.to(torch.long).repeat(len(runs))
    index = torch.arange(len(prompts)).repeat_interleave(trajectories * ddim_steps)
    bank = TrajectoryBank(prompts=prompts, xt=torch.cat(parts["xt"]), t=t.to(pipe.device),
                          eps_uncond=torch.cat(parts["eps_uncond"]), eps_cond=torch.cat(parts["eps_cond"]),
                          prompt_index=index, ddim_steps=ddim_steps, guidance=float(guidance),
                          trajectories=trajectories, seed=seed)
    if len(bank) != n:
        raise RuntimeError(f"trajectory bank has {len(bank)} entries, expected {n}")
    return bank


def bank_key(pipe: T2IPipeline, prompts: Sequence[str], trajectories: int, ddim_steps: int, guidance: float,
             seed: int) -> str:
    """sha256 over what a bank depends on: the weights as they compute now (call it under the frozen
    reference), the tokenizer, the scheduler config, the prompts and the sampling settings."""
    from erasure.loop import fingerprint_tensors

    weights = {f"{c}.{n}": p for c, m in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder))
               for n, p in m.state_dict().items()}
    what = {"weights": fingerprint_tensors(weights), "tokenizer": [type(pipe.tokenizer).__name__, len(pipe.tokenizer)],
            "scheduler": {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")},
            "unet": dict(pipe.unet.config), "latent_shape": list(pipe.latent_shape),
            "prompts": list(dict.fromkeys(prompts)), "trajectories": trajectories, "ddim_steps": ddim_steps,
            "guidance": float(guidance), "seed": seed, "version": BANK_VERSION}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


_MEMORY: "OrderedDict[str, TrajectoryBank]" = OrderedDict()  # this process's newest banks by key
_MEMORY_SIZE = 2


def get_bank(pipe: T2IPipeline, reference: Any, prompts: Sequence[str], trajectories: int = 4, ddim_steps: int = 50,
             guidance: float = 3.0, seed: int = 0, cache: bool = True, show_progress: bool = False
             ) -> TrajectoryBank:
    """The bank of ``prompts`` under the frozen ``reference``: from memory, else from the disk cache, else built
    (and cached, by the main process, when ``cache``).

    Args:
        pipe: the pipeline being trained.
        reference: the frozen-reference strategy (``erasure.reference``); its weights fill the bank. None: the
            pipeline's live weights (before the first step, when nothing has trained yet, they are the original's).
        prompts, trajectories, ddim_steps, guidance, seed: see ``build_bank``.
        cache: read and write the disk cache (``bank_dir()``).
        show_progress: show a tqdm bar while building.
    """
    frozen = reference.active() if reference is not None else eval_mode([pipe.unet, pipe.text_encoder])
    with torch.no_grad(), frozen:
        key = bank_key(pipe, prompts, trajectories, ddim_steps, guidance, seed)
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key].to(pipe.device)
        path = bank_dir() / f"{key}.safetensors"
        if cache and path.is_file():
            try:
                bank = TrajectoryBank.load(path)
                logger.info("ESD trajectory bank loaded from %s (%d entries)", path, len(bank))
            except (OSError, ValueError) as err:  # a damaged file is rebuilt
                logger.warning("ESD trajectory bank %s unreadable (%s); rebuilding it", path, err)
                bank = None
            if bank is not None:
                return _remember(key, bank).to(pipe.device)
        bank = build_bank(pipe, prompts, trajectories, ddim_steps, guidance, seed, show_progress=show_progress)
    if cache:
        from accelerate import PartialState

        if PartialState().is_main_process:
            bank.save(path)
            logger.info("ESD trajectory bank saved to %s (%d entries)", path, len(bank))
    return _remember(key, bank).to(pipe.device)


def _remember(key: str, bank: TrajectoryBank) -> TrajectoryBank:
    """Keep ``bank`` (a CPU copy: device memory is freed when training ends) among the newest few."""
    bank = bank.to("cpu")
    _MEMORY[key] = bank
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return bank


class RollingPool:
    """On-policy x_t at the cost of one batched UNet call per step: a few DDIM trajectories per prompt, sampled by
    the model being trained, each advanced by one step per training step and started at staggered steps, so at any
    step their states cover the schedule; a finished trajectory restarts from fresh noise.

    ``sampling="trained"`` (the paper's) samples a whole partial trajectory with the current weights for every
    training step (``ddim_steps / 2`` batch-2 calls on average); here one trajectory spans ``ddim_steps`` training
    steps of slowly moving weights, which is what makes it cheap.

    Args:
        prompts: the prompts (duplicates dropped).
        per_prompt: trajectories per prompt.
        ddim_steps, guidance: the DDIM schedule and CFG scale.
        seed: seeds the starting phases and every trajectory's noise.
    """

    def __init__(self, prompts: Sequence[str], per_prompt: int = 1, ddim_steps: int = 50, guidance: float = 3.0,
                 seed: int = 0):
        if per_prompt < 1 or ddim_steps < 1:
            raise ValueError(f"a rolling pool needs per_prompt >= 1 and ddim_steps >= 1, got {per_prompt}, {ddim_steps}")
        self.prompts = list(dict.fromkeys(prompts))
        self.per_prompt, self.ddim_steps, self.guidance, self.seed = per_prompt, ddim_steps, float(guidance), seed
        n = len(self.prompts) * per_prompt
        self.prompt_index = torch.arange(len(self.prompts)).repeat_interleave(per_prompt)
        self.x: torch.Tensor | None = None  # (N, C, H, W) the trajectories' current latents
        self.step = torch.zeros(n, dtype=torch.long)  # (N,) DDIM steps each has taken
        self.restarts = torch.zeros(n, dtype=torch.long)  # (N,) how often each has started (seeds its noise)
        self._row = {p: i * per_prompt for i, p in enumerate(self.prompts)}
        self._sched: Any = None  # the DDIM schedule, made once by start()

    def covers(self, prompts: Sequence[str], ddim_steps: int, guidance: float) -> bool:
        """Whether the pool samples the way asked and holds every prompt."""
        return (ddim_steps == self.ddim_steps and float(guidance) == self.guidance
                and all(p in self._row for p in prompts))

    def _noise(self, pipe: T2IPipeline, rows: torch.Tensor) -> torch.Tensor:
        """Fresh starting noise of trajectories ``rows`` (each from its own seed and restart count)."""
        return torch.stack([torch.randn(pipe.latent_shape, generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + int(r) * 10_007 + int(self.restarts[r]))) for r in rows]).to(pipe.device)

    @torch.no_grad()
    def start(self, pipe: T2IPipeline) -> None:
        """Start every trajectory from its noise and advance it to a random phase (a one-off ~ddim_steps calls)."""
        n = len(self.prompt_index)
        self._sched = pipe.ddim(self.ddim_steps)  # DDIM's step is stateless: one schedule serves every row
        self.restarts.zero_()
        self.x = self._noise(pipe, torch.arange(n))
        self.step.zero_()
        phase = torch.randint(0, self.ddim_steps, (n,), generator=torch.Generator().manual_seed(self.seed))
        for k in range(int(phase.max()) if n else 0):
            self.advance(pipe, only=phase > k)

    @torch.no_grad()
    def advance(self, pipe: T2IPipeline, only: torch.Tensor | None = None) -> None:
        """One DDIM step (CFG, one batched call) of every trajectory (or of the mask ``only``) with ``pipe`` as it
        is now; trajectories that reach the end restart from fresh noise."""
        rows = torch.arange(len(self.prompt_index)) if only is None else only.nonzero().flatten()
        if len(rows) == 0:
            return
        sched = self._sched
        cond = pipe.encode_prompts([self.prompts[int(i)] for i in self.prompt_index[rows]])
        uncond = pipe.encode_prompts([""]).expand_as(cond)
        x = self.x[rows]
        t = sched.timesteps[self.step[rows].to(sched.timesteps.device)]
        eps_u, eps_c = pipe.predict_noise(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond])).chunk(2)
        eps = eps_u + self.guidance * (eps_c - eps_u)
        # DDIM's update per row (rows sit at different steps: the scheduler steps them one at a time)
        new = torch.stack([sched.step(eps[j:j + 1], t[j], x[j:j + 1]).prev_sample[0] for j in range(len(rows))])
        self.x[rows] = new
        self.step[rows] += 1
        done = rows[self.step[rows] >= self.ddim_steps]
        if len(done):
            self.restarts[done] += 1
            self.x[done] = self._noise(pipe, done)
            self.step[done] = 0

    def draw(self, prompts: Sequence[str], generator: torch.Generator, shard: tuple[int, int] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, t (B,)): the current state of one uniformly drawn trajectory of each row's prompt."""
        rows, total = share_of(shard, len(prompts))
        pick = torch.randint(0, 2**62, (total,), generator=generator)[rows]
        idx = torch.tensor([self._row[p] + int(r) % self.per_prompt for p, r in zip(prompts, pick.tolist())])
        timesteps = self._sched.timesteps
        return self.x[idx].clone(), timesteps[self.step[idx].to(timesteps.device)].to(torch.long)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the trajectories' latents, steps and restart counts (what an exact resume needs)."""
        return {"x": self.x.detach().cpu().clone(), "step": self.step.clone(), "restarts": self.restarts.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device | str) -> None:
        """Restore ``state_dict()``'s copy onto ``device``."""
        if state["x"].shape[0] != len(self.prompt_index):
            raise ValueError("the checkpoint's ESD rolling pool has another size: resume with the same prompts and "
                             "pool settings")
        self.x, self.step, self.restarts = state["x"].to(device), state["step"].clone(), state["restarts"].clone()
