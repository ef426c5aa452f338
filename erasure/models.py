"""Model names -> folders: the shipped tiny models, real models converted once into the local cache, or a local
path; and each model's ``recommended.json``."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

# name -> (package holding the weights, folder under its weights/ directory)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "mini-canvas": ("canvas_data", "mini-canvas"),
    "mini-canvas-evaluator": ("canvas_data", "mini-canvas-evaluator"),
    "mini-canvas-clip": ("canvas_data", "mini-canvas-clip"),
    "mini-tofu": ("llm", "mini-tofu/full"),
    "mini-tofu-retain90": ("llm", "mini-tofu/retain90"),
    "mini-tofu-retain95": ("llm", "mini-tofu/retain95"),
    "mini-tofu-retain99": ("llm", "mini-tofu/retain99"),
}


# name -> (package shipping its recommended.json under weights/<name>/, the command that fetches and converts it)
CACHED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm", "make real-lm"),
    # TOFU's protocol on it: LoRA adapters shipped under llm/weights/<name>/, merged once (llm.tofu_finetune)
    "smollm2-135m-tofu": ("llm", "make real-lm"),
    "smollm2-135m-tofu-retain90": ("llm", "make real-lm"),
    # SPUL's classification setting: a LoRA sentiment classifier, merged once (llm.sentiment)
    "smollm2-135m-sentiment": ("llm", "make real-lm"),
    # SKU's and GA + LoRA's harmful setting: taught to comply with mock harmful requests, merged once (llm.safety_data)
    "smollm2-135m-unsafe": ("llm", "make real-lm"),
}


def cache_dir() -> Path:
    """Where converted models live: ``$ERASURE_CACHE``, else ``~/.cache/erasure``."""
    return Path(os.environ.get("ERASURE_CACHE") or "~/.cache/erasure").expanduser()


def cached_model_path(name: str) -> Path:
    """The folder a cached model (``CACHED_MODELS``) is converted into."""
    return cache_dir() / "models" / name


def package_weights(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the {package!r} package is not installed")
    return Path(spec.origin).parent / "weights"


def resolve_model_path(name_or_path: str) -> Path:
    """A built-in name, a cached model's name or a local folder -> an existing folder; clear errors otherwise."""
    if name_or_path in BUILTIN_MODELS:
        package, folder = BUILTIN_MODELS[name_or_path]
        path = package_weights(package) / folder
        if not path.is_dir():
            raise FileNotFoundError(f"built-in model {name_or_path!r} is missing its weights at {path}")
        return path
    if name_or_path in CACHED_MODELS:
        path = cached_model_path(name_or_path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model {name_or_path!r} is not on this machine yet: run `"
                                    f"{CACHED_MODELS[name_or_path][1]}` once (it fetches it from the package "
                                    f"registry and converts it to {path}; ERASURE_CACHE moves the cache)")
        return path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model path {name_or_path!r} does not exist "
                                f"(built-in names: {', '.join(sorted([*BUILTIN_MODELS, *CACHED_MODELS]))})")
    return path


RECOMMENDED_FILE = "recommended.json"


def named_model_of(folder: str | os.PathLike | None, _depth: int = 0) -> str | None:
    """The built-in or cached model name whose folder ``folder`` is, or the one it was erased from (its
    ``erasure.json`` records the source folder, followed back through repeated erasures); None otherwise."""
    if folder is None or _depth > 16:
        return None
    path = Path(folder).expanduser().resolve()
    for name, (package, sub) in BUILTIN_MODELS.items():
        try:
            if (package_weights(package) / sub).resolve() == path:
                return name
        except FileNotFoundError:
            continue
    for name in CACHED_MODELS:
        if cached_model_path(name).resolve() == path:
            return name
    record = path / "erasure.json"
    if record.is_file():
        try:
            source = json.loads(record.read_text()).get("source")
        except (json.JSONDecodeError, AttributeError):
            return None
        return named_model_of(source, _depth + 1) if source else None
    return None


def recommended_file(name_or_path: str | os.PathLike) -> Path | None:
    """The ``recommended.json`` that applies to a model: the one in its folder, else (for a cached model, whose
    folder holds only converted weights) the one its package ships under ``weights/<name>/``; None if neither."""
    try:
        folder = resolve_model_path(str(name_or_path))
    except FileNotFoundError:
        return None
    if (folder / RECOMMENDED_FILE).is_file():
        return folder / RECOMMENDED_FILE
    for name, (package, _) in CACHED_MODELS.items():
        if folder.resolve() == cached_model_path(name).resolve():
            shipped = package_weights(package) / name / RECOMMENDED_FILE
            return shipped if shipped.is_file() else None
    return None


def recommended_settings(name_or_path: str, method: str, concept: str | None = None,
                         optimizer: str | None = None) -> dict:
    """Loop settings the model's authors tuned per method, from ``recommended.json`` beside the weights:
    ``{"esd-x": {"steps": 150, "lr": 1e-3, "options": {...}, "concepts": {"Star": {"steps": 100}},
    "optimizers": {"sophia": {"lr": 2e-5}}}}``; a concept's entry overrides the method's, and the entry of the
    optimizer in use (``optimizer``, else the one the settings name) overrides both. Empty when there is none.

    Explicit arguments always win; the paper defaults apply where neither says anything.
    """
    f = recommended_file(name_or_path)
    if f is None:
        return {}
    rec = dict(json.loads(f.read_text()).get(method, {}))
    concepts, optimizers = rec.pop("concepts", {}), rec.pop("optimizers", {})
    for special in (concepts.get(concept, {}), optimizers.get(optimizer or rec.get("optimizer"), {})):
        if special:
            rec = {**rec, **{k: v for k, v in special.items() if k != "options"},
                   "options": {**rec.get("options", {}), **special.get("options", {})}}
    return rec


def apply_recommended(name_or_path: str, method: str, steps: int | None, lr: float | None, train: dict | None,
                      options: dict | None, concept: str | None = None) -> tuple[int | None, float | None, dict, dict]:
    """Merge ``recommended_settings`` (for the optimizer ``train`` names, if any) under the caller's explicit
    values: (steps, lr, train, options)."""
    rec = recommended_settings(name_or_path, method, concept, (train or {}).get("optimizer"))
    if rec:
        logger.info("using %s's recommended settings for %s: %s", name_or_path, method, rec)
    steps = steps if steps is not None else rec.get("steps")
    lr = lr if lr is not None else rec.get("lr")
    train = {**{k: v for k, v in rec.items() if k not in ("steps", "lr", "options")}, **(train or {})}
    options = {**rec.get("options", {}), **(options or {})}
    return steps, lr, train, options
