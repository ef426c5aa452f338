"""The contracts of a modality entry and of a benchmark: what the CLI and ``evals.audit`` dispatch through.

A *modality* (``diffusion``, ``llm``) owns everything that depends on the kind of model: recognising a model
(path or object), loading it into its adapter, turning a concept or a forget set into rows, the demo, and the
names of its default benchmark and attacks. A *benchmark* (``unlearncanvas``, ``mini-tofu``) owns one way of
measuring a modality's models: its metrics, the targets an audit attacks and the judge that says whether the
concept came back. Both are registered in ``erasure.registry`` by ``"module:attribute"`` string; the CLI and
``evals.audit`` call them and never branch on a modality themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from erasure.adversary import Judge


@dataclass(frozen=True)
class Option:
    """One command-line option a modality or a benchmark adds to a command (``argparse.add_argument``).

    Args:
        flags: e.g. ``("--concept",)``.
        help: its help text.
        type: the value's type (None: str; ignored for flags).
        nargs: argparse nargs.
        flag: a switch without value (``store_true``).
    """

    flags: tuple[str, ...]
    help: str
    type: Callable[[str], Any] | None = None
    nargs: str | None = None
    flag: bool = False

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-").replace("-", "_")

    def argparse_kwargs(self) -> dict[str, Any]:
        if self.flag:
            return {"action": "store_true", "help": self.help}
        kwargs: dict[str, Any] = {"help": self.help}
        if self.type is not None:
            kwargs["type"] = self.type
        if self.nargs is not None:
            kwargs["nargs"] = self.nargs
        return kwargs


@dataclass
class AuditPlan:
    """What a benchmark hands the robustness evaluator for one audit.

    Args:
        rows: the rows the attacks target (``adapter.collate`` / ``adapter.generate`` accept them).
        judge: ``(outputs, rows) -> [concept present?]``.
        context: what the audit is about, for its records (e.g. ``{"concept": "Neon", "domain": "style"}``).
        eval_options: the options of the same benchmark's ``evaluate`` for the model's utility numbers.
    """

    rows: list
    judge: Judge
    context: dict[str, Any]
    eval_options: dict[str, Any]


@runtime_checkable
class Modality(Protocol):
    """One modality's entry.

    Attributes:
        name: registry name ("diffusion", "llm").
        describe: what a model of this modality looks like on disk (for "no modality accepts" errors).
        default_model: the shipped model the demo uses.
        default_benchmark: the benchmark ``erasure eval`` uses when none is named.
        default_attacks: the attacks ``erasure audit`` runs when none is named.
        options: command -> the CLI options this modality adds to it (e.g. ``{"erase": (Option(("--concept",)
            ...),)}``); the CLI adds every modality's and benchmark's options and passes the given ones on.
    """

    name: str
    describe: str
    default_model: str
    default_benchmark: str
    default_attacks: tuple[str, ...]
    options: dict[str, tuple[Option, ...]]

    def accepts(self, model: Any) -> bool:
        """Whether ``model`` (a resolved folder ``Path``, a model object or an adapter) is of this modality."""
        ...

    def adapter(self, model: Any, **kwargs: Any) -> Any:
        """Wrap a loaded model object (or return an adapter as is)."""
        ...

    def load(self, model: str | os.PathLike) -> Any:
        """The adapter of a built-in model name or a local folder (safetensors only)."""
        ...

    def erase_data(self, adapter: Any, concept: str | None = None, forget: Any = None, retain: Any = None,
                   free_text: bool = False) -> tuple[Sequence[Any], Sequence[Any] | None]:
        """(forget rows, retain rows) from a concept and/or given forget/retain data (names of data sets resolved);
        clear errors otherwise (a concept outside the model's vocabulary unless ``free_text``)."""
        ...

    def targets(self, model: str) -> dict:
        """What can be erased from ``model`` (``erasure concepts``)."""
        ...

    def evaluate(self, model: str, out: str | None = None, *, benchmark: str | None = None, seed: int = 0,
                 **options: Any) -> dict:
        """Score ``model`` on a benchmark; writes ``out/eval.json`` (+ pictures); returns the record."""
        ...

    def audit(self, model: str, attacks: Sequence[str] | None = None, out: str | None = None, **options: Any) -> dict:
        """Attack ``model`` and report ASR next to its utility (``erasure audit``)."""
        ...

    def demo(self, out: str | None = None, *, model: str | None = None, seed: int = 0, **options: Any) -> dict:
        """Erase and evaluate before/after on a shipped model; writes a report; returns its summary."""
        ...


@runtime_checkable
class Benchmark(Protocol):
    """One benchmark of one modality.

    Attributes:
        name: registry name.
        modality: the modality whose models it measures.
        target: the option naming what was erased ("concept", "forget").
        summary_keys: the headline numbers of ``evaluate`` (what the CLI prints).
        utility_keys: the numbers an audit reports next to its ASR.
        options: command ("eval", "audit") -> the CLI options it adds.
    """

    name: str
    modality: str
    target: str
    summary_keys: tuple[str, ...]
    utility_keys: tuple[str, ...]
    options: dict[str, tuple[Option, ...]]

    def evaluate(self, adapter: Any, *, model: str, out: str | None = None, seed: int = 0, **options: Any) -> dict:
        """The benchmark's record for ``adapter`` (written to ``out/eval.json`` when ``out`` is given)."""
        ...

    # optional: ``erase_data(adapter, **options) -> (forget rows, retain rows)`` for ``erasure erase --benchmark``,
    # with its options under ``options["erase"]`` (mini-rwku: the target's forget corpus)

    def prepare_audit(self, adapter: Any, *, original: Any = None, seed: int = 0, **options: Any) -> AuditPlan:
        """The rows an audit attacks (prompts with their target images, forget QA...), the judge, and the
        options of ``evaluate`` for the utility numbers; ``original`` is the model before erasure (an adapter)."""
        ...
