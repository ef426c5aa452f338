"""Reference strategies on the shipped mini-canvas model: memory relative to a frozen full copy, and the
cost of one reference forward relative to a plain forward. Prints ratios; asserts nothing.

    python bench/bench_reference.py
"""

from __future__ import annotations

import copy
import time

import torch

from diffusion.adapter import DiffusionAdapter
from erasure.models import resolve_model_path
from erasure.reference import SnapshotReference
from erasure.selectors import Selector
from diffusion.pipeline import T2IPipeline


def nbytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def main() -> None:
    pipe = T2IPipeline.load(resolve_model_path("mini-canvas"))
    adapter = DiffusionAdapter(pipe)
    full = nbytes(pipe.unet) + nbytes(pipe.text_encoder)
    x = torch.randn(16, *pipe.latent_shape)
    cond = pipe.encode_prompts(["A Star image in Neon style."] * 16).detach()
    for preset in ("esd-x", "esd-u", "esd-all"):
        trainable = Selector.preset(preset).apply(adapter.modules())
        ref = SnapshotReference(trainable, adapter.modules())
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(10):
                pipe.predict_noise(x, 500, cond)
            plain = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(10):
                with ref.active():
                    pipe.predict_noise(x, 500, cond)
            swapped = time.perf_counter() - t0
        print(f"{preset:8s} snapshot memory / full frozen copy = {ref.nbytes() / full:.3f}   "
              f"reference forward / plain forward = {swapped / plain:.2f}")
    frozen = copy.deepcopy(pipe.unet)
    print(f"full copy of the UNet alone = {nbytes(frozen) / full:.3f} of the pipeline")


if __name__ == "__main__":
    main()
