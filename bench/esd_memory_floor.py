"""The memory floor of an ESD-x training step on the SD-1.4-shaped UNet alone, CPU fp32: how low peak RSS can go
with the known savings, so the speed issue's memory bar (<= 0.5x the public design's peak) can be judged.

    MALLOC_MMAP_THRESHOLD_=131072 python bench/esd_memory_floor.py                      # ~1.5 min per setting
    MALLOC_MMAP_THRESHOLD_=131072 python bench/esd_memory_floor.py --checkpointing blocks fine --in-backward

One process, no text encoder and no trajectory bank (a bank run holds both: ``bench/esd_memory.py``): the
harness's UNet (random weights), only its cross-attention parameters trained (esd-x) with Adam, two steps on a
random latent and random text states. A thread samples the resident set (/proc/self/statm) every 3 ms and keeps the
highest value of each phase. Savings to combine:
* ``--checkpointing fine``: diffusers' gradient checkpointing (each resnet and transformer block recomputed);
* ``--checkpointing blocks``: each top-level down / mid / up block wrapped in ``torch.utils.checkpoint`` as well;
* ``--in-backward``: each parameter's Adam step runs as soon as its gradient is complete and frees it
  (``register_post_accumulate_grad_hook``), so the step never holds all gradients at once.
Linux only. Asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import time


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--harness", default=None, help="the shared reference harness (default: esd_speed.py's)")
    p.add_argument("--checkpointing", nargs="*", choices=["fine", "blocks"], default=[])
    p.add_argument("--in-backward", action="store_true")
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)

    from step_timer import phase_peaks

    phase, peaks = phase_peaks(0.003)
    import esd_speed
    import torch
    from torch.utils.checkpoint import checkpoint

    h = esd_speed._harness(args.harness or esd_speed.DEFAULT_HARNESS)
    phase[0] = "unet built"
    unet = h.build_unet("sd14", 0)[0]
    unet.requires_grad_(False)
    params = [q for n, q in unet.named_parameters() if "attn2" in n]
    for q in params:
        q.requires_grad_(True)
    if "fine" in args.checkpointing:
        unet.enable_gradient_checkpointing()
    if "blocks" in args.checkpointing:
        for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
            block.forward = functools.partial(lambda f, *a, **k: checkpoint(f, *a, use_reentrant=False, **k),
                                              block.forward)
    unet.train()
    if args.in_backward:
        single = {q: torch.optim.Adam([q], lr=1e-5) for q in params}

        def step_now(q: torch.Tensor) -> None:
            single[q].step()
            single[q].zero_grad(set_to_none=True)

        for q in params:
            q.register_post_accumulate_grad_hook(step_now)
    else:
        opt = torch.optim.Adam(params, lr=1e-5)
    gen = torch.Generator().manual_seed(0)
    x, c = torch.randn(1, 4, 64, 64, generator=gen), torch.randn(1, 77, 768, generator=gen)
    for i in range(args.steps):
        phase[0] = "forward"
        loss = unet(x, torch.tensor([500]), c).sample.pow(2).mean()
        phase[0] = "backward"
        loss.backward()
        phase[0] = "step"
        if not args.in_backward:
            opt.step()
            opt.zero_grad(set_to_none=True)
    phase[0] = "done"
    time.sleep(0.05)
    gib = 2**30
    print(json.dumps({"checkpointing": args.checkpointing, "in_backward": args.in_backward,
                      "trained_gib_per_copy": sum(q.numel() for q in params) * 4 / gib,
                      "peak_rss_gib_by_phase": {k: round(v / gib, 3) for k, v in peaks.items() if k != "done"},
                      "peak_rss_gib": round(max(peaks.values()) / gib, 3)}, indent=2))


if __name__ == "__main__":
    main()
