"""Built-in model names -> the shipped weights' folders (anything else is a local path)."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# name -> (package holding the weights, folder under its weights/ directory)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "mini-canvas": ("canvas_data", "mini-canvas"),
    "mini-canvas-evaluator": ("canvas_data", "mini-canvas-evaluator"),
    "mini-tofu": ("llm", "mini-tofu/full"),
    "mini-tofu-retain90": ("llm", "mini-tofu/retain90"),
    "mini-tofu-retain95": ("llm", "mini-tofu/retain95"),
    "mini-tofu-retain99": ("llm", "mini-tofu/retain99"),
}


def resolve_model_path(name_or_path: str) -> Path:
    """A built-in name or a local folder -> an existing folder; clear errors otherwise."""
    if name_or_path in BUILTIN_MODELS:
        package, folder = BUILTIN_MODELS[name_or_path]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"built-in model {name_or_path!r} needs the {package!r} package")
        path = Path(spec.origin).parent / "weights" / folder
        if not path.is_dir():
            raise FileNotFoundError(f"built-in model {name_or_path!r} is missing its weights at {path}")
        return path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model path {name_or_path!r} does not exist "
                                f"(built-in names: {', '.join(sorted(BUILTIN_MODELS))})")
    return path


RECOMMENDED_FILE = "recommended.json"


def recommended_settings(name_or_path: str, method: str, concept: str | None = None) -> dict:
    """Loop settings the model's authors tuned per method, from ``recommended.json`` beside the weights:
    ``{"esd-x": {"steps": 150, "lr": 1e-3, "options": {...}, "concepts": {"Star": {"steps": 100}}}}``; a
    concept's entry overrides the method's. Empty when there is none.

    Explicit arguments always win; the paper defaults apply where neither says anything.
    """
    try:
        f = resolve_model_path(name_or_path) / RECOMMENDED_FILE
    except FileNotFoundError:
        return {}
    if not f.is_file():
        return {}
    rec = dict(json.loads(f.read_text()).get(method, {}))
    special = rec.pop("concepts", {}).get(concept, {})
    if not special:
        return rec
    return {**rec, **{k: v for k, v in special.items() if k != "options"},
            "options": {**rec.get("options", {}), **special.get("options", {})}}


def apply_recommended(name_or_path: str, method: str, steps: int | None, lr: float | None, train: dict | None,
                      options: dict | None, concept: str | None = None) -> tuple[int | None, float | None, dict, dict]:
    """Merge ``recommended_settings`` under the caller's explicit values: (steps, lr, train, options)."""
    rec = recommended_settings(name_or_path, method, concept)
    if rec:
        logger.info("using %s's recommended settings for %s: %s", name_or_path, method, rec)
    steps = steps if steps is not None else rec.get("steps")
    lr = lr if lr is not None else rec.get("lr")
    train = {**{k: v for k, v in rec.items() if k not in ("steps", "lr", "options")}, **(train or {})}
    options = {**rec.get("options", {}), **(options or {})}
    return steps, lr, train, options
