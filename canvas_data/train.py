"""Train the embedded mini-canvas defaults (the commands that reproduce the shipped weights).

    python -m canvas_data.train evaluator --out canvas_data/weights/mini-canvas-evaluator
    python -m canvas_data.train t2i --out canvas_data/weights/mini-canvas
    python -m canvas_data.train clip --out canvas_data/weights/mini-canvas-clip
    python -m canvas_data.train check --model canvas_data/weights/mini-canvas \
        --evaluator canvas_data/weights/mini-canvas-evaluator

``evaluator`` trains the style/object CNN judge and reports held-out accuracy; ``t2i`` trains the tiny
pixel-space text-to-image model (UNet + CLIP text encoder from scratch, EMA weights shipped); ``check``
measures how often the judge finds the prompted style and object in the model's generations.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from canvas_data.dataset import build_mini_canvas, to_tensor
from canvas_data.mini_canvas import OBJECTS, STYLE_WORDS, STYLES, caption_variants, make_prompt
from erasure.progress import progress

logger = logging.getLogger("canvas_data.train")

TRAIN_START, HELDOUT_START = 0, 10_000  # disjoint image-index ranges


def _tensors(per_pair: int, start: int, pose: str = "narrow") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    ds = build_mini_canvas(per_pair=per_pair, start_index=start, pose=pose)
    images = to_tensor(ds["image"])
    return images, torch.tensor(ds["style_id"]), torch.tensor(ds["object_id"]), ds["prompt"]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Noise, blur and colour jitter so the judge also reads imperfect generated images."""
    b = x.shape[0]
    x = x * (1 + 0.1 * (torch.rand(b, 3, 1, 1, generator=gen) - 0.5))
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0]) / 4
        kernel = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    x = x + torch.randn(x.shape, generator=gen) * 0.06 * torch.rand(b, 1, 1, 1, generator=gen)
    return x.clamp(0, 1)


