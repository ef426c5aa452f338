"""The registries: the one place every method, attack, modality and benchmark name is registered.

Built-in entries are ``"module:attribute"`` strings imported on first use, so the core never imports a
modality package (``diffusion``, ``llm``), the attacks or the benchmarks, yet ``erase(..., method="esd-x")``
finds ESD and ``erasure audit --attack unlearndiff`` finds UnlearnDiff. Adding one = one file + one line below
(or one ``register_*`` call from your own code).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from erasure.config import from_dict

if TYPE_CHECKING:
    from erasure.objectives import Objective

T = TypeVar("T")

# name -> "module:attribute" of a ``Method``.
_BUILTIN_METHODS: dict[str, str] = {
    "ga": "erasure.methods:GA",
    "graddiff": "erasure.methods:GRADDIFF",
    "npo": "erasure.methods:NPO_METHOD",
    "simnpo": "erasure.methods:SIMNPO_METHOD",
    "eco": "erasure.methods:ECO",
    "esd-x": "diffusion.esd:ESD_X",
    "esd-u": "diffusion.esd:ESD_U",
    "esd-all": "diffusion.esd:ESD_ALL",
    "esd-x-strict": "diffusion.esd:ESD_X_STRICT",
    "advunlearn": "diffusion.advunlearn:ADVUNLEARN",
    "advunlearn-fast": "diffusion.advunlearn:ADVUNLEARN_FAST",
    "uce": "diffusion.uce:UCE",
    "ca": "diffusion.ca:CA",
    "fmn": "diffusion.fmn:FMN",
    "salun": "diffusion.salun:SALUN",
    "idkpo": "llm.methods:IDKPO",
    "rmu": "llm.methods:RMU",
    "ugradsl": "llm.methods:UGRADSL",
    "spul": "llm.spul:SPUL",
    "sku": "llm.sku:SKU",
    "llmu": "llm.llmu:LLMU",
}

# name -> "module:attribute" of an attack class (a dataclass implementing ``erasure.adversary.Adversary``; its
# fields are its options).
_BUILTIN_ATTACKS: dict[str, str] = {
    "unlearndiff": "attacks.unlearndiff:UnlearnDiff",
    "embedding": "attacks.unlearndiff:UnlearnDiffEmbedding",
    "random": "attacks.random_tokens:RandomTokens",
    "p4d": "attacks.p4d:P4D",
    "p4d-k": "attacks.p4d:P4DK",
    "ring-a-bell": "attacks.ring_a_bell:RingABell",
    "cce": "attacks.cce:CCE",
    "advunlearn-prefix": "attacks.advunlearn_prefix:PrefixAttack",
    "soft-prompt": "attacks.soft_prompt:SoftPromptAttack",
    "relearn": "attacks.relearn:RelearnAttack",
}

# name -> "module:attribute" of a ``erasure.modality.Modality``; detection tries them in this order.
_BUILTIN_MODALITIES: dict[str, str] = {
    "diffusion": "diffusion.modality:DIFFUSION",
    "llm": "llm.modality:LLM",
}

# name -> "module:attribute" of a ``erasure.modality.Benchmark``.
_BUILTIN_BENCHMARKS: dict[str, str] = {
    "unlearncanvas": "canvas_data.benchmark:UNLEARNCANVAS",
    "mini-tofu": "llm.tofu_benchmark:MINI_TOFU",
    "mini-rwku": "llm.rwku_benchmark:MINI_RWKU",
    "mini-sentiment": "llm.sentiment:MINI_SENTIMENT",
    "mini-harmful": "llm.safety_benchmark:MINI_HARMFUL",
    "mini-verbmem": "llm.safety_benchmark:MINI_VERBMEM",
}


def _load(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """Names -> objects, built-ins imported lazily from ``"module:attribute"`` strings.

    Args:
        kind: what the entries are, for error messages ("method", "attack"...).
        builtin: the built-in entries.
    """

    def __init__(self, kind: str, builtin: dict[str, str]):
        self.kind = kind
        self._refs = dict(builtin)
        self._loaded: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Add (or override) ``name``; returns ``obj``."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        self._refs.pop(name, None)
        self._loaded[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a built-in comes back only by registering it again)."""
        self._refs.pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(dict.fromkeys([*self._refs, *self._loaded]))

    def get(self, name: str) -> T:
        """The entry ``name``; ``ValueError`` listing the known names otherwise."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._refs:
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(sorted(self.names()))}")
        obj = _load(self._refs[name])
        self._loaded[name] = obj
        return obj


# ---------------------------------------------------------------------------------------------- methods
@dataclass
class Method:
    """A registered unlearning method.

    Args:
        name: registry name (``erase(..., method=name)``).
        modality: "any", or the name of the one modality it serves ("diffusion", "llm").
        config_cls: dataclass of the method's own options (unknown options are rejected).
        build: ``(config, adapter) -> Objective`` for the training loop (None for a closed-form method).
        selector: default selector: a preset name, or ``(adapter, config) -> Selector`` (None: the adapter's).
        train_defaults: the paper's loop settings (lr, steps, optimizer, batch_size...).
        paper: link to the paper.
        adversary: ``(config) -> Adversary`` for adversarial unlearning (None: no inner attack).
        solve: a closed-form method instead of the loop: ``(adapter, config, *, forget, retain, selected) -> dict``
            edits the weights the selector picks in place and returns what it did (UCE).
        mask: ``(config) -> {"kind", "ratio", ...}``: the weight mask the method computes before training when
            ``erase`` is given none (``erasure.masks.compute`` options; SalUn's saliency mask).
        after: ``(adapter, config, start) -> dict`` run once training has succeeded, before LoRA adapters are
            merged: a second stage on the trained weights (SKU's negation); ``start`` holds the selected tensors'
            values before training ({} when LoRA trained); returns what it did.

    A config with a ``concept`` field gets the erased concept from ``erase()`` (methods that edit the concept's
    words inside the prompts: UCE, CA).
    """

    name: str
    modality: str
    config_cls: type
    build: Callable[[Any, Any], Objective] | None
    selector: str | Callable[[Any, Any], Any] | None = None
    train_defaults: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    adversary: Callable[[Any], Any] | None = None
    solve: Callable[..., dict] | None = None
    mask: Callable[[Any], dict] | None = None
    after: Callable[[Any, Any, dict], dict] | None = None

    def __post_init__(self) -> None:
        if (self.build is None) == (self.solve is None):
            raise ValueError(f"method {self.name!r} needs exactly one of build (a training objective) and solve "
                             "(a closed-form edit)")


METHODS: Registry[Method] = Registry("method", _BUILTIN_METHODS)
ATTACKS: Registry[type] = Registry("attack", _BUILTIN_ATTACKS)
MODALITIES: Registry[Any] = Registry("modality", _BUILTIN_MODALITIES)
BENCHMARKS: Registry[Any] = Registry("benchmark", _BUILTIN_BENCHMARKS)


def register_method(method: Method) -> Method:
    """Register a method under ``method.name`` (overrides a built-in of the same name)."""
    return METHODS.register(method.name, method)


def method_names(modality: str | None = None) -> list[str]:
    """Registered method names (only those serving ``modality``, its own and the "any" ones, when given)."""
    names = sorted(METHODS.names())
    if modality is None:
        return names
    return [n for n in names if METHODS.get(n).modality in ("any", modality)]


def get_method(name: str) -> Method:
    """The method registered under ``name``; ``ValueError`` listing the known names otherwise."""
    return METHODS.get(name)


# ---------------------------------------------------------------------------------------------- attacks
def register_attack(name: str, attack_cls: type) -> type:
    """Register an attack class (a dataclass with ``name``, ``modality``, ``attack(...)``; fields = options)."""
    return ATTACKS.register(name, attack_cls)


def attack_names(modality: str | None = None) -> list[str]:
    """Registered attack names (only those serving ``modality`` when given)."""
    names = sorted(ATTACKS.names())
    if modality is None:
        return names
    return [n for n in names if getattr(ATTACKS.get(n), "modality", "any") in ("any", modality)]


def attack_options(name: str) -> list[str]:
    """The option names attack ``name`` accepts (its dataclass fields, ``name`` excluded)."""
    import dataclasses

    cls = ATTACKS.get(name)
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name != "name"]


def get_attack(name: str, *, for_modality: str | None = None, **options: Any) -> Any:
    """A ready attack: the class registered under ``name`` built with ``options`` (unknown ones rejected); with
    ``for_modality``, a clear error when the attack serves another modality."""
    return require_attack_modality(from_dict(ATTACKS.get(name), options, what=f"attack {name!r}"), for_modality)


def require_attack_modality(attack: Any, modality: str | None) -> Any:
    """``attack`` itself if it serves ``modality`` (or any); ``ValueError`` otherwise."""
    served = getattr(attack, "modality", "any")
    if modality is not None and served not in ("any", modality):
        raise ValueError(f"attack {attack.name!r} is for {served} models, but the model is a {modality} model")
    return attack


# ---------------------------------------------------------------------------------------------- modalities
def register_modality(modality: Any) -> Any:
    """Register a modality entry under ``modality.name`` (tried last by ``modality_for``)."""
    return MODALITIES.register(modality.name, modality)


def modality_names() -> list[str]:
    return MODALITIES.names()


def get_modality(name: str) -> Any:
    return MODALITIES.get(name)


def modality_for(model: Any, override: str | None = None) -> Any:
    """THE place that decides "LLM or diffusion?": the first registered modality that accepts ``model``.

    Args:
        model: a built-in model name, a local folder, a loaded model object or an adapter.
        override: a modality name that wins over detection (``--modality``).

    Returns:
        The ``Modality`` entry; ``ValueError`` saying what each modality expects when none accepts it,
        ``FileNotFoundError`` for a path that does not exist.
    """
    if override is not None:
        return MODALITIES.get(override)
    target: Any = model
    if isinstance(model, (str, Path)):
        from erasure.models import resolve_model_path

        target = resolve_model_path(str(model))
    tried = []
    for name in MODALITIES.names():
        try:
            modality = MODALITIES.get(name)
        except ModuleNotFoundError:  # a modality whose package is not installed
            continue
        if modality.accepts(target):
            return modality
        tried.append(f"{name} ({modality.describe})")
    what = repr(str(model)) if isinstance(model, (str, Path)) else f"of type {type(model).__name__}"
    raise ValueError(f"no modality accepts the model {what}; tried: {'; '.join(tried)}")


def adapter_for(model: Any, **kwargs: Any) -> Any:
    """Wrap ``model`` in its modality's adapter (an adapter is returned as is)."""
    return modality_for(model).adapter(model, **kwargs)


# ---------------------------------------------------------------------------------------------- benchmarks
def register_benchmark(benchmark: Any) -> Any:
    """Register a benchmark under ``benchmark.name``."""
    return BENCHMARKS.register(benchmark.name, benchmark)


def benchmark_names() -> list[str]:
    return BENCHMARKS.names()


def get_benchmark(name: str, modality: str | None = None) -> Any:
    """The benchmark ``name``; with ``modality``, a clear error when it belongs to another modality."""
    bench = BENCHMARKS.get(name)
    if modality is not None and bench.modality != modality:
        raise ValueError(f"benchmark {name!r} is for {bench.modality} models, but the model is a {modality} model")
    return bench
