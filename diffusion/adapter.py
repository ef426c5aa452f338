"""The diffusion adapter: what the shared unlearning core needs from a text-to-image model.

Per-example "NLL" is the denoising error ``||eps - eps_theta(x_t, c, t)||^2`` (the ELBO surrogate), so
likelihood-based objectives (GA, NPO, SimNPO) run on diffusion models unchanged; the output divergence is the
Gaussian KL between the model's and the reference's noise predictions (a mean squared difference).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from diffusion.concepts import ConceptSet
from diffusion.pipeline import T2IPipeline, share_of, to_tensor
from erasure import losses
from erasure.reference import Reference

logger = logging.getLogger(__name__)


def prompt_of(row: Any) -> str:
    """A diffusion row's prompt: the row itself (a string) or its "prompt"."""
    return row if isinstance(row, str) else row["prompt"]


@dataclass
class DiffusionBatch:
    """Prompts, optional images in [0, 1] (B, 3, H, W) that show them, an optional adversarial prefix
    (1 or B, k, D) of token embeddings inserted after BOS (set by attacks), and optional ESD latents
    ``xt = (x_t (B, C, H, W), t (B,))`` already sampled for these prompts (an attack that sampled them hands
    them to the loss, as AdvUnlearn does: one z_t per step for the inner attack and the ESD term), with the frozen
    model's predictions there when they came from a trajectory bank."""

    prompts: list[str]
    images: torch.Tensor | None = None
    prefix: torch.Tensor | None = None
    xt: tuple[torch.Tensor, torch.Tensor] | None = None
    frozen: tuple[torch.Tensor, torch.Tensor] | None = None  # the frozen model's (eps_u, eps_c) at xt, if known
    shard: tuple[int, int] | None = None  # (offset, total) in the step's batch when processes share it

    def cond(self, pipe: T2IPipeline) -> torch.Tensor:
        """The conditioning the model is trained/attacked with: prompt embeddings (+ prefix)."""
        return pipe.encode_prompts(self.prompts, prefix=self.prefix)