def train_evaluator(out: str, per_pair: int = 60, steps: int = 2500, batch: int = 64, width: int = 16,
                    seed: int = 0) -> dict:
    """Train the CanvasClassifier judge; returns held-out style/object accuracy."""
    from evals.judges import CanvasClassifier, accuracy

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, ys, yo, _ = _tensors(per_pair, TRAIN_START, pose="wide")  # the judge must read shapes in any pose
    model = CanvasClassifier({"style": list(STYLES), "object": list(OBJECTS)}, width=width)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in progress(range(steps), desc="evaluator"):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        logits = model(_augment(x[idx].clone(), gen))
        loss = F.cross_entropy(logits["style"], ys[idx]) + F.cross_entropy(logits["object"], yo[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            logger.info("evaluator step %d loss %.4f", step, loss.item())
    hx, hs, ho, _ = _tensors(10, HELDOUT_START, pose="wide")
    pred = model.predict(hx)
    report = {"heldout_style_acc": accuracy(pred["style"], hs), "heldout_object_acc": accuracy(pred["object"], ho),
              "heldout_images": int(hx.shape[0]), "train_images": int(x.shape[0]), "steps": steps,
              "seconds": round(time.time() - t0, 1)}
    model.save(out)
    (Path(out) / "train_report.json").write_text(json.dumps(report, indent=2))
    return report


def filler_words() -> list[str]:
    """The tiny vocabulary's words that name no mini-canvas style or object and describe no style."""
    from diffusion.tiny import EXTRA_WORDS

    taken = {w.lower() for w in (*STYLES, *OBJECTS)} | {w for ws in STYLE_WORDS.values() for w in ws}
    return [w for w in dict.fromkeys(EXTRA_WORDS) if w not in taken]


def _vary(caption: str, variants: list[str], neutral: list[str], style_words: float, filler: float,
          gen: torch.Generator) -> str:
    """A training caption: with probability ``style_words`` one of ``variants``; with probability ``filler``
    one to three ``neutral`` words inserted at random places."""
    if float(torch.rand((), generator=gen)) < style_words:
        caption = variants[int(torch.randint(0, len(variants), (), generator=gen))]
    if float(torch.rand((), generator=gen)) < filler:
        words = caption.split()
        for _ in range(int(torch.randint(1, 4, (), generator=gen))):
            pos = int(torch.randint(0, len(words) + 1, (), generator=gen))
            words.insert(pos, neutral[int(torch.randint(0, len(neutral), (), generator=gen))])
        caption = " ".join(words)
    return caption


def train_t2i(out: str, per_pair: int = 50, steps: int = 2400, batch: int = 32, lr: float = 1e-3,
              ema_decay: float = 0.999, uncond_prob: float = 0.1, seed: int = 0, save_every: int = 500,
              init: str | None = None, style_words: float = 0.0, filler: float = 0.0,
              train_text_encoder: bool = True) -> dict:
    """Train the tiny text-to-image model (UNet + text encoder) with the noise-prediction MSE; saves EMA weights.

    ``init`` continues from a saved pipeline (its tokenizer and weights) with a fresh learning-rate schedule.
    ``style_words`` is the share of training captions drawn from ``caption_variants`` (the style described by
    its words, with or without its name) instead of the UnlearnCanvas prompt; ``filler`` is the share that get
    one to three neutral words (``filler_words``) at random places, as real captions carry words unrelated to the
    style and object, so the text encoder learns that such words change little. ``train_text_encoder=False``
    keeps the text encoder frozen (as Stable Diffusion's CLIP is): only the UNet learns to read its states.
    """
    for name, share in (("style_words", style_words), ("filler", filler)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} is a share of captions in [0, 1], got {share}")
    from diffusion.concepts import ConceptSet
    from diffusion.pipeline import T2IPipeline
    from diffusion.tiny import build_scheduler, build_text_encoder, build_tokenizer, build_unet

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, style_id, object_id, prompts = _tensors(per_pair, TRAIN_START)
    previous = None
    if init:
        pipe = T2IPipeline.load(init)
        tokenizer = pipe.tokenizer
        if (Path(init) / "train_report.json").is_file():  # keep the earlier stage's record
            previous = json.loads((Path(init) / "train_report.json").read_text())
    else:
        words = [w for p in prompts[:: per_pair] for w in p.replace(".", " ").split()]
        tokenizer = build_tokenizer(words, model_max_length=16)
        pipe = T2IPipeline(unet=build_unet(seed=seed), text_encoder=build_text_encoder(tokenizer, seed=seed),
                           tokenizer=tokenizer, scheduler=build_scheduler())
    pipe.unet.train()
    pipe.text_encoder.train(train_text_encoder)
    pipe.text_encoder.requires_grad_(train_text_encoder)
    variants = [caption_variants(OBJECTS[o], STYLES[s]) for s, o in zip(style_id.tolist(), object_id.tolist())]
    neutral = filler_words()
    params = list(pipe.unet.parameters()) + (list(pipe.text_encoder.parameters()) if train_text_encoder else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    ema = {n: copy.deepcopy(m) for n, m in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder))}
    for m in ema.values():
        m.requires_grad_(False)
    t0 = time.time()
    for step in progress(range(steps), desc="t2i"):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        x0 = x[idx] * 2 - 1  # (B, 3, H, W) in [-1, 1]
        captions = [prompts[i] for i in idx.tolist()]
        if style_words or filler:  # (drawn only then, so runs without them keep their random stream)
            captions = [_vary(c, variants[i], neutral, style_words, filler, gen)
                        for c, i in zip(captions, idx.tolist())]
        drop = (torch.rand(batch, generator=gen) < uncond_prob).tolist()
        captions = ["" if d else c for c, d in zip(captions, drop)]
        xt, t, noise = pipe.noise(x0, gen)
        cond = pipe.encode_ids(pipe.tokenize(captions))
        loss = F.mse_loss(pipe.predict_noise(xt, t, cond), noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for name, live in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder)):
                for pe, pl in zip(ema[name].parameters(), live.parameters()):
                    pe.lerp_(pl, 1 - d)
        if step % 100 == 0:
            logger.info("t2i step %d loss %.4f (%.0fs)", step, loss.item(), time.time() - t0)
        if (step + 1) % save_every == 0 or step + 1 == steps:
            T2IPipeline(unet=ema["unet"], text_encoder=ema["text_encoder"], tokenizer=tokenizer,
                        scheduler=pipe.scheduler, concepts=ConceptSet(list(STYLES), list(OBJECTS))).save(out)
    report = {"steps": steps, "batch": batch, "lr": lr, "init": init, "seed": seed, "style_words": style_words,
              "filler": filler, "train_text_encoder": train_text_encoder, "train_images": int(x.shape[0]),
              "final_loss": float(loss.detach()), "seconds": round(time.time() - t0, 1), "previous_stage": previous}
    (Path(out) / "train_report.json").write_text(json.dumps(report, indent=2))
    return report


