"""Where the peak memory of an ESD-x erase with a trajectory bank goes, phase by phase (the speed issue's memory bar
compares the whole run's peak RSS with the public design's; ``bench/esd_speed.py`` measures that ratio).

    python bench/esd_memory.py --shape sd14          # ~5 min on 2 CPU cores
    python bench/esd_memory.py --shape sd14 --gradient-checkpointing
    MALLOC_MMAP_THRESHOLD_=131072 python bench/esd_memory.py --shape sd14 --gradient-checkpointing

One process (run it alone): a thread samples the resident set (/proc/self/statm) every 10 ms and keeps the highest
value of each phase: imports, the pipeline built (the harness's UNet and a CLIP text encoder of the model's shape, as
``esd_speed.py`` builds them), the bank built (``--bank-trajectories`` trajectories on a ``--bank-ddim``-step
schedule, CFG batched), the erase (``--steps`` bank iterations: the trained tensors' gradients and Adam's two
moments; no snapshot, the bank holds the frozen predictions). Also prints the bytes of one copy of the trained
parameters, so each copy's share is visible.
With glibc's default allocator freed activations may stay resident; the environment variable in the third line
makes large blocks go back to the system when freed. Linux only (reads /proc). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=["tiny", "sd14"], default="tiny")
    p.add_argument("--harness", default=None, help="the shared reference harness (default: esd_speed.py's)")
    p.add_argument("--bank-ddim", type=int, default=3)
    p.add_argument("--bank-trajectories", type=int, default=4)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)

    from step_timer import phase_peaks

    phase, peaks = phase_peaks(0.01)
    import esd_speed
    from diffusion.bank import get_bank
    from erasure import erase
    from erasure.reference import SnapshotReference

    h = esd_speed._harness(args.harness or esd_speed.DEFAULT_HARNESS)
    phase[0] = "pipeline built"
    pipe = esd_speed.build_pipeline(h, args.shape)
    phase[0] = "bank built"
    get_bank(pipe, SnapshotReference({}), [esd_speed.PROMPT], trajectories=args.bank_trajectories,
             ddim_steps=args.bank_ddim, cache=False)
    phase[0] = "erase"
    result = erase(pipe, forget=[esd_speed.PROMPT], retain=[], method="esd-x", steps=args.steps, lr=1e-5,
                   ddim_steps=args.bank_ddim, sampling="frozen", bank_trajectories=args.bank_trajectories,
                   bank_cache=False, recommended=False,
                   train={"show_progress": False, "gradient_checkpointing": args.gradient_checkpointing})
    phase[0] = "done"
    time.sleep(0.05)
    gib = 2**30
    report = {"shape": args.shape, "gradient_checkpointing": args.gradient_checkpointing,
              "peak_rss_gib_by_phase": {k: round(v / gib, 3) for k, v in peaks.items() if k != "done"},
              "unet_gib": sum(t.numel() * t.element_size() for t in pipe.unet.parameters()) / gib,
              "text_encoder_gib": sum(t.numel() * t.element_size() for t in pipe.text_encoder.parameters()) / gib,
              "trained_parameters": result.loop.trainable_parameters,
              "trained_gib_per_copy": result.loop.trainable_parameters
              * next(pipe.unet.parameters()).element_size() / gib}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
