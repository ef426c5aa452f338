"""Built-in model names -> the shipped weights' folders (anything else is a local path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# name -> (package holding the weights, folder under its weights/ directory)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "mini-canvas": ("canvas_data", "mini-canvas"),
    "mini-canvas-evaluator": ("canvas_data", "mini-canvas-evaluator"),
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