def check_fidelity(model: str, evaluator: str, per_prompt: int = 4, num_steps: int = 20, guidance: float = 3.0,
                   seed: int = 1234) -> dict:
    """Generate ``per_prompt`` images for every mini-canvas prompt; fraction with the prompted style/object."""
    from diffusion.pipeline import T2IPipeline
    from evals.judges import CanvasClassifier, accuracy

    pipe = T2IPipeline.load(model)
    judge = CanvasClassifier.load(evaluator)
    pairs = [(s, o) for s in STYLES for o in OBJECTS for _ in range(per_prompt)]
    images = pipe.sample([make_prompt(o, s) for s, o in pairs], num_steps=num_steps, guidance=guidance, seed=seed,
                         show_progress=True)
    pred = judge.predict(images)
    return {"style_acc": accuracy(pred["style"], [STYLES.index(s) for s, _ in pairs]),
            "object_acc": accuracy(pred["object"], [OBJECTS.index(o) for _, o in pairs]),
            "both_acc": float(((pred["style"] == torch.tensor([STYLES.index(s) for s, _ in pairs]))
                               & (pred["object"] == torch.tensor([OBJECTS.index(o) for _, o in pairs]))).float().mean()),
            "images": len(pairs), "ddim_steps": num_steps, "guidance": guidance}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m canvas_data.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evaluator")
    e.add_argument("--out", required=True)
    e.add_argument("--steps", type=int, default=2500)
    e.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("t2i")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=2400)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--init", help="continue from this saved pipeline (fresh LR schedule)")
    t.add_argument("--style-words", type=float, default=0.0,
                   help="share of captions that describe the style by its words (mini_canvas.STYLE_WORDS)")
    t.add_argument("--freeze-text-encoder", action="store_true", help="train the UNet only")
    t.add_argument("--filler", type=float, default=0.0, help="share of captions with 1-3 neutral words added")
    k = sub.add_parser("clip")
    k.add_argument("--out", required=True)
    k.add_argument("--steps", type=int, default=1500)
    k.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("check")
    c.add_argument("--model", required=True)
    c.add_argument("--evaluator", required=True)
    c.add_argument("--per-prompt", type=int, default=4)
    c.add_argument("--ddim-steps", type=int, default=20)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.cmd == "evaluator":
        report = train_evaluator(args.out, steps=args.steps, seed=args.seed)
    elif args.cmd == "t2i":
        report = train_t2i(args.out, steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr, init=args.init,
                           style_words=args.style_words, filler=args.filler,
                           train_text_encoder=not args.freeze_text_encoder)
    elif args.cmd == "clip":
        from canvas_data.clip_train import train_clip

        report = train_clip(args.out, steps=args.steps, seed=args.seed)
    else:
        report = check_fidelity(args.model, args.evaluator, per_prompt=args.per_prompt, num_steps=args.ddim_steps)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