class DiffusionAdapter:
    """Adapter over a ``T2IPipeline`` (UNet + text encoder [+ VAE]); the VAE is never trained.

    Args:
        pipe: the pipeline.
        sample_steps: DDIM steps when the adapter must produce x_t by sampling (no images given).
        guidance: CFG scale for that sampling.
    """

    modality = "diffusion"
    default_selector = "esd-x"

    def __init__(self, pipe: T2IPipeline, sample_steps: int = 50, guidance: float = 3.0):
        self.pipe = pipe
        self.sample_steps = sample_steps
        self.guidance = guidance
        self.bank: Any = None  # a TrajectoryBank (diffusion/bank.py) set by ESD's frozen sampling; see esd_latents
        self.pool: Any = None  # a RollingPool (diffusion/bank.py) set by ESD's rolling sampling

    # ------------------------------------------------------------------ construction
    @classmethod
    def accepts(cls, model: Any) -> bool:
        return isinstance(model, T2IPipeline) or hasattr(model, "unet") and hasattr(model, "text_encoder")

    @classmethod
    def from_model(cls, model: Any, **kwargs: Any) -> "DiffusionAdapter":
        if "tokenizer" in kwargs:
            raise ValueError("tokenizer= is for LLMs; a text-to-image pipeline brings its own")
        pipe = model if isinstance(model, T2IPipeline) else T2IPipeline.from_diffusers(model)
        return cls(pipe, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DiffusionAdapter":
        return cls(T2IPipeline.load(path))

    @property
    def model(self) -> T2IPipeline:
        """The pipeline being edited."""
        return self.pipe

    @property
    def source(self) -> os.PathLike | None:
        """The folder the pipeline was loaded from (for its ``recommended.json``), if any."""
        return self.pipe.source

    @property
    def concepts(self) -> ConceptSet | None:
        return self.pipe.concepts

    def modules(self) -> dict[str, torch.nn.Module]:
        extra = {"guard": self.pipe.guard} if self.pipe.guard is not None else {}
        return {"unet": self.pipe.unet, "text_encoder": self.pipe.text_encoder, **extra}

    # ------------------------------------------------------------------ ECO (erasure/guard.py)
    @property
    def guard(self) -> Any:
        """The pipeline's ECO guard (None: none)."""
        return self.pipe.guard

    @guard.setter
    def guard(self, value: Any) -> None:
        self.pipe.guard = value

    def guard_features(self, rows: Sequence[Any]) -> torch.Tensor:
        """(N, D) the classifier features of the rows' prompts (the text encoder's states, before any guard)."""
        prompts = [prompt_of(r) for r in rows]
        with torch.no_grad():
            return self.pipe.prompt_features(self.pipe.encode_ids(self.pipe.tokenize(prompts)))

    def embedding_rms(self) -> float:
        """Root mean square of the text encoder's states for the empty prompt (ECO's noise unit)."""
        with torch.no_grad():
            return float(self.pipe.encode_ids(self.pipe.tokenize([""])).float().pow(2).mean().sqrt())

    def eco_reference(self, rows: Sequence[Any], target: float | None = None, concept: str | None = None,
                      retain: Sequence[Any] | None = None, draws: int = 4, seed: int = 0) -> dict:
        """What ECO aims the forget prompts at, at ``draws`` fixed (x_t, t) per prompt: the model's noise
        prediction for each prompt should move away from its own by as much as the prompt without the concept's
        words (``concept``; else the empty prompt) moves it: a model that never learned the concept draws the
        concept's prompt as it draws the prompt without it. ``target`` overrides that squared distance; ``retain``
        is not needed."""
        from erasure.data import replace_concept

        prompts = [prompt_of(r) for r in rows]
        anchors = replace_concept(prompts, concept, "", who="ECO") if concept else [""] * len(prompts)
        g = torch.Generator().manual_seed(seed)
        n = len(prompts) * draws
        xt = torch.randn((n, *self.pipe.latent_shape), generator=g).to(self.pipe.device)
        t = torch.randint(0, self.pipe.noise_scheduler.config.num_train_timesteps, (n,), generator=g)
        t = t.to(self.pipe.device)
        with torch.no_grad():
            anchor = self.pipe.predict_noise(xt, t, self.pipe.encode_prompts(anchors).repeat_interleave(draws, 0))
            plain = self.pipe.predict_noise(xt, t, self.pipe.encode_prompts(prompts).repeat_interleave(draws, 0))
        wanted = float((anchor - plain).pow(2).mean()) if target is None else target
        return {"prompts": prompts, "draws": draws, "xt": xt, "t": t, "plain": plain, "target": max(wanted, 1e-12)}

    def eco_distance(self, rows: Sequence[Any], reference: dict) -> float:
        """|D - D*| / D*: D the squared distance of the guarded prediction from the unguarded one, D* the
        target's (1 before ECO, 0 when the concept's prompts move as far as removing the concept moves them)."""
        with torch.no_grad():
            cond = self.pipe.encode_prompts(reference["prompts"]).repeat_interleave(reference["draws"], 0)
            pred = self.pipe.predict_noise(reference["xt"], reference["t"], cond)
        d = float((pred - reference["plain"]).pow(2).mean())
        return abs(d - reference["target"]) / reference["target"]

    # ------------------------------------------------------------------ data
    def collate(self, rows: Sequence[Any], shard: tuple[int, int] | None = None) -> DiffusionBatch:
        """Rows are prompt strings, or dicts with "prompt" and optionally "image" (PIL or (3, H, W) tensor) or
        "images" ((K, 3, H, W): several images of the prompt, e.g. an audit's targets; K rows in the batch).
        ``shard`` = (offset, total) when these rows are a process's share of a step's batch: the noise and
        timesteps are then drawn for all ``total`` rows and this share kept (``Adapter.collate``)."""
        batch = self._collate(rows)
        if shard is not None and len(batch.prompts) != len(rows):
            raise ValueError("rows with several images cannot be shared between processes (the shares count "
                             "rows); run with one process or give one image per row")
        batch.shard = shard
        return batch

    def _collate(self, rows: Sequence[Any]) -> DiffusionBatch:
        prompts, images = [], []  # images: one (k, 3, H, W) tensor per row that has any
        for r in rows:
            if isinstance(r, str):
                prompts.append(r)
                continue
            shown = r.get("images")
            if shown is None and r.get("image") is not None:
                img = r["image"]
                shown = (img if torch.is_tensor(img) else to_tensor([img])[0])[None]
            prompts.extend([r["prompt"]] * (1 if shown is None else shown.shape[0]))
            if shown is not None:
                images.append(shown)
        if images and sum(len(i) for i in images) != len(prompts):
            raise ValueError("either every row of a batch has an image or none does")
        if not images:
            return DiffusionBatch(prompts)
        # one row's images are used as given (their memory layout too); several rows' are stacked
        stacked = images[0] if len(images) == 1 and len(images[0]) > 1 else torch.cat(images)
        return DiffusionBatch(prompts, stacked.to(self.pipe.device))

    def generate(self, rows: Sequence[Any], prefix: torch.Tensor | None = None, seeds: Sequence[int] | None = None,
                 seed: int = 0, num_steps: int = 20, guidance: float = 3.0) -> torch.Tensor:
        """One image per row (DDIM + CFG), images in [0, 1] (B, 3, H, W) on the CPU.

        Args:
            rows: prompts or rows with a "prompt".
            prefix: adversarial prefix embeddings (1 or B, k, D) inserted after BOS.
            seeds: one evaluation seed per row (image i then depends only on seeds[i]); or
            seed: one seed for the batch's noise.
            num_steps, guidance: DDIM steps and CFG scale.
        """
        prompts = [prompt_of(r) for r in rows]
        with torch.no_grad():
            cond = None if prefix is None else self.pipe.encode_prompts(prompts, prefix=prefix)
        return self.pipe.sample(prompts, num_steps=num_steps, guidance=guidance, seed=seed, seeds=seeds, cond=cond)

    def likelihood_rows(self, rows: Sequence[Any], seed: int = 0, batch_size: int = 16) -> list[dict]:
        """``rows`` with an image each, as the denoising loss needs: a row without one gets this model's own image
        of its prompt (seeded per row), as SalUn's mask uses images of the forget concept."""
        out = [dict(r) if isinstance(r, dict) else {"prompt": r} for r in rows]
        missing = [i for i, r in enumerate(out) if r.get("image") is None and r.get("images") is None]
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            images = self.generate([out[i] for i in chunk], seeds=[seed * 1_000_003 + i for i in chunk])
            for i, image in zip(chunk, images):
                out[i]["image"] = image
        return out

    # ------------------------------------------------------------------ scores
    def noised(self, batch: DiffusionBatch, generator: torch.Generator):
        """(x_t, t, noise) for the batch's images at uniformly drawn timesteps."""
        if batch.images is None:
            raise ValueError("likelihood-based objectives on a diffusion model need images of the forget/retain "
                             "prompts (rows with an 'image'); generate them with the original model first")
        return self.pipe.noise(self.pipe.encode_images(batch.images), generator, shard=batch.shard)

    def per_example_nll(self, batch: DiffusionBatch, generator: torch.Generator, smoothing: float = 0.0):
        if smoothing:
            raise ValueError("label smoothing needs categorical outputs; a diffusion model predicts noise")
        xt, t, noise = self.noised(batch, generator)
        eps = self.pipe.predict_noise(xt, t, batch.cond(self.pipe))
        nll = (eps - noise).pow(2).flatten(1).mean(-1)  # (B,)
        return nll, torch.ones_like(nll)

    @torch.no_grad()
    def sample_xt(self, prompts: Sequence[str], generator: torch.Generator, num_steps: int | None = None,
                  guidance: float | None = None, shard: tuple[int, int] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """ESD's x_t: DDIM-sample with the current model and stop at a random step; returns (x_t, t (B,)).
        With ``shard`` = (offset, total) the starting noise is drawn for ``total`` rows and these rows' share kept."""
        num_steps = num_steps or self.sample_steps
        guidance = self.guidance if guidance is None else guidance
        stop = int(torch.randint(0, num_steps, (1,), generator=generator))
        rows, total = share_of(shard, len(prompts))
        x = torch.randn((total, *self.pipe.latent_shape), generator=generator)[rows].to(self.pipe.device)
        cond = self.pipe.encode_prompts(prompts)
        uncond = self.pipe.encode_prompts([""]).expand_as(cond)
        x = self.pipe.denoise(x, cond, uncond, num_steps, guidance, stop_at=stop)
        t = self.pipe.ddim(num_steps).timesteps[stop]
        return x, torch.full((len(prompts),), int(t), dtype=torch.long, device=x.device)

    def esd_latents(self, prompts: Sequence[str], generator: torch.Generator, num_steps: int | None = None,
                    guidance: float | None = None, shard: tuple[int, int] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """ESD's x_t for ``prompts``: (x_t, t, frozen). Drawn from ``self.bank`` when it covers these prompts and
        settings (``frozen`` = the frozen model's (eps_u, eps_c) at x_t, computed when the bank was built), or from
        ``self.pool`` (the current state of a trajectory the trained model is sampling; ``frozen`` = None), else
        sampled with the current model (``sample_xt``; ``frozen`` = None). Without ``num_steps`` / ``guidance``
        (a retain term's x_t) the bank's or pool's own settings are taken."""
        source = self.bank if self.bank is not None else self.pool
        if source is not None:
            num_steps = num_steps or source.ddim_steps
            guidance = source.guidance if guidance is None else guidance
        if self.bank is not None and self.bank.covers(prompts, num_steps, guidance):
            xt, t, eps_u, eps_c = self.bank.draw(prompts, generator, shard=shard)
            return xt, t, (eps_u, eps_c)
        if self.pool is not None and self.pool.covers(prompts, num_steps, guidance):
            xt, t = self.pool.draw(prompts, generator, shard=shard)
            return xt, t, None
        xt, t = self.sample_xt(prompts, generator, num_steps, guidance, shard=shard)
        return xt, t, None

    def batch_latents(self, batch: DiffusionBatch, generator: torch.Generator, num_steps: int | None = None,
                      guidance: float | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """(x_t, t, frozen) for a batch: its images noised (``frozen`` = None) when it has images, else
        ``esd_latents`` of its prompts."""
        if batch.images is not None:
            xt, t, _ = self.noised(batch, generator)
            return xt, t, None
        return self.esd_latents(batch.prompts, generator, num_steps, guidance, shard=batch.shard)

    def reference_noise(self, xt: torch.Tensor, t: torch.Tensor, prompts: Sequence[str], reference: Reference,
                        frozen: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The frozen reference's eps(x_t, c) (B, C, H, W): ``frozen[1]`` when a bank already holds it (from
        ``esd_latents``), else computed under ``reference``."""
        if frozen is not None:
            return frozen[1]
        from diffusion.smoothing import suspended

        with torch.no_grad(), reference.active(), suspended(self.pipe.unet):  # the original, undefended
            return self.pipe.predict_noise(xt, t, self.pipe.encode_prompts(prompts))

    def output_divergence(self, batch: DiffusionBatch, reference: Reference, generator: torch.Generator):
        xt, t, frozen = self.batch_latents(batch, generator)
        ref = self.reference_noise(xt, t, batch.prompts, reference, frozen)
        eps = self.pipe.predict_noise(xt, t, batch.cond(self.pipe))
        return losses.gaussian_kl(ref, eps)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """The pipeline folder; with an ECO guard, the guard alone (``eco.json`` + probe) naming the pipeline's
        folder as its base (the weights are the base's, unchanged)."""
        if self.pipe.guard is None:
            self.pipe.save(path)
            return
        from erasure.guard import save_guard

        save_guard(path, self.pipe.guard, str(self.pipe.source) if self.pipe.source else None,
                   save_base=self._save_unguarded)

    def _save_unguarded(self, path: str | os.PathLike) -> None:
        guard, self.pipe.guard = self.pipe.guard, None
        try:
            self.pipe.save(path)
        finally:
            self.pipe.guard = guard

    def save_lora(self, path: str | os.PathLike, lora: dict) -> None:
        """Write trained LoRA adapters (``erasure.selectors.export_lora``) as the
        ``pytorch_lora_weights.safetensors`` that ``pipe.load_lora_weights(path)`` loads onto the original pipeline
        (diffusers' own ``save_lora_weights``, with each adapter's config as metadata)."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers

        unknown = sorted(set(lora) - {"unet", "text_encoder"})
        if unknown:
            raise ValueError(f"LoRA on {unknown} has no diffusers adapter format (unet and text_encoder only)")
        kwargs = {}
        for comp, (state, config) in lora.items():
            kwargs[f"{comp}_lora_layers"] = convert_state_dict_to_diffusers(state)
            kwargs[f"{comp}_lora_adapter_metadata"] = config.to_dict()
        StableDiffusionPipeline.save_lora_weights(path, safe_serialization=True, **kwargs)
