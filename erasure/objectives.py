"""Objectives: weighted loss terms over what an adapter scores on the forget and retain batches.

An ``Objective`` is a list of ``(weight, term)``. Every term reads the step's scores through ``StepScores``,
which runs each forward at most once per step (GA and NPO on the same forget batch share one pass; the
reference pass runs under ``no_grad``). The terms below only need per-example NLLs or an adapter-defined
divergence from the reference, so they serve LLMs and diffusion models alike; modality-specific terms
(ESD's negative-guidance target) implement the same ``LossTerm`` protocol next to their adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch

from erasure import losses
from erasure.adapter import Adapter
from erasure.reference import Reference

SPLITS = ("forget", "retain")
# Bytes of reference outputs (an LLM's answer-position log-probs for KL) a run keeps across steps; past it the
# reference runs again for the rows that did not fit.
REFERENCE_OUTPUT_BYTES = 2 * 2**30


class StepScores:
    """Lazily computed, cached per-step scores of one forget batch and one retain batch.

    Args:
        adapter: the modality adapter.
        reference: the frozen-reference strategy (or None when no term needs it).
        batches: {"forget": batch, "retain": batch-or-None} as produced by ``adapter.collate``.
        seed: seeds every random draw of the step (noise, timesteps), so the model and the reference see the
            same draws and a resumed run repeats them exactly.
    """

    def __init__(self, adapter: Adapter, reference: Reference | None, batches: dict[str, Any], seed: int,
                 rows: dict[str, Sequence[Any]] | None = None, row_ids: dict[str, Sequence[int]] | None = None,
                 reference_cache: dict | None = None):
        self.adapter = adapter
        self.reference = reference
        self.batches = dict(batches)
        self.rows = rows or {}
        self.row_ids = row_ids or {}
        self.seed = seed
        # Reference NLLs per (split, row id), kept across steps by the loop when the adapter's scores are
        # deterministic (LLMs): the frozen reference is then evaluated once per example, not once per step.
        self.reference_cache = reference_cache if getattr(adapter, "deterministic_scores", False) else None
        self._cache: dict[tuple, Any] = {}
        # An adapter with ``outputs`` lets every score of a split share one forward of the trained model (SPUL's
        # retain NLL and KL read the same log-probs); without it each score runs its own.
        self._shared = callable(getattr(adapter, "outputs", None))

    def derive(self, split: str, name: str, transform: Callable[[Sequence[Any]], Sequence[Any]]) -> str:
        """Add split ``"{split}/{name}"`` made by ``transform`` of ``split``'s raw rows (e.g. forget questions
        with a refusal as the answer); returns its key for ``nll``/``reference_nll``. Built once per step."""
        key = f"{split}/{name}"
        if key not in self.batches:
            if split not in self.rows:
                raise ValueError(f"no raw {split} rows to derive {key!r} from")
            self.batches[key] = self.adapter.collate(transform(self.rows[split]))
        return key

    def batch(self, split: str) -> Any:
        b = self.batches.get(split)
        if b is None:
            raise ValueError(f"this objective needs a {split} set, but none was given")
        return b

    def generator(self, split: str) -> torch.Generator:
        """A fresh generator for ``split``: identical draws for every call within the step."""
        return torch.Generator().manual_seed(self.seed * 4 + SPLITS.index(split.split("/")[0]))

    def _cached(self, key: tuple, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def nll(self, split: str, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(nll (B,), length (B,)) under the model being trained, with gradients.

        ``smoothing`` != 0 asks for the label-smoothed NLL ``(1 - a) * nll + a * uniform_nll`` (categorical
        outputs only; the adapter raises otherwise).
        """
        def compute():
            kwargs: dict[str, Any] = {"smoothing": smoothing} if smoothing else {}
            if self._shared:
                kwargs["outputs"] = self.outputs(split)
            return self.adapter.per_example_nll(self.batch(split), self.generator(split), **kwargs)

        return self._cached(("nll", split, smoothing), compute)

    def outputs(self, split: str) -> Any:
        """The trained model's outputs on ``split``'s batch (an adapter with ``outputs``), with gradients, computed
        once per step and read by every score of the split."""
        return self._cached(("out", split), lambda: self.adapter.outputs(self.batch(split), self.generator(split)))

    def reference_nll(self, split: str) -> torch.Tensor:
        """(B,) NLL under the frozen reference (no gradients)."""

        def compute():
            with torch.no_grad(), self.require_reference().active():
                return self.adapter.per_example_nll(self.batch(split), self.generator(split))[0]

        return self._cached(("ref_nll", split), lambda: torch.stack(self._per_row("nll", split, compute)))

    def _per_row(self, kind: str, split: str, compute: Callable[[], Sequence[torch.Tensor]],
                 budget: int | None = None) -> list[torch.Tensor]:
        """``compute()``'s per-row reference values, kept across steps in the loop's reference cache under (kind,
        split, row id) when the adapter's scores are deterministic; ``budget`` caps the bytes a kind may keep
        (rows past it are recomputed each step)."""
        ids = self.row_ids.get(split.split("/")[0])
        if self.reference_cache is None or ids is None:
            return list(compute())
        keys = [(kind, split, i) for i in ids]
        if all(k in self.reference_cache for k in keys):
            return [self.reference_cache[k] for k in keys]
        values = [v.detach() for v in compute()]
        used = self.reference_cache.get(("bytes", kind), 0)
        for k, v in zip(keys, values):
            size = v.numel() * v.element_size()
            if k not in self.reference_cache and (budget is None or used + size <= budget):
                self.reference_cache[k] = v
                used += size
        self.reference_cache[("bytes", kind)] = used
        return values

    def divergence(self, split: str) -> torch.Tensor:
        """(B,) divergence of the trained model's outputs from the reference's (KL for LLMs, MSE for diffusion).

        With an adapter that offers ``outputs`` the trained model's pass is the one the split's other scores share,
        and the reference's (``reference_outputs``: per row, only what the divergence reads) is kept across steps
        within ``REFERENCE_OUTPUT_BYTES``."""
        if not self._shared:
            return self._cached(("div", split), lambda: self.adapter.output_divergence(
                self.batch(split), self.require_reference(), self.generator(split)))

        def compute():
            with torch.no_grad(), self.require_reference().active():
                return self.adapter.reference_outputs(self.batch(split), self.generator(split))

        return self._cached(("div", split), lambda: self.adapter.divergence_of(
            self._per_row("outputs", split, compute, REFERENCE_OUTPUT_BYTES), self.outputs(split)))

    def require_reference(self) -> Reference:
        if self.reference is None:
            raise ValueError("this objective needs a frozen reference, but none was set up")
        return self.reference


