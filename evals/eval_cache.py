"""Evaluation results computed once: a record (and its images) keyed by everything it depends on.

The "before" numbers of a model (UA/IRA/CRA of the original, the images a demo shows) depend only on its weights,
the judge, the prompts and the sampler settings; a demo or benchmark that evaluates the same model again reads them
here instead of generating again. Lookup order: ``<model folder>/eval-cache/`` (shipped with a model), then
``$ERASURE_EVAL_CACHE`` (default ``$ERASURE_CACHE/eval-cache``), where new results are written. A file is one
safetensors with the images as uint8 (for display; the record's numbers were computed from the full-precision
images) and the record as JSON metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import torch

logger = logging.getLogger(__name__)

CACHE_FOLDER = "eval-cache"
VERSION = 1


def eval_cache_dir() -> Path:
    """Where new results are written: ``$ERASURE_EVAL_CACHE``, else ``<erasure cache>/eval-cache``."""
    from erasure.models import cache_dir

    env = os.environ.get("ERASURE_EVAL_CACHE")
    return Path(env).expanduser() if env else cache_dir() / CACHE_FOLDER


def config_of(module: Any) -> dict:
    """A module's config as a plain dict (diffusers' FrozenDict or transformers' PretrainedConfig), else {}."""
    config = getattr(module, "config", None)
    if config is None:
        return {}
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def eval_key(modules: dict[str, torch.nn.Module], **settings: Any) -> str:
    """sha256 over the modules' weights (names, shapes, dtypes, bytes) and the JSON of ``settings``."""
    from erasure.loop import fingerprint_tensors

    weights = {f"{c}.{n}": t for c, m in sorted(modules.items()) for n, t in m.state_dict().items()}
    what = {"weights": fingerprint_tensors(weights), "settings": settings, "version": VERSION}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def load_cached(key: str, folders: Iterable[Path | None]) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(record, images in [0, 1]) of ``key`` from the first folder that has it, else None."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    for folder in folders:
        if folder is None:
            continue
        path = Path(folder) / f"{key}.safetensors"
        if not path.is_file():
            continue
        try:
            with safe_open(str(path), "pt") as f:
                record = json.loads(f.metadata()["record"])
            images = {k: v.float() / 255 for k, v in load_file(str(path)).items()}
        except (OSError, ValueError, KeyError) as err:
            logger.warning("evaluation cache %s unreadable (%s); evaluating again", path, err)
            continue
        logger.info("evaluation read from the cache %s", path)
        return record, images
    return None


def save_cached(key: str, record: dict, images: dict[str, torch.Tensor], folder: Path | None = None) -> Path:
    """Write ``record`` and ``images`` ({name: (N, 3, H, W) in [0, 1]}) under ``key`` (atomically)."""
    from safetensors.torch import save_file

    folder = Path(folder) if folder is not None else eval_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.safetensors"
    tmp = folder / f".tmp-{os.getpid()}-{key}.safetensors"
    tensors = {k: (v.clamp(0, 1) * 255).round().to(torch.uint8).contiguous() for k, v in images.items()}
    save_file(tensors, tmp, metadata={"record": json.dumps(record, default=str)})
    tmp.replace(path)
    return path
