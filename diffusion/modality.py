"""The diffusion modality's entry: recognise and load text-to-image pipelines, turn a concept into forget and
retain prompts, and run its commands (eval and audit through its benchmarks, the before/after demo).

Registered in ``erasure.registry`` as ``"diffusion.modality:DIFFUSION"``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from erasure.files import report_json
from erasure.modality import Option

logger = logging.getLogger(__name__)

_CONCEPT = Option(("--concept",), "the concept to erase (a style or object of the model's concepts.json, or free "
                                  "text for a model without one)")


_SMOOTHING = (Option(("--smooth",), "the smoothing defence: average each noise prediction over Gaussian "
                                    "perturbations of the text embedding with this standard deviation "
                                    "(diffusion/smoothing.py)", type=float),
              Option(("--smooth-n",), "perturbations averaged by --smooth (default 8)", type=int))


class DiffusionModality:
    """Text-to-image diffusion models (``T2IPipeline``, diffusers Stable Diffusion pipelines and folders)."""

    name = "diffusion"
    describe = "a pipeline folder with unet/, text_encoder/, tokenizer/, scheduler/, or a T2IPipeline / diffusers pipeline"
    default_model = "mini-canvas"
    default_benchmark = "unlearncanvas"
    default_attacks = ("unlearndiff",)
    options = {
        "erase": (_CONCEPT,),
        "eval": _SMOOTHING,
        "audit": _SMOOTHING,
        "demo": (Option(("--concept",), "the style or object to erase (default: Neon)"),
                 Option(("--method",), "the erasure method (default: esd-x)"),
                 Option(("--steps",), "erasure steps (default: the model's recommended setting)", type=int),
                 Option(("--lr",), "learning rate (default: the model's recommended setting)", type=float)),
    }

    # ------------------------------------------------------------------ recognising and loading
    def accepts(self, model: Any) -> bool:
        if isinstance(model, Path):
            from erasure.guard import guard_base, is_guard_folder

            if is_guard_folder(model):  # ECO's result: a guard for a pipeline
                base = guard_base(model)
                return base is not None and (base / "unet").is_dir()
            return (model / "unet").is_dir()
        if getattr(model, "modality", None) == self.name:  # an adapter
            return True
        from diffusion.adapter import DiffusionAdapter

        return DiffusionAdapter.accepts(model)

    def adapter(self, model: Any, **kwargs: Any) -> Any:
        if getattr(model, "modality", None) == self.name:
            return model
        from diffusion.adapter import DiffusionAdapter

        return DiffusionAdapter.from_model(model, **kwargs)

    def load(self, model: str | os.PathLike) -> Any:
        """The pipeline's adapter; an ECO guard folder loads its base pipeline with the guard on it."""
        from diffusion.adapter import DiffusionAdapter
        from erasure.guard import is_guard_folder, load_guard
        from erasure.models import resolve_model_path

        path = resolve_model_path(str(model))
        if not is_guard_folder(path):
            return DiffusionAdapter.load(path)
        guard, base = load_guard(path)
        adapter = DiffusionAdapter.load(resolve_model_path(base))
        adapter.guard = guard
        return adapter

    # ------------------------------------------------------------------ data
    def erase_data(self, adapter: Any, concept: str | None = None, forget: Any = None, retain: Any = None,
                   free_text: bool = False) -> tuple[Sequence[Any], Sequence[Any] | None]:
        """Forget = the template prompts containing ``concept`` (or ``forget`` rows); retain = the model's other
        concepts' prompts (generic "a photo of a ..." prompts for a model without a vocabulary).

        A concept the model's vocabulary does not know is an error unless ``free_text``.
        """
        from diffusion.concepts import default_retain_prompts

        vocab = adapter.concepts
        known = vocab is not None and concept is not None and concept in (*vocab.styles, *vocab.objects)
        if isinstance(forget, str):
            raise ValueError("forget rows for a diffusion model are a list of prompts or {'prompt', 'image'} rows, "
                             f"not the string {forget!r}")
        if concept is not None and vocab is not None and not known and not free_text:
            vocab.domain(concept)  # raises: unknown concept, listing the vocabulary
        if forget is None:
            if concept is None:
                raise ValueError("erasing from a diffusion model needs a concept (--concept) or forget rows")
            forget = vocab.prompts_with(concept) if known else [concept]
        if retain is None and concept is not None:
            retain = vocab.prompts_without(concept) if known else default_retain_prompts()
        return forget, retain

    def targets(self, model: str) -> dict:
        from diffusion.concepts import ConceptSet
        from erasure.models import resolve_model_path

        concepts = ConceptSet.load(resolve_model_path(model))
        if concepts is None:
            raise ValueError(f"model {model!r} ships no concept vocabulary (concepts.json); any free-text concept "
                             "can be erased from it")
        return {"styles": concepts.styles, "objects": concepts.objects}

    # ------------------------------------------------------------------ commands
    def evaluate(self, model: str, out: str | None = None, *, benchmark: str | None = None, seed: int = 0,
                 smooth: float | None = None, smooth_n: int | None = None, **options: Any) -> dict:
        from erasure.registry import get_benchmark

        bench = get_benchmark(benchmark or self.default_benchmark, self.name)
        adapter, smoothing = self._load_defended(model, smooth, smooth_n, seed)
        record = bench.evaluate(adapter, model=model, out=out, seed=seed, **options)
        if smoothing is not None:
            record["smoothing"] = smoothing
            if out:
                (Path(out) / "eval.json").write_text(report_json({k: v for k, v in record.items()
                                                                  if not k.startswith("_")}))
        return record

    def audit(self, model: str, attacks: Sequence[str] | None = None, out: str | None = None, *,
              smooth: float | None = None, smooth_n: int | None = None, seed: int = 0, **options: Any) -> dict:
        from evals.robustness import run_audit

        adapter, smoothing = self._load_defended(model, smooth, smooth_n, seed)
        context = {"smoothing": smoothing} if smoothing is not None else {}
        return run_audit(self, model, attacks, out, adapter=adapter, seed=seed, context=context, **options)

    def _load_defended(self, model: str, smooth: float | None, smooth_n: int | None,
                       seed: int) -> tuple[Any, dict | None]:
        """The model's adapter, behind the smoothing defence when ``smooth`` is given (and its settings)."""
        if smooth is None:
            if smooth_n is not None:
                raise ValueError("--smooth-n is the smoothing defence's sample count: give --smooth SIGMA too")
            return self.load(model), None
        from dataclasses import asdict

        from diffusion.smoothing import Smoothing, apply_smoothing

        settings = Smoothing(sigma=smooth, n=8 if smooth_n is None else smooth_n, seed=seed)  # validated first
        adapter = self.load(model)
        apply_smoothing(adapter.pipe, settings)
        return adapter, asdict(settings)

    def demo(self, out: str | None = None, *, model: str | None = None, seed: int = 0, concept: str = "Neon",
             method: str = "esd-x", steps: int | None = None, lr: float | None = None, ddim_steps: int = 20) -> dict:
        """Evaluate, erase, re-evaluate; writes report.json, before_after.png, report.md and the erased model."""
        from erasure.api import erase
        from erasure.registry import get_benchmark
        from evals.report import image_grid, markdown_table, save_text

        t0 = time.time()
        model = model or self.default_model
        outp = Path(out or "out/demo")
        outp.mkdir(parents=True, exist_ok=True)
        bench = get_benchmark(self.default_benchmark, self.name)
        adapter = self.load(model)
        logger.info("demo: evaluating the original model on %r", concept)
        before = bench.evaluate(adapter, model=model, concept=concept, seed=seed, ddim_steps=ddim_steps,
                                return_images=True)
        t_before = time.time() - t0
        t1 = time.time()
        result = erase(self.load(model), concept=concept, method=method, steps=steps, lr=lr, seed=seed)
        result.save(outp / "model", overwrite=True)  # the demo's own folder: a rerun replaces it
        t_erase = time.time() - t1
        t2 = time.time()
        after = bench.evaluate(self.load(outp / "model"), model=str(outp / "model"), concept=concept, seed=seed,
                               ddim_steps=ddim_steps, return_images=True)
        t_after = time.time() - t2

        keys = ("ua", "ira", "cra")
        domain = after["domain"]
        report = {
            "concept": concept, "domain": domain, "method": method, "model": model,
            "before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys},
            "n_target": after["n_target"], "n_other": after["n_other"],
            "erase": {"steps": result.loop.steps, "lr": result.train_config["lr"],
                      "trainable_parameters": result.loop.trainable_parameters},
            "seconds": {"eval_before": round(t_before, 1), "erase": round(t_erase, 1),
                        "eval_after": round(t_after, 1), "total": round(time.time() - t0, 1)},
        }
        (outp / "report.json").write_text(report_json(report))

        # before/after grid: the erased concept's prompts, then a few other prompts (same seeds on both sides)
        tb, ta = before["_images"]["target"][0], after["_images"]["target"][0]
        ob, oa = before["_images"]["other"][0], after["_images"]["other"][0]
        per = max(1, len(tb) // len(adapter.concepts.prompts_with(concept)))
        pick_t = list(range(0, len(tb), per))[:6]
        pick_o = list(range(0, len(ob), max(1, len(ob) // 6)))[:6]
        grid = image_grid([[tb[i] for i in pick_t], [ta[i] for i in pick_t], [ob[i] for i in pick_o],
                           [oa[i] for i in pick_o]],
                          row_labels=[f"{concept} before", f"{concept} after", "others before", "others after"])
        grid.save(outp / "before_after.png")
        table = markdown_table(["", "UA", "IRA", "CRA"],
                               [["before", *(before[k] for k in keys)], ["after", *(after[k] for k in keys)]])
        md = (f"# Erasing {domain} `{concept}` with {method}\n\n"
              f"Model `{model}`; {result.loop.steps} steps at lr {result.train_config['lr']:g}; "
              f"{report['n_target']} images of the concept, {report['n_other']} of other concepts; judge: "
              f"mini-canvas evaluator.\n\n{table}\n\n"
              "UA: share of the concept's images the judge no longer recognises as the concept (higher = erased).\n"
              "IRA/CRA: judge accuracy on the other concepts of the same / the other domain (higher = kept).\n\n"
              f"![before and after](before_after.png)\n\nSeconds: {report['seconds']}\n")
        save_text(outp / "report.md", md)
        return report


DIFFUSION = DiffusionModality()