class LossTerm(Protocol):
    """One term of an objective; ``needs_reference`` tells the loop to set up a reference strategy."""

    name: str
    needs_reference: bool

    def __call__(self, scores: StepScores) -> torch.Tensor: ...


@dataclass
class GradientAscent:
    """-NLL on the forget set (Jang et al. 2022, https://arxiv.org/abs/2210.01504)."""

    split: str = "forget"
    name: str = "ga"
    needs_reference: bool = False

    def __call__(self, s: StepScores) -> torch.Tensor:
        return losses.gradient_ascent(*s.nll(self.split))


@dataclass
class NLL:
    """Likelihood on the retain set (GradDiff's retain term)."""

    split: str = "retain"
    name: str = "retain_nll"
    needs_reference: bool = False

    def __call__(self, s: StepScores) -> torch.Tensor:
        return losses.nll_loss(*s.nll(self.split))


@dataclass
class NPO:
    """NPO forget term against the frozen reference (https://arxiv.org/abs/2404.05868)."""

    beta: float = 0.1
    split: str = "forget"
    name: str = "npo"
    needs_reference: bool = True

    def __call__(self, s: StepScores) -> torch.Tensor:
        nll, _ = s.nll(self.split)
        return losses.npo(nll, s.reference_nll(self.split), beta=self.beta)


@dataclass
class SimNPO:
    """SimNPO forget term, reference-free (https://arxiv.org/abs/2410.07163)."""

    beta: float = 4.5
    gamma: float = 0.0
    split: str = "forget"
    name: str = "simnpo"
    needs_reference: bool = False

    def __call__(self, s: StepScores) -> torch.Tensor:
        return losses.simnpo(*s.nll(self.split), beta=self.beta, gamma=self.gamma)


@dataclass
class LabelSmoothedGA:
    """Gradient ascent on label-smoothed NLL with a negative smoothing rate (UGradSL, Di et al. 2024,
    https://arxiv.org/abs/2406.09173)."""

    smoothing: float = -0.5
    split: str = "forget"
    name: str = "ga_ls"
    needs_reference: bool = False

    def __call__(self, s: StepScores) -> torch.Tensor:
        return losses.gradient_ascent(*s.nll(self.split, smoothing=self.smoothing))


@dataclass
class PreferenceOptimization:
    """DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) preferring ``make_preferred(rows)`` over
    the forget rows; with refusals as the preferred answers this is IdkPO (Maini et al. 2024)."""

    make_preferred: Callable[[Sequence[Any]], Sequence[Any]]
    beta: float = 0.1
    split: str = "forget"
    name: str = "dpo"
    needs_reference: bool = True

    def __call__(self, s: StepScores) -> torch.Tensor:
        win = s.derive(self.split, "preferred", self.make_preferred)
        nll_w, _ = s.nll(win)
        nll_l, _ = s.nll(self.split)
        return losses.dpo(nll_w, s.reference_nll(win), nll_l, s.reference_nll(self.split), beta=self.beta)


