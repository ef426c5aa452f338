"""A minimal text-to-image pipeline over diffusers components: load/save, prompt encoding, CFG sampling.

Works for the tiny pixel-space default (no VAE) and for latent models such as Stable Diffusion (VAE
present): the latent shape and scaling come from the components' own configs, never from constants.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from safetensors import SafetensorError
from transformers import AutoTokenizer, CLIPTextModel, PreTrainedTokenizerBase

from diffusion.concepts import ConceptSet
from erasure.files import require_safetensors
from erasure.progress import progress


logger = logging.getLogger(__name__)

# the components T2IPipeline uses itself; a pipeline's others (safety checker, feature extractor...) are extras
OWNED = ("unet", "text_encoder", "tokenizer", "scheduler", "vae")


def to_tensor(images: Sequence) -> torch.Tensor:
    """PIL images -> float tensor in [0, 1], shape (B, 3, H, W)."""
    import numpy as np

    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


@dataclass
class T2IPipeline:
    """UNet + text encoder + tokenizer + scheduler (+ optional VAE).

    Args:
        unet: a ``UNet2DConditionModel`` predicting epsilon.
        text_encoder: a CLIP-style text encoder whose last hidden state conditions the UNet.
        tokenizer: the text encoder's tokenizer.
        scheduler: the training noise scheduler (its config also builds the DDIM sampler).
        vae: optional ``AutoencoderKL``; when present the UNet works on ``vae.config.scaling_factor`` latents.
        concepts: the concept vocabulary the model knows (saved as concepts.json), when there is one.
        source: the folder it was loaded from (its ``recommended.json`` applies to ``erase``), if any.
        extras: the pipeline's other components (``safety_checker``, ``feature_extractor``, ...), kept as given and
            written back on save: a live object, ``None``, or the folder it sits in (copied byte for byte).
        pipeline_config: model_index.json's other entries (``_class_name``, ``requires_safety_checker``, ...) and
            the ``[library, class]`` entries of folder extras.
        guard: an ECO guard (``erasure.guard.PromptGuard``) that corrupts the text-encoder states of the prompts
            it flags (set by ``erase(..., method="eco")``); None: prompts pass as they are.
    """

    unet: UNet2DConditionModel
    text_encoder: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    scheduler: Any
    vae: AutoencoderKL | None = None
    concepts: ConceptSet | None = None
    source: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    pipeline_config: dict[str, Any] = field(default_factory=dict)
    guard: Any = None

    def __post_init__(self) -> None:
        vocab = getattr(self.text_encoder.config, "vocab_size", None)
        if vocab is not None and len(self.tokenizer) > vocab:
            raise ValueError(
                f"tokenizer has {len(self.tokenizer)} tokens but the text encoder's embedding table has {vocab}: "
                "they do not belong to the same model"
            )
        width = getattr(self.text_encoder.config, "hidden_size", None)
        if width is not None and self.unet.config.cross_attention_dim not in (width, None):
            raise ValueError(
                f"text encoder width {width} does not match the UNet's cross_attention_dim "
                f"{self.unet.config.cross_attention_dim}"
            )

    # ------------------------------------------------------------------ properties from configs
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def max_length(self) -> int:
        """Longest token sequence (BOS/EOS included) the text encoder accepts."""
        n = getattr(self.text_encoder.config, "max_position_embeddings", None)
        return int(min(n, self.tokenizer.model_max_length) if n else self.tokenizer.model_max_length)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the UNet denoises."""
        s = self.unet.config.sample_size
        h, w = (s, s) if isinstance(s, int) else tuple(s)
        return (self.unet.config.in_channels, h, w)

    def to(self, device: torch.device | str) -> "T2IPipeline":
        for m in self.modules().values():
            m.to(device)
        return self

    def modules(self) -> dict[str, torch.nn.Module]:
        mods = {"unet": self.unet, "text_encoder": self.text_encoder}
        if self.vae is not None:
            mods["vae"] = self.vae
        if self.guard is not None:  # part of what the model computes (evaluation caches key on it)
            mods["guard"] = self.guard
        return mods

    # ------------------------------------------------------------------ text
    def ordinary_token_ids(self) -> torch.Tensor:
        """Every vocabulary id except the tokenizer's special tokens (what an adversarial prefix token may be)."""
        special = set(self.tokenizer.all_special_ids)
        return torch.tensor([i for i in range(len(self.tokenizer)) if i not in special])

    def tokenize(self, prompts: Sequence[str], reserve: int = 0) -> torch.Tensor:
        """Token ids (B, L) padded to ``max_length``; raises on prompts the encoder cannot hold.

        ``reserve`` keeps that many positions free (for adversarial prefix tokens).
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        for p, t in zip(prompts, ids):
            if len(t) > self.max_length:
                raise ValueError(
                    f"prompt {p!r} is {len(t)} tokens long; the text encoder accepts at most {self.max_length}"
                )
            if len(t) + reserve > self.max_length:
                raise ValueError(f"{reserve} prefix tokens do not fit: prompt {p!r} is {len(t)} tokens and the "
                                 f"text encoder accepts {self.max_length} ({self.max_length - len(t)} free positions)")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = torch.full((len(ids), self.max_length), pad, dtype=torch.long)
        for i, t in enumerate(ids):
            out[i, : len(t)] = torch.tensor(t)
        return out.to(self.device)

    def concept_token_mask(self, prompts: Sequence[str], concept: str, who: str = "this") -> torch.Tensor:
        """(B, L) bool: where ``concept``'s tokens sit in each tokenized prompt (every occurrence); ``ValueError``
        naming ``who`` needs them when a prompt lacks them."""
        ids = self.tokenize(prompts)  # (B, L)
        words = self.tokenizer(concept, add_special_tokens=False)["input_ids"]
        if not words:
            raise ValueError(f"the concept {concept!r} has no tokens")
        out = torch.zeros(ids.shape, dtype=torch.bool)
        n = len(words)
        for b, row in enumerate(ids.tolist()):
            for i in range(len(row) - n + 1):
                if row[i: i + n] == words:
                    out[b, i: i + n] = True
            if not out[b].any():
                raise ValueError(f"{who} works on the concept's tokens, but prompt {prompts[b]!r} does not contain "
                                 f"{concept!r}'s tokens")
        return out.to(ids.device)

    def encode_prompts(self, prompts: Sequence[str], prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Text-encoder hidden states (B, L, D) for ``prompts`` (gradients flow if the encoder trains).

        ``prefix`` (B or 1, k, D) are token embeddings inserted right after BOS (adversarial prompts). An ECO
        ``guard`` corrupts the states of the prompts it flags (its features: ``prompt_features`` of these states),
        never the empty prompt: classifier-free guidance's unconditional branch is no user prompt.
        """
        if prefix is None:
            h = self.encode_ids(self.tokenize(prompts))
        else:
            k = prefix.shape[-2]
            ids = self.tokenize(prompts, reserve=k)
            emb = self.text_encoder.get_input_embeddings()(ids)  # (B, L, D)
            pre = prefix.to(emb.dtype).expand(emb.shape[0], -1, -1)
            h = self.encode_embeddings(torch.cat([emb[:, :1], pre, emb[:, 1 : emb.shape[1] - k]], dim=1))
        if self.guard is not None and self.guard.enabled:  # the empty prompt (guidance's unconditional) passes
            texts = [prompts] if isinstance(prompts, str) else list(prompts)
            user = torch.tensor([bool(p.strip()) for p in texts], device=h.device)[:, None].expand(h.shape[:2])
            h = self.guard.apply(self.prompt_features(h), h, positions=user)
        return h

    @staticmethod
    def prompt_features(states: torch.Tensor) -> torch.Tensor:
        """(B, D) what an ECO classifier reads of text-encoder states (B, L, D): their mean over positions."""
        return states.detach().float().mean(1)

    def encode_embeddings(self, token_embeds: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) from token embeddings (B, L, D) of a CLIP text encoder (positions added here)."""
        from transformers.masking_utils import create_causal_mask

        tm = getattr(self.text_encoder, "text_model", self.text_encoder)  # transformers 4 nests it, 5 does not
        if not all(hasattr(tm, a) for a in ("embeddings", "encoder", "final_layer_norm")):
            raise ValueError(f"embedding-level prompts need a CLIP text encoder, got {type(self.text_encoder).__name__}")
        h = tm.embeddings(inputs_embeds=token_embeds)
        # transformers 5 names it ``cache`` (``past_key_values`` is deprecated), 4 only ``past_key_values``
        renamed = "cache" in inspect.signature(create_causal_mask).parameters
        no_cache = {"cache": None} if renamed else {"past_key_values": None}
        mask = create_causal_mask(config=self.text_encoder.config, inputs_embeds=h, attention_mask=None, **no_cache)
        h = tm.encoder(inputs_embeds=h, attention_mask=mask, is_causal=True).last_hidden_state
        return tm.final_layer_norm(h)

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Text-encoder hidden states (B, L, D) from token ids (B, L)."""
        return self.text_encoder(input_ids=ids).last_hidden_state

    # ------------------------------------------------------------------ images <-> model space
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, 3, H, W) -> what the UNet denoises (pixels in [-1, 1] or scaled latents)."""
        x = images * 2 - 1
        if self.vae is None:
            return x
        return self.vae.encode(x.to(self.vae.dtype)).latent_dist.sample() * self.vae.config.scaling_factor

    def noise(self, x0: torch.Tensor, generator: torch.Generator, shard: tuple[int, int] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward diffusion at uniformly drawn timesteps: (x_t, t (B,), noise), drawn from ``generator``
        (t first, then the noise) and noised by the scheduler (sqrt(a_t) x0 + sqrt(1 - a_t) noise).
        With ``shard`` = (offset, total), t and the noise are drawn for ``total`` rows and these B rows' share kept
        (several processes sharing one batch draw what one process would)."""
        noiser = self.noise_scheduler
        rows, total = share_of(shard, x0.shape[0])
        t = torch.randint(0, len(noiser.alphas_cumprod), (total,), generator=generator)[rows]
        noise = torch.randn((total, *x0.shape[1:]), generator=generator)[rows].to(x0)
        return noiser.add_noise(x0, noise, t.to(x0.device)), t.to(x0.device), noise

    @property
    def noise_scheduler(self) -> DDPMScheduler:
        """The training-time forward process: a DDPM scheduler over the pipeline scheduler's config (whatever
        class samples: PNDM, DDIM, Euler ... share the betas), so noising means the same thing for every model."""
        if isinstance(self.scheduler, DDPMScheduler):
            return self.scheduler
        cached = getattr(self, "_noiser", None)
        if cached is None or cached[0] is not self.scheduler:
            cached = (self.scheduler, DDPMScheduler.from_config(self.scheduler.config))
            self._noiser = cached
        return cached[1]

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> images in [0, 1] (B, 3, H, W)."""
        if self.vae is not None:
            x = self.vae.decode(x / self.vae.config.scaling_factor).sample
        return ((x.float() + 1) / 2).clamp(0, 1)

    # ------------------------------------------------------------------ sampling
    def ddim(self, num_steps: int) -> DDIMScheduler:
        sched = DDIMScheduler.from_config(self.scheduler.config)
        sched.set_timesteps(num_steps, device=self.device)
        return sched

    def predict_noise(self, x: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, c, t) for a batch; ``t`` may be a scalar or a (B,) tensor."""
        if not torch.is_tensor(t) or t.ndim == 0:
            t = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        return self.unet(x, t, encoder_hidden_states=cond).sample

    def guided_noise(self, x, t, cond, uncond, guidance: float) -> torch.Tensor:
        """Classifier-free guidance in one batched UNet call: eps_u + g * (eps_c - eps_u)."""
        eps = self.predict_noise(torch.cat([x, x]), torch.cat([t, t]) if torch.is_tensor(t) and t.ndim else t,
                                 torch.cat([uncond, cond]))
        eps_u, eps_c = eps.chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str],
        num_steps: int = 20,
        guidance: float = 3.0,
        seed: int = 0,
        batch_size: int = 64,
        cond: torch.Tensor | None = None,
        show_progress: bool = False,
        seeds: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Generate one image per prompt with DDIM + classifier-free guidance.

        Args:
            prompts: the prompts (B of them).
            num_steps: DDIM steps.
            guidance: CFG scale (1.0 disables guidance).
            seed: seeds the initial noise; image ``i`` depends only on (seed, i).
            batch_size: prompts per UNet call.
            cond: optional precomputed prompt embeddings (B, L, D) replacing ``prompts``' encodings.
            show_progress: show a tqdm bar over batches.
            seeds: one seed per image instead of ``seed`` (image ``i`` then depends only on ``seeds[i]``, so a
                prompt generated alone or in a batch gets the same noise).

        Returns:
            Images in [0, 1], shape (B, 3, H, W), on the CPU.
        """
        n = len(prompts) if cond is None else cond.shape[0]
        if seeds is not None:
            if len(seeds) != n:
                raise ValueError(f"sample: {len(seeds)} seeds for {n} images")
            noise = torch.stack([torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(int(s)))
                                 for s in seeds])
        else:
            noise = torch.randn((n, *self.latent_shape), generator=torch.Generator().manual_seed(seed))
        uncond_one = self.encode_prompts([""])
        outs = []
        for start in progress(range(0, n, batch_size), desc="sampling", disable=not show_progress):
            stop = min(start + batch_size, n)
            c = cond[start:stop] if cond is not None else self.encode_prompts(prompts[start:stop])
            x = self.denoise(noise[start:stop].to(self.device), c, uncond_one.expand_as(c), num_steps, guidance)
            outs.append(self.decode(x).cpu())
        return torch.cat(outs)

    def denoise(self, x, cond, uncond, num_steps: int, guidance: float, stop_at: int | None = None):
        """Run DDIM from noise ``x``; with ``stop_at`` return the partially denoised x after that many steps."""
        sched = self.ddim(num_steps)
        for i, t in enumerate(sched.timesteps):
            if stop_at is not None and i >= stop_at:
                break
            eps = self.guided_noise(x, t, cond, uncond, guidance)
            x = sched.step(eps, t, x).prev_sample
        return x

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write a diffusers pipeline folder that ``DiffusionPipeline.from_pretrained`` loads: every component
        (the trained ones as safetensors, the scheduler in its own class, the extras as given) and model_index.json
        with the source's entries (``_class_name``, ``requires_safety_checker``, ...) kept."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        index: dict[str, Any] = {"_class_name": "StableDiffusionPipeline"}
        index.update({k: v for k, v in self.pipeline_config.items() if not _is_entry(v) or k in self.extras})
        index["_diffusers_version"] = importlib.import_module("diffusers").__version__
        for name, obj in {**{c: getattr(self, c) for c in OWNED}, **self.extras}.items():
            if obj is None:  # diffusers loads a [null, null] entry as None
                index[name] = [None, None]
                continue
            if isinstance(obj, Path):  # an extra never loaded: its folder as the source had it
                shutil.copytree(obj, path / name, dirs_exist_ok=True)
                continue
            weights = {"safe_serialization": True} if isinstance(obj, torch.nn.Module) else {}
            obj.save_pretrained(path / name, **weights)
            index[name] = list(_library_and_class(obj))
        (path / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
        if self.concepts is not None:
            self.concepts.save(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, torch_dtype: torch.dtype | None = None) -> "T2IPipeline":
        """Load a pipeline folder written by ``save`` or by diffusers (Stable Diffusion layout).

        The scheduler keeps the class model_index.json (or its scheduler_config.json) names; components this
        project does not use (safety checker, feature extractor, ...) stay on disk and are copied on save.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"model path {str(path)!r} does not exist or is not a folder")
        missing = [c for c in ("unet", "text_encoder", "tokenizer", "scheduler") if not (path / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"{path} is not a text-to-image pipeline folder: missing {', '.join(missing)}/")
        index = _read_json(path / "model_index.json")
        kw = {"use_safetensors": True, **({"torch_dtype": torch_dtype} if torch_dtype else {})}
        weighted = ["unet", "text_encoder"] + (["vae"] if (path / "vae").is_dir() else [])
        for component in weighted:
            require_safetensors(path / component)
        try:
            unet = UNet2DConditionModel.from_pretrained(path / "unet", **kw)
            text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", **kw)
            tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer")
            scheduler = _scheduler_class(index, path / "scheduler").from_pretrained(path / "scheduler")
            vae = AutoencoderKL.from_pretrained(path / "vae", **kw) if "vae" in weighted else None
        except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # a damaged or incomplete folder
            raise ValueError(f"cannot load the pipeline in {path}: {' '.join(str(err).split())[:300]}") from err
        extras = {k: (path / k if (path / k).is_dir() and v[0] else None)
                  for k, v in index.items() if _is_entry(v) and k not in OWNED}
        config = {k: v for k, v in index.items() if k != "_diffusers_version" and (k not in OWNED or not _is_entry(v))}
        return cls(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler, vae=vae,
                   concepts=ConceptSet.load(path), source=path, extras=extras, pipeline_config=config)

    @classmethod
    def from_diffusers(cls, pipe: Any) -> "T2IPipeline":
        """Wrap a diffusers ``StableDiffusionPipeline`` (shares its modules; nothing is copied)."""
        name = getattr(getattr(pipe, "config", None), "_name_or_path", None)
        source = Path(name) if name and Path(name).is_dir() else None
        components = dict(getattr(pipe, "components", {}))
        config = {k: v for k, v in dict(getattr(pipe, "config", {})).items()
                  if k not in components and k not in OWNED and not k.startswith("_")}
        return cls(unet=pipe.unet, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                   scheduler=pipe.scheduler, vae=getattr(pipe, "vae", None), source=source,
                   extras={k: v for k, v in components.items() if k not in OWNED},
                   pipeline_config={"_class_name": type(pipe).__name__, **config})


def share_of(shard: tuple[int, int] | None, n: int) -> tuple[slice, int]:
    """(these n rows' slice, how many rows to draw random numbers for): with ``shard`` = (offset, total) the draws
    are made for the whole step's batch and this process keeps its rows, so processes together draw what one would."""
    offset, total = shard or (0, n)
    return slice(offset, offset + n), total


def _library_and_class(obj: Any) -> tuple[str, str]:
    """The model_index.json entry diffusers writes for a component (e.g. ``("stable_diffusion",
    "StableDiffusionSafetyChecker")``: a pipeline module's classes are named by that module)."""
    from diffusers.pipelines.pipeline_loading_utils import _fetch_class_library_tuple

    return tuple(_fetch_class_library_tuple(obj))


def _is_entry(value: Any) -> bool:
    """A model_index.json component entry: ``[library, class]`` (``[null, null]`` for an absent one)."""
    return isinstance(value, (list, tuple)) and len(value) == 2


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def _scheduler_class(index: dict[str, Any], folder: Path) -> type:
    """The diffusers scheduler class the pipeline names (model_index.json, else scheduler_config.json)."""
    import diffusers

    entry = index.get("scheduler")
    name = entry[1] if _is_entry(entry) and entry[1] else _read_json(folder / "scheduler_config.json").get("_class_name")
    scheduler_cls = getattr(diffusers, str(name), None) if name else DDPMScheduler
    if not (isinstance(scheduler_cls, type) and issubclass(scheduler_cls, diffusers.SchedulerMixin)):
        raise ValueError(f"{folder}: {name!r} is not a diffusers scheduler class")
    return scheduler_cls
