"""The ``erasure`` command line (also ``python -m erasure``).

    erasure concepts --model mini-canvas
    erasure erase --model mini-canvas --concept Neon --method esd-x --out out/neon
    erasure eval  --model out/neon --concept Neon --out out/neon-eval
    erasure audit --model out/neon --concept Neon --attack unlearndiff embedding random --out out/neon-audit
    erasure demo  --out out/demo
    erasure erase --model mini-tofu --forget forget10 --method simnpo --out out/simnpo
    erasure eval  --model out/simnpo --forget forget10 --out out/simnpo-eval
    erasure audit --model out/simnpo --forget forget10 --attack soft-prompt relearn --out out/simnpo-audit
    erasure demo  --model mini-tofu

Every command finds the model's modality once (``erasure.registry.modality_for``; ``--modality`` overrides it)
and hands the work to that modality's entry and benchmark. Options that belong to one modality or benchmark
(``--concept``, ``--forget``, ``--evaluator``...) are declared by it (``Modality.options``,
``Benchmark.options``); the CLI adds them all and refuses the ones that do not apply to the model at hand.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import sys
import traceback
from typing import Any, Iterable

from safetensors import SafetensorError

from erasure.config import OPTIMIZERS
from erasure.files import atomic_dir, check_output_dir, report_json
from erasure.errors import NonFiniteLossError
from erasure.modality import Option
from erasure.registry import (BENCHMARKS, MODALITIES, attack_names, attack_options, get_benchmark, get_method,
                              get_modality, method_names, modality_for)


# What a user's input or machine can cause (bad file, bad value, I/O error, a run that diverged): one line, exit 2.
# Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, NonFiniteLossError, SafetensorError)


def one_line(err: BaseException) -> str:
    """The error as one line: an OSError as "what: file", others their message with newlines folded."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{err.strerror}: {err.filename}"
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (ValueError, FileNotFoundError)) else f"{type(err).__name__}: {text}"