@dataclass
class Relabel:
    """Likelihood of other targets for the forget rows: ``relabel(rows)`` gives each row the answer it should get
    instead (another class label, a refusal). SPUL's forget term (Bhaila et al. 2024,
    https://arxiv.org/abs/2406.12038): cross-entropy towards a different label."""

    relabel: Callable[[Sequence[Any]], Sequence[Any]]
    split: str = "forget"
    name: str = "relabel_nll"
    needs_reference: bool = False

    def __call__(self, s: StepScores) -> torch.Tensor:
        return losses.nll_loss(*s.nll(s.derive(self.split, "relabelled", self.relabel)))


@dataclass
class RelabelFrom:
    """Likelihood of the forget rows relabelled from a whole other set: ``relabel(batch rows, every row of
    source)`` gives each row its new targets (SKU's random disassociation: other harmful answers; the random
    mismatch of Yao et al. 2023, https://arxiv.org/abs/2310.10683: normal answers). The set is given once, before
    the first step (``prepare``), so the targets do not depend on which rows share a batch."""

    relabel: Callable[[Sequence[Any], Sequence[Any]], Sequence[Any]]
    source: str = "forget"
    split: str = "forget"
    name: str = "relabel_from_nll"
    needs_reference: bool = False
    pool: Sequence[Any] | None = field(default=None, repr=False)

    def prepare(self, adapter: Adapter, reference: Reference | None, data: dict[str, Sequence[Any]],
                splits: Sequence[str], seed: int) -> None:
        pool = data.get(self.source)
        if pool is None or len(pool) == 0:
            raise ValueError(f"{self.name} draws its targets from the {self.source} set, but none was given")
        self.pool = pool

    def __call__(self, s: StepScores) -> torch.Tensor:
        if self.pool is None:
            raise ValueError(f"{self.name}: the {self.source} set was not given (Objective.prepare)")
        key = s.derive(self.split, self.name, lambda rows: self.relabel(rows, self.pool))
        return losses.nll_loss(*s.nll(key))


@dataclass
class KL:
    """KL(reference || model) on the retain set: keeps outputs where they were."""

    split: str = "retain"
    name: str = "retain_kl"
    needs_reference: bool = True

    def __call__(self, s: StepScores) -> torch.Tensor:
        return s.divergence(self.split).mean()


def retain_term(kind: str) -> LossTerm:
    """The retain term by name: "nll" (likelihood on retain, GradDiff's) or "kl" (KL to the reference)."""
    terms = {"nll": NLL, "kl": KL}
    if kind not in terms:
        raise ValueError(f"retain_loss must be 'nll' or 'kl', got {kind!r}")
    return terms[kind]()


@dataclass
class Objective:
    """A weighted sum of loss terms. ``Objective([(1.0, NPO()), (1.0, NLL())])``."""

    terms: list[tuple[float, LossTerm]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("an objective needs at least one loss term")

    @property
    def needs_reference(self) -> bool:
        return any(t.needs_reference for _, t in self.terms)

    @property
    def splits(self) -> set[str]:
        return {getattr(t, "split", "forget") for _, t in self.terms}

    def _with(self, hook: str) -> list[tuple[int, Any]]:
        return [(i, term) for i, (weight, term) in enumerate(self.terms) if weight and hasattr(term, hook)]

    def prepare(self, adapter: Adapter, reference: Reference | None, data: dict[str, Sequence[Any]],
                seed: int = 0) -> None:
        """Before the first step: terms with a ``prepare(adapter, reference, data, splits, seed)`` set up what
        they reuse across steps (ESD's trajectory bank or rolling pool)."""
        for _, term in self._with("prepare"):
            term.prepare(adapter, reference, data, self.splits, seed)

    def begin_step(self, step: int) -> None:
        """At the start of every step (before an adversary runs): terms' ``begin_step(step)``."""
        for _, term in self._with("begin_step"):
            term.begin_step(step)

    def finish(self) -> None:
        """After the last step: terms' ``finish()`` release what ``prepare`` set up."""
        for _, term in self._with("finish"):
            term.finish()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors the terms carry across steps (``"{term index}.{name}"``), for checkpoints."""
        return {f"{i}.{k}": v for i, term in self._with("state_dict") for k, v in term.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Give each term its part of ``state_dict()``'s output."""
        for i, term in self._with("load_state_dict"):
            term.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(i)})

    def __call__(self, scores: StepScores) -> tuple[torch.Tensor, dict[str, float]]:
        """Returns (total loss, {term name: unweighted value})."""
        total = None
        logs: dict[str, float] = {}
        for weight, term in self.terms:
            if weight == 0:
                continue
            value = term(scores)
            logs[term.name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        if total is None:
            raise ValueError("every term of the objective has weight 0")
        return total, logs
