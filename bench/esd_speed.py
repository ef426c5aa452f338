"""ESD-x iteration cost side by side: the public design and its "floor" (the shared reference harness,
../shared/bench/esd_official_design.py) against this project's ESD with frozen sampling from a trajectory bank and
with per-step sampling by the model being trained, on the tiny or the SD-1.4-shaped UNet (random weights, CPU fp32
by default). Every variant runs in its own subprocess (peak RSS is its own); the parent imports no torch. Prints
JSON with seconds per iteration, peak RSS, the ratios, and a check that one bank iteration's loss equals the public
design's step on the same x_t. Asserts nothing.

    python bench/esd_speed.py --shape tiny
    python bench/esd_speed.py --shape sd14          # ~15 min on 2 CPU cores

How the numbers are made:
* public / floor: the harness's own ``run_variant`` (public = "official", CFG as two batch-1 calls, two frozen
  copies; ``--public-cfg batched --public-all-grads`` is what the public esd_sd.py code does), no perturbation.
* ours-bank-gc: ours-bank with ``gradient_checkpointing`` (activations recomputed in the backward pass).
* ours-rolling / ours-bank / ours-trained: ``erase(..., method="esd-x", sampling="rolling" / "frozen" / "trained")`` on a pipeline with the same UNet config plus a CLIP
  text encoder of the model's shape (SD 1.4: 123M parameters, which the harness leaves out: its embeddings are
  random tensors). The bank is built first and timed; "amortised" adds its cost for a bank of
  ``--amortise-entries`` entries (the default bank of one prompt: 4 trajectories x 50 steps) spread over
  ``--amortise-iters`` iterations, from the measured cost per entry; the rolling pool's start (setup) is amortised
  the same way.
* The public design's and the floor's cost per iteration is taken at the mean t_stop of ESD's uniform draw (24.5
  sampling steps) from their measured per-phase times (``public_at_mean_t_stop``), so a few random draws do not
  decide the ratio. On sd14, sampling 50 DDIM steps per iteration is too slow for a CPU run: the harness runs at a
  fixed t_stop (``--t-stop``, default 2); the bank is built with ``--bank-ddim`` steps and the rolling pool started
  on that schedule, their costs scaled per entry / per schedule step. ours-trained (random stops, median of its
  iterations) runs on tiny only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HARNESS = ROOT.parent / "shared" / "bench" / "esd_official_design.py"
PROMPT = "A Circle image in Neon style."


def _harness(path: str):
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"esd_speed: the reference harness {path} is missing; give --harness PATH")
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location("esd_official_design", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_pipeline(h, shape: str, seed: int = 0):
    """Our T2IPipeline around the harness's UNet (same config and seed) and a CLIP text encoder of that width."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from diffusion.pipeline import T2IPipeline
    from diffusion.tiny import build_tokenizer

    unet = h.build_unet(shape, seed)[0]
    tokens, width = h.SHAPES[shape]["text"]
    tok = build_tokenizer("a image in style circle neon".split(), model_max_length=tokens)
    sd = shape == "sd14"
    cfg = CLIPTextConfig(vocab_size=49408 if sd else len(tok) + 8, hidden_size=width,
                         intermediate_size=3072 if sd else 2 * width, num_hidden_layers=12 if sd else 1,
                         num_attention_heads=12 if sd else 2, max_position_embeddings=tokens, hidden_act="quick_gelu",
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        te = CLIPTextModel(cfg).eval()
    return T2IPipeline(unet=unet, text_encoder=te, tokenizer=tok, scheduler=h.make_scheduler())


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_ours(h, args) -> dict:
    """Our ESD-x with a trajectory bank (or per-step sampling): bank build timed, then per-iteration times."""
    import statistics
    import time

    import torch

    from diffusion.bank import get_bank
    from erasure import erase
    from erasure.reference import SnapshotReference
    from step_timer import durations, step_starts

    torch.manual_seed(0)
    pipe = build_pipeline(h, args.shape)
    result = {"variant": args.worker}
    ddim = args.bank_ddim if args.shape == "sd14" else 50
    if args.worker.startswith("ours-bank"):
        t0 = time.perf_counter()
        bank = get_bank(pipe, SnapshotReference({}), [PROMPT], trajectories=args.bank_trajectories, ddim_steps=ddim,
                        cache=False)
        result["bank_build_s"] = time.perf_counter() - t0
        result["bank_entries"] = len(bank)
        result["bank_bytes"] = sum(t.numel() * t.element_size() for t in (bank.xt, bank.eps_uncond, bank.eps_cond))
    steps = args.warmup + args.steps
    sampling = {"ours-bank": "frozen", "ours-rolling": "rolling", "ours-trained": "trained"}[
        args.worker.removesuffix("-gc")]
    t_call = time.perf_counter()
    with step_starts() as starts:
        erase(pipe, forget=[PROMPT], retain=[], method="esd-x", steps=steps, lr=1e-5, ddim_steps=ddim,
              sampling=sampling, bank_trajectories=args.bank_trajectories, bank_cache=False, recommended=False,
              train={"show_progress": False, "gradient_checkpointing": args.worker.endswith("-gc")})
    per = durations(starts)[args.warmup:]
    # setup: from the call to the first step (selector, reference snapshot, the rolling pool's start)
    result.update(setup_s=starts[0] - t_call, ddim_steps=ddim)
    result.update(per_iter_s=per, median_iter_s=statistics.median(per), peak_rss_bytes=_peak_rss(),
                  params=sum(p.numel() for p in pipe.unet.parameters()),
                  text_encoder_params=sum(p.numel() for p in pipe.text_encoder.parameters()))
    return result


def worker_check(h, args) -> dict:
    """One bank iteration's loss against the public design's step on the same x_T, t_stop and embeddings."""
    import copy

    import torch
    import torch.nn.functional as F

    from diffusion.bank import build_bank

    ddim = args.bank_ddim if args.shape == "sd14" else 50
    h.N_DDIM = ddim  # the harness's schedule length, as the bank's
    pipe = build_pipeline(h, args.shape)
    stop = min(ddim - 1, args.check_stop)
    bank = build_bank(pipe, [PROMPT], trajectories=1, ddim_steps=ddim, seed=3)
    x_T = torch.randn((1, *pipe.latent_shape), generator=torch.Generator().manual_seed(3))  # the bank's start
    with torch.no_grad():
        emb_c, emb_u = pipe.encode_prompts([PROMPT]), pipe.encode_prompts([""])
        pred = pipe.predict_noise(bank.xt[stop:stop + 1], bank.t[stop:stop + 1], emb_c)
    ours = float(F.mse_loss(pred, bank.eps_uncond[stop:stop + 1] - (bank.eps_cond[stop:stop + 1] - bank.eps_uncond[stop:stop + 1])))
    trainable = copy.deepcopy(pipe.unet)
    opt = torch.optim.Adam([p for _, p in h.attn2_named_parameters(trainable)], lr=h.LR)
    ref = h.official_style_step(trainable, pipe.unet, opt, h.make_scheduler(), emb_c, emb_u, x_T, stop)
    return {"t_stop": stop, "ddim_steps": ddim, "loss_bank": ours, "loss_public": ref["loss"],
            "abs_diff": abs(ours - ref["loss"]), "rel_diff": abs(ours - ref["loss"]) / abs(ref["loss"]),
            "x_t_max_abs_diff": float((ref["x_t"] - bank.xt[stop:stop + 1]).abs().max()),
            "t_bank": int(bank.t[stop]), "t_public": ref["t"]}


def worker_harness(h, args) -> dict:
    variant = "official" if args.worker == "public" else "floor"
    t_stop = args.t_stop if args.shape == "sd14" else None
    r = h.run_variant(variant, args.shape, args.steps, args.warmup, t_stop=t_stop, perturb=0.0,
                      official_cfg=args.public_cfg, official_all_grads=args.public_all_grads)
    its = [i for i in r["iterations"] if not i["warmup"]]
    return {"variant": args.worker, "per_iter_s": [i["total_s"] for i in its],
            "sampling_s_per_step": sum(i["sampling_s"] for i in its) / max(1, sum(i["t_stop"] for i in its)),
            "frozen_s": sum(i["frozen_s"] for i in its) / len(its), "train_s": sum(i["train_s"] for i in its) / len(its),
            "mean_t_stop": sum(i["t_stop"] for i in its) / len(its), "peak_rss_bytes": r["memory"]["peak_rss_bytes"]}


def _spawn(args, worker: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, "-B", __file__, "--worker", worker, "--result", out, *args.passthrough]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    print(f"[esd_speed] {worker} ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env)
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return data


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=["tiny", "sd14"], default="tiny")
    p.add_argument("--harness", default=str(DEFAULT_HARNESS))
    p.add_argument("--steps", type=int, default=None, help="measured iterations (tiny 8, sd14 1)")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured iterations first (tiny 1, sd14 0)")
    p.add_argument("--t-stop", type=int, default=2, help="sd14: the public design's fixed t_stop")
    p.add_argument("--bank-ddim", type=int, default=3, help="sd14: DDIM steps of the timed bank build")
    p.add_argument("--bank-trajectories", type=int, default=4)
    p.add_argument("--check-stop", type=int, default=2, help="t_stop of the equivalence check")
    p.add_argument("--amortise-entries", type=int, default=200, help="bank entries a real run uses (4 x 50)")
    p.add_argument("--amortise-iters", type=int, default=1000)
    p.add_argument("--public-cfg", choices=["separate", "batched"], default="separate")
    p.add_argument("--public-all-grads", action="store_true")
    p.add_argument("--variants", nargs="*", default=["public", "floor", "ours-rolling", "ours-bank", "ours-bank-gc",
                                                     "ours-trained", "check"])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    sd = args.shape == "sd14"
    args.steps = args.steps if args.steps is not None else (1 if sd else 8)
    args.warmup = args.warmup if args.warmup is not None else (0 if sd else 1)
    if args.worker:
        h = _harness(args.harness)
        fn = {"public": worker_harness, "floor": worker_harness, "ours-bank": worker_ours, "ours-rolling": worker_ours,
              "ours-trained": worker_ours, "ours-bank-gc": worker_ours, "check": worker_check}[args.worker]
        Path(args.result).write_text(json.dumps(fn(h, args), default=float))
        return
    args.passthrough = ["--shape", args.shape, "--harness", args.harness, "--steps", str(args.steps), "--warmup",
                        str(args.warmup), "--t-stop", str(args.t_stop), "--bank-ddim", str(args.bank_ddim),
                        "--bank-trajectories", str(args.bank_trajectories), "--check-stop", str(args.check_stop),
                        "--public-cfg", args.public_cfg] + (["--public-all-grads"] if args.public_all_grads else [])
    variants = [v for v in args.variants if not (sd and v == "ours-trained")]  # 25 sd14 sampling calls / iteration
    runs = {v: _spawn(args, v) for v in variants}
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    report = {"shape": args.shape, "runs": runs, "ratios": {}}
    pub = runs.get("public")
    if pub:
        # at ESD's mean stop (uniform over 50 steps: 24.5 sampling steps), from the measured per-phase times
        per_public = pub["sampling_s_per_step"] * 24.5 + pub["frozen_s"] + pub["train_s"]
        report["public_at_mean_t_stop"] = per_public
        for name in ("ours-bank", "ours-bank-gc"):  # -gc: the same bank, activations recomputed in the backward
            if name not in runs:
                continue
            ours = runs[name]
            per_entry = ours["bank_build_s"] / ours["bank_entries"]
            amortised = med(ours["per_iter_s"]) + per_entry * args.amortise_entries / args.amortise_iters
            report[f"{name.replace('-', '_')}_amortised_s"] = amortised
            report["ratios"][f"time: {name} amortised / public"] = amortised / per_public
            report["ratios"][f"peak RSS: {name} / public"] = ours["peak_rss_bytes"] / pub["peak_rss_bytes"]
        if "ours-rolling" in runs:
            ours = runs["ours-rolling"]
            # the pool's start advances each trajectory to a random phase: on average half a schedule of calls,
            # measured at this run's schedule length and scaled to ESD's 50 steps
            start = ours["setup_s"] * 50 / ours["ddim_steps"]
            amortised = med(ours["per_iter_s"]) + start / args.amortise_iters
            report["ours_rolling_amortised_s"] = amortised
            report["ratios"]["time: ours-rolling amortised / public"] = amortised / per_public
            report["ratios"]["peak RSS: ours-rolling / public"] = ours["peak_rss_bytes"] / pub["peak_rss_bytes"]
        if "floor" in runs:
            fl = runs["floor"]
            per_floor = fl["sampling_s_per_step"] * 24.5 + fl["frozen_s"] + fl["train_s"]
            report["ratios"]["time: floor / public"] = per_floor / per_public
            report["ratios"]["peak RSS: floor / public"] = fl["peak_rss_bytes"] / pub["peak_rss_bytes"]
        if "ours-trained" in runs:
            report["ratios"]["time: ours-trained / public"] = med(runs["ours-trained"]["per_iter_s"]) / per_public
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