CHECKPOINTS = "checkpoints"  # --out's subfolder for checkpoints when --checkpoint-dir is not given


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["eta=2.0", "retain=kl", "use_pooler=false"]`` -> ``{"eta": 2.0, "retain": "kl", "use_pooler": False}``
    (values parsed as Python literals, else as JSON's true / false / null, else kept as strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = {"true": True, "false": False, "null": None}.get(value, value)
    return out


# ---------------------------------------------------------------------------------------------- extension options
def _owners() -> list[tuple[str, Any]]:
    """Every registered modality and benchmark that loads, as (label, entry)."""
    out = []
    for registry in (MODALITIES, BENCHMARKS):
        for name in registry.names():
            try:
                out.append((f"{registry.kind} {name}", registry.get(name)))
            except ModuleNotFoundError:  # a package that is not installed
                continue
    return out


def _declared(command: str, owners: Iterable[tuple[str, Any]]) -> dict[str, tuple[Option, list[str]]]:
    """dest -> (its option, the labels of the entries that declare it) for ``command``."""
    out: dict[str, tuple[Option, list[str]]] = {}
    for label, owner in owners:
        for opt in getattr(owner, "options", {}).get(command, ()):
            out.setdefault(opt.dest, (opt, []))[1].append(label)
    return out


def _add_extension_options(parser: argparse.ArgumentParser, command: str) -> None:
    for opt, labels in _declared(command, _owners()).values():
        kwargs = opt.argparse_kwargs()
        kwargs["help"] = f"{kwargs['help']} [{', '.join(labels)}]"
        parser.add_argument(*opt.flags, default=argparse.SUPPRESS, **kwargs)


def _given(args: argparse.Namespace, command: str, *owners: Any) -> dict[str, Any]:
    """The extension options the user gave; a clear error for one that none of ``owners`` declares."""
    allowed = _declared(command, [(o.name, o) for o in owners])
    declared = _declared(command, _owners())
    given = {dest: getattr(args, dest) for dest in declared if hasattr(args, dest)}
    for dest in given:
        if dest not in allowed:
            flag = "--" + dest.replace("_", "-")
            valid = ", ".join(o.flags[0] for o, _ in allowed.values()) or "none"
            hint = [label for label in declared[dest][1] if label.startswith("benchmark ")]
            hint_text = f" ({flag} belongs to {' / '.join(hint)}: name it with --benchmark)" if hint else ""
            raise ValueError(f"{flag} does not apply to this model ({' / '.join(o.name for o in owners)}); "
                             f"its {command} options: {valid}{hint_text}")
    return given


def _modality(args: argparse.Namespace) -> Any:
    return modality_for(args.model, override=args.modality)


def _benchmark(args: argparse.Namespace, modality: Any) -> Any:
    return get_benchmark(getattr(args, "benchmark", None) or modality.default_benchmark, modality.name)


# ---------------------------------------------------------------------------------------------- commands
def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    train: dict[str, Any] = {}
    if args.checkpoint_every:
        train["checkpoint_every"] = args.checkpoint_every
    if args.checkpoint_every or args.resume:
        train["checkpoint_dir"] = args.checkpoint_dir or f"{args.out}/{CHECKPOINTS}"
    if args.resume:
        train["resume"] = True
    if args.mixed_precision:
        train["mixed_precision"] = args.mixed_precision
    if args.gradient_checkpointing:
        train["gradient_checkpointing"] = True
    if args.optimizer:
        train["optimizer"] = args.optimizer
    if args.retain_batch_size is not None:
        train["retain_batch_size"] = args.retain_batch_size
    return train


def _check_out(args: argparse.Namespace) -> None:
    """Before the model loads: --out is writable, not the model (nor inside it), and empty unless --overwrite
    (erase: its own checkpoints are expected there when resuming)."""
    from erasure.models import resolve_model_path

    model = resolve_model_path(args.model)
    resume, checkpoint_dir = getattr(args, "resume", False), getattr(args, "checkpoint_dir", None)
    keep = [CHECKPOINTS] if resume and not checkpoint_dir else []
    check_output_dir(args.out, sources=[model], overwrite=args.overwrite, keep=keep)
    if checkpoint_dir:
        check_output_dir(checkpoint_dir, sources=[model], overwrite=True, what="--checkpoint-dir")


def _default_modality(args: argparse.Namespace) -> Any:
    """``--modality``, else the modality of ``--model``, else the first registered one."""
    if args.modality:
        return get_modality(args.modality)
    if args.model:
        return modality_for(args.model)
    return get_modality(MODALITIES.names()[0])


def cmd_concepts(args: argparse.Namespace) -> dict:
    modality = _default_modality(args)
    return modality.targets(args.model or modality.default_model)


def _lora(text: str | None) -> Any:
    """``--lora`` JSON -> a checked ``LoraSpec`` (None when not given)."""
    if text is None:
        return None
    from erasure.config import from_dict
    from erasure.selectors import LoraSpec

    try:
        given = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--lora expects a JSON object such as '{{\"rank\": 8}}', got {text!r} ({e.msg})") from None
    if not isinstance(given, dict):
        raise ValueError(f"--lora expects a JSON object such as '{{\"rank\": 8}}', got {text!r}")
    return from_dict(LoraSpec, given, what="--lora")


def cmd_erase(args: argparse.Namespace) -> dict:
    from erasure.api import erase  # imported here: --help and the other commands' parsing stay free of torch

    get_method(args.method)  # an unknown method fails before the model loads
    _check_out(args)
    modality = _modality(args)
    bench = get_benchmark(args.benchmark, modality.name) if args.benchmark else None
    if bench is not None and not hasattr(bench, "erase_data"):
        raise ValueError(f"benchmark {bench.name!r} has no forget set to erase; its modality's own options name one")
    # the data options: the benchmark's (e.g. --target) or the modality's (--concept; --forget / --retain)
    data = _given(args, "erase", bench or modality)
    method_options = parse_options(args.option)
    clash = sorted(set(data) & set(method_options))
    if clash:
        raise ValueError(f"--option {clash[0]}=... clashes with --{clash[0]}; give it once")
    adversary_options = parse_options(args.adversary_option) or None
    lora = _lora(args.lora)
    adapter = modality.load(args.model)
    if bench is not None:
        forget, retain = bench.erase_data(adapter, **data)
        data = {"forget": forget, "retain": retain}
    result = erase(adapter, method=args.method, steps=args.steps, lr=args.lr, seed=args.seed,
                   batch_size=args.batch_size, train=_train_options(args), adversary=args.adversary,
                   adversary_options=adversary_options, mask=args.mask, lora=lora, out=args.out,
                   overwrite=args.overwrite, **data, **method_options)
    history = result.loop.history
    return {"method": result.method, "concept": result.concept, "steps": result.loop.steps,
            "seconds": result.loop.seconds, "trainable_parameters": result.loop.trainable_parameters,
            "out": args.out, "final_loss": history[-1]["loss"] if history else None}


def cmd_mask(args: argparse.Namespace) -> dict:
    from erasure.masks import SCORES, check_destination, compute
    from erasure.models import resolve_model_path

    if args.kind not in SCORES:
        raise ValueError(f"unknown --kind {args.kind!r}; known: {', '.join(SCORES)}")
    check_destination(args.out, args.overwrite, sources=[resolve_model_path(args.model)])  # before the model loads
    modality = _modality(args)
    bench = get_benchmark(args.benchmark, modality.name) if args.benchmark else None
    data = _given(args, "erase", bench or modality)  # the forget / retain sets, named as erase names them
    adapter = modality.load(args.model)
    if bench is not None:
        forget, retain = bench.erase_data(adapter, **data)
        data = {"forget": forget, "retain": retain}
    mask = compute(adapter, args.kind, ratio=args.ratio, scope=args.scope, mu=args.mu, selector=args.selector,
                   batch_size=args.batch_size, seed=args.seed, out=args.out, overwrite=args.overwrite, **data)
    return {**mask.info, "out": args.out}


def cmd_eval(args: argparse.Namespace) -> dict:
    _check_out(args)
    modality = _modality(args)
    bench = _benchmark(args, modality)
    options = _given(args, "eval", modality, bench)
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:  # the report appears whole, or not at all
        record = modality.evaluate(args.model, str(tmp), benchmark=bench.name, seed=args.seed, **options)
    return {k: record[k] for k in bench.summary_keys}


def cmd_audit(args: argparse.Namespace) -> dict:
    _check_out(args)
    modality = _modality(args)
    bench = _benchmark(args, modality)
    options = _given(args, "audit", modality, bench)
    attacks = args.attack or list(modality.default_attacks)
    attack_opts = parse_options(args.option)
    for key in ("k", "iterations"):  # shorthands, given to the attacks that have the option
        if getattr(args, key) is not None:
            takers = [a for a in attacks if key in attack_options(a)]
            if not takers:
                raise ValueError(f"--{key}: none of the attacks {attacks} has that option")
            attack_opts.update({f"{a}.{key}": getattr(args, key) for a in takers})
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:  # the report appears whole, or not at all
        record = modality.audit(args.model, attacks, str(tmp), benchmark=bench.name, n=args.n, seed=args.seed,
                                original=args.original, attack_options=attack_opts,
                                with_utility=not args.no_utility, **options)
    keys = (bench.target, "attack", "pre_asr", "post_asr", "n", "seconds", "utility", "attacks")
    return {k: record[k] for k in keys if k in record}


def cmd_demo(args: argparse.Namespace) -> dict:
    modality = _default_modality(args)
    options = _given(args, "demo", modality)
    return modality.demo(args.out, model=args.model, seed=args.seed, **options)


# ---------------------------------------------------------------------------------------------- parser
ENVIRONMENT = """environment variables:
  ERASURE_CACHE        where converted real models live (default ~/.cache/erasure; make real-lm fills it)
  ERASURE_BANK_DIR     where ESD trajectory banks are kept (default $ERASURE_CACHE/esd-bank)
  ERASURE_EVAL_CACHE   where evaluations are kept to be read, not recomputed (default $ERASURE_CACHE/eval-cache)
  ERASURE_NO_PROGRESS  set to 1 to hide progress bars (logs stay)
  HF_HUB_OFFLINE       nothing is downloaded at run time either way; set it to 1 to make transformers quiet about it
  ACCELERATE_*         accelerate's settings (accelerate config / accelerate launch), e.g. the mixed precision"""

EXAMPLES = {
    "concepts": ["erasure concepts --model mini-canvas", "erasure concepts --model mini-tofu"],
    "erase": ["erasure erase --model mini-canvas --concept Neon --method esd-x --out out/neon",
              "erasure erase --model mini-tofu --forget forget10 --method npo --steps 40 --out out/npo",
              "erasure erase --model smollm2-135m --benchmark mini-rwku --target 'Harry Potter' --method rmu "
              "--out out/hp"],
    "mask": ["erasure mask --model smollm2-135m --benchmark mini-rwku --target 'Harry Potter' --kind wagle "
             "--ratio 0.95 --out masks/hp",
             "erasure mask --model mini-canvas --concept Neon --kind salun --ratio 0.5 --out masks/neon"],
    "eval": ["erasure eval --model out/neon --concept Neon --out out/neon-eval",
             "erasure eval --model out/npo --forget forget10 --out out/npo-eval"],
    "audit": ["erasure audit --model out/neon --concept Neon --attack unlearndiff random --out out/neon-audit",
              "erasure audit --model out/npo --forget forget10 --attack soft-prompt relearn --out out/npo-audit"],
    "demo": ["erasure demo --out out/demo", "erasure demo --model mini-tofu"],
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written, and each option's default (when it has one) after its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not unset and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _verbosity_parent() -> argparse.ArgumentParser:
    """-v / -q, accepted before or after the subcommand (SUPPRESS: a later parser does not reset an earlier one)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more logging: -v INFO and tracebacks of errors, -vv DEBUG")
    parent.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="errors only: no warnings, no progress bars")
    return parent


def build_parser() -> argparse.ArgumentParser:
    verbosity = _verbosity_parent()
    p = argparse.ArgumentParser(prog="erasure", parents=[verbosity], formatter_class=_Formatter,
                                description="Erase concepts from text-to-image diffusion models and unlearn data and "
                                            "knowledge from LLMs; evaluate and audit the result.",
                                epilog="examples:\n  " + "\n  ".join(x for xs in EXAMPLES.values() for x in xs[:1])
                                       + "\n\n" + ENVIRONMENT)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modalities = MODALITIES.names()

    def command(name: str, fn, help: str, description: str, model_required: bool = True):
        c = sub.add_parser(name, help=help, description=f"{help}.\n\n{description}", parents=[verbosity],
                           formatter_class=_Formatter,
                           epilog="examples:\n  " + "\n  ".join(EXAMPLES[name]) + "\n\n" + ENVIRONMENT)
        c.add_argument("--model", required=model_required,
                       help="a local model folder or a built-in name (mini-canvas, mini-tofu, smollm2-135m...)"
                            + ("" if model_required else "; default: the modality's shipped model"))
        c.add_argument("--modality", choices=modalities,
                       help="the model's modality (default: detected from the model)")
        c.set_defaults(fn=fn)
        return c

    c = command("concepts", cmd_concepts, "print what can be erased from a model as JSON",
                "Its concept vocabulary (diffusion), or the forget splits and mini-RWKU targets (LLM).",
                model_required=False)
    _add_extension_options(c, "concepts")

    e = command("erase", cmd_erase, "erase a concept (or unlearn a forget set) and save the edited model",
                "Settings: the explicit options, else the model folder's recommended.json, else the paper's "
                "defaults.\nWrites the model (diffusers / transformers folder; LoRA adapters in lora/) and "
                "erasure.json to --out.")
    e.add_argument("--method", default="esd-x", help=f"the unlearning method: {', '.join(method_names())}")
    e.add_argument("--benchmark", choices=BENCHMARKS.names(), help="take the forget and retain sets from this "
                                                                   "benchmark (e.g. mini-rwku with --target)")
    e.add_argument("--out", required=True, help="output folder (refused if it is the model or holds files, "
                                                "unless --overwrite)")
    e.add_argument("--steps", type=int, help="optimisation steps (default: recommended.json, else the paper's)")
    e.add_argument("--lr", type=float, help="learning rate (default: recommended.json, else the paper's)")
    e.add_argument("--seed", type=int, default=0, help="seeds the data order, noise and sampling")
    e.add_argument("--batch-size", type=int, help="rows per step (default: recommended.json, else the method's)")
    e.add_argument("--retain-batch-size", type=int, help="retain rows per step, when not --batch-size's")
    e.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"),
                   help="autocast precision (default: accelerate's configuration, else no); fp16 needs a GPU")
    e.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, about one more forward per step")
    e.add_argument("--checkpoint-every", type=int, default=0, help="save a checkpoint every N steps (0: never)")
    e.add_argument("--checkpoint-dir", help="where checkpoints go (default: --out/checkpoints)")
    e.add_argument("--resume", action="store_true", help="continue from the newest checkpoint (the run's settings "
                                                         "must match the checkpoint's)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out")
    e.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a method option, e.g. eta=2.0 (repeatable; values are Python literals or "
                        "true/false/null)")
    e.add_argument("--adversary", choices=attack_names(),
                   help="adversarial unlearning: this attack rewrites every forget batch (default: the method's own)")
    e.add_argument("--adversary-option", action="append", metavar="KEY=VALUE",
                   help="an option of --adversary (repeatable)")
    e.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="the optimizer (default: recommended.json, else the method's); sophia: SOUL's second-order "
                        "one (betas 0.9/0.95, rho 0.04, weight decay 0.1, Hessian refreshed every 10 steps)")
    e.add_argument("--lora", metavar="JSON", help="train peft LoRA adapters on the method's weights instead of the "
                   "weights themselves, e.g. '{\"rank\": 8, \"alpha\": 16}' ('{}': rank 8); the merged model and the "
                   "adapter (--out/lora, for PeftModel.from_pretrained) are written")
    e.add_argument("--mask", help="a weight mask (erasure mask's --out): only its entries train, the rest stay "
                                  "byte-identical")
    _add_extension_options(e, "erase")

    m = command("mask", cmd_mask, "compute a weight mask (WAGLE, SalUn, random, magnitude) for erase --mask",
                "Scores every selected weight from the forget (and retain) gradients, keeps the top --ratio, and "
                "writes mask.safetensors\n(one boolean tensor per parameter) and mask.json to --out (or the file "
                "itself when --out ends in .safetensors).")
    m.add_argument("--kind", required=True, help="wagle, salun, random or magnitude")
    m.add_argument("--ratio", type=float, required=True, help="the fraction of weights kept trainable (WAGLE: 0.95 "
                                                              "on TOFU; SalUn: 0.5)")
    m.add_argument("--scope", choices=("global", "tensor"), default="global",
                   help="top --ratio over all weights at once, or within each tensor")
    m.add_argument("--mu", type=float, default=1e-6, help="WAGLE's retain-gradient scaling (1/mu)")
    m.add_argument("--selector", help="the weights scored (a preset: all, esd-x, esd-u...; default: the model's)")
    m.add_argument("--benchmark", choices=BENCHMARKS.names(), help="take the forget and retain sets from this "
                                                                   "benchmark (e.g. mini-rwku with --target)")
    m.add_argument("--batch-size", type=int, default=8, help="rows per gradient batch")
    m.add_argument("--seed", type=int, default=0, help="seeds the random mask and the noise")
    m.add_argument("--out", required=True, help="output folder, or a .safetensors file")
    m.add_argument("--overwrite", action="store_true", help="replace an existing mask")
    _add_extension_options(m, "erase")

    benchmarks = BENCHMARKS.names()
    v = command("eval", cmd_eval, f"score a model on a benchmark ({', '.join(benchmarks)})",
                "Writes eval.json (every metric) to --out; the modality's own benchmark unless --benchmark.")
    v.add_argument("--benchmark", choices=benchmarks, help="default: the modality's own")
    v.add_argument("--out", required=True, help="output folder for eval.json")
    v.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    v.add_argument("--seed", type=int, default=0, help="seeds the evaluation's sampling")
    _add_extension_options(v, "eval")

    a = command("audit", cmd_audit, "attack an erased model and report attack success rates (ASR) next to its "
                                    "utility",
                "Each attack searches prompts (or embeddings) that bring the erased concept or answer back; a judge "
                "decides.\nWrites audit.json, robustness.json and a report with pictures to --out.")
    a.add_argument("--benchmark", choices=benchmarks, help="whose targets and judge the audit uses "
                                                           "(default: the modality's own)")
    a.add_argument("--attack", nargs="+", choices=attack_names(),
                   help="one or more attacks (default: the modality's, e.g. unlearndiff / soft-prompt)")
    a.add_argument("--out", required=True, help="output folder for the audit reports")
    a.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    a.add_argument("--n", type=int, help="attack at most N prompts / forget questions (default: all)")
    a.add_argument("--k", type=int, help="adversarial prefix tokens (default: each attack's own)")
    a.add_argument("--iterations", type=int, help="UnlearnDiff iterations (default: the attack's own)")
    a.add_argument("--original", help="the model before erasure (UnlearnDiff's targets are its generations; "
                                      "attacks that need the frozen original use it)")
    a.add_argument("--seed", type=int, default=0, help="seeds the attacks and sampling")
    a.add_argument("--no-utility", action="store_true", help="skip the utility evaluation")
    a.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="an attack option, e.g. lr=0.01 (every attack) or embedding.lr=0.05 (one attack)")
    _add_extension_options(a, "audit")

    d = command("demo", cmd_demo, "erase from a shipped tiny model and evaluate before and after",
                "A few minutes on a CPU: erase, evaluate, and write report.json, report.md and pictures.",
                model_required=False)
    d.add_argument("--out", help="default: the modality's (out/demo, out/demo-llm)")
    d.add_argument("--seed", type=int, default=0, help="seeds training and sampling")
    _add_extension_options(d, "demo")
    return p


def _log_level(args: argparse.Namespace) -> int:
    if getattr(args, "quiet", False):
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(getattr(args, "verbose", 0) or 0, logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    level = _log_level(args) if rank == 0 else logging.ERROR  # under torchrun / accelerate launch one process talks
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level >= logging.ERROR:
        os.environ["ERASURE_NO_PROGRESS"] = "1"
    try:
        if world > 1 and args.command != "erase":
            raise ValueError(f"{args.command} runs in one process; launch only erase with several "
                             f"(this is process {rank} of {world})")
        result = args.fn(args)
    except EXPECTED_ERRORS as err:
        if level <= logging.INFO:
            traceback.print_exc()
        print(f"erasure {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    if rank == 0:
        print(report_json(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
