"""Method and adapter registries: the one place where every method name is registered.

Entries are ``"module:attribute"`` strings imported on first use, so the core never imports a modality
package (``diffusion``/``llm``) at import time, yet ``erase(..., method="esd-x")`` finds ESD.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from erasure.objectives import Objective

# name -> "module:attribute" of a ``Method``. Add a method here (or call ``register_method``).
_BUILTIN_METHODS: dict[str, str] = {
    "ga": "erasure.methods:GA",
    "graddiff": "erasure.methods:GRADDIFF",
    "npo": "erasure.methods:NPO_METHOD",
    "simnpo": "erasure.methods:SIMNPO_METHOD",
    "esd-x": "diffusion.esd:ESD_X",
    "esd-u": "diffusion.esd:ESD_U",
    "esd-all": "diffusion.esd:ESD_ALL",
    "esd-x-strict": "diffusion.esd:ESD_X_STRICT",
    "advunlearn": "diffusion.advunlearn:ADVUNLEARN",
    "advunlearn-fast": "diffusion.advunlearn:ADVUNLEARN_FAST",
    "idkpo": "llm.methods:IDKPO",
    "rmu": "llm.methods:RMU",
    "ugradsl": "llm.methods:UGRADSL",
}

# Adapter classes tried in order by ``adapter_for``; each has ``accepts(model)`` and ``from_model(...)``.
_BUILTIN_ADAPTERS: list[str] = [
    "diffusion.adapter:DiffusionAdapter",
    "llm.adapter:CausalLMAdapter",
]

_METHODS: dict[str, "Method"] = {}


@dataclass
class Method:
    """A registered unlearning method.

    Args:
        name: registry name (``erase(..., method=name)``).
        modality: "any", "diffusion" or "llm".
        config_cls: dataclass of the method's own options (unknown options are rejected).
        build: ``(config, adapter) -> Objective``.
        selector: default selector: a preset name, or ``(adapter, config) -> Selector`` (None: the adapter's).
        train_defaults: the paper's loop settings (lr, steps, optimizer, batch_size...).
        paper: link to the paper.
        adversary: ``(config) -> Adversary`` for adversarial unlearning (None: no inner attack).
    """

    name: str
    modality: str
    config_cls: type
    build: Callable[[Any, Any], Objective]
    selector: str | Callable[[Any, Any], Any] | None = None
    train_defaults: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    adversary: Callable[[Any], Any] | None = None


def _load(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def register_method(method: Method) -> Method:
    """Register a user-defined method (overrides a built-in of the same name)."""
    _METHODS[method.name] = method
    return method


def method_names() -> list[str]:
    return sorted(set(_BUILTIN_METHODS) | set(_METHODS))


def get_method(name: str) -> Method:
    """The method registered under ``name``; ``ValueError`` listing the known names otherwise."""
    if name in _METHODS:
        return _METHODS[name]
    if name not in _BUILTIN_METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
    method = _load(_BUILTIN_METHODS[name])
    _METHODS[name] = method
    return method


def adapter_for(model: Any, **kwargs: Any) -> Any:
    """Wrap ``model`` in the first registered adapter that accepts it (an adapter is returned as is)."""
    if hasattr(model, "per_example_nll") and hasattr(model, "modality"):
        return model
    tried = []
    for ref in _BUILTIN_ADAPTERS:
        try:
            cls = _load(ref)
        except ModuleNotFoundError:  # a modality package not installed / not built yet
            continue
        tried.append(cls.__name__)
        if cls.accepts(model):
            return cls.from_model(model, **kwargs)
    raise ValueError(f"no adapter accepts a model of type {type(model).__name__} (tried {', '.join(tried)})")
