"""Train the shipped mini-canvas CLIP (``mini-canvas-clip``): a small transformers ``CLIPModel`` learned from scratch
on mini-canvas image-caption pairs with CLIP's contrastive loss (Radford et al. 2021,
https://arxiv.org/abs/2103.00020).

    python -m canvas_data.train clip --out canvas_data/weights/mini-canvas-clip

Every step shows one image of each (style, object) pair with its caption ("A {object} image in {style} style."), so a
batch never holds two identical captions; images are augmented as the judge's are (noise, blur, colour), so it also
reads imperfect generations. The report gives held-out top-1 caption accuracy among all 100 captions.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from erasure.progress import progress

logger = logging.getLogger("canvas_data.train")


def build_clip(tokenizer, image_size: int = 32, width: int = 64, layers: int = 2, seed: int = 0):
    """A small CLIPModel from a config (nothing downloaded): ViT with 4x4 patches, a text tower as wide."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = dict(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=2,
                  image_size=image_size, patch_size=4)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=width))


def heldout_top1(clip, per_pair: int = 10, start: int = 10_000) -> float:
    """Share of held-out renderings whose own caption CLIP ranks first among every (style, object) caption."""
    from canvas_data.mini_canvas import OBJECTS, STYLES
    from canvas_data.train import _tensors
    from evals.clip import ClipJudge

    x, ys, yo, _ = _tensors(per_pair, start, pose="wide")
    pred = ClipJudge(clip, {"style": list(STYLES), "object": list(OBJECTS)}).predict(x)
    return float(((pred["style"] == ys) & (pred["object"] == yo)).float().mean())


def train_clip(out: str, per_pair: int = 40, steps: int = 1500, lr: float = 1e-3, seed: int = 0) -> dict:
    """Train and save the mini-canvas CLIP (weights, tokenizer, preprocessor config, report); returns the report."""
    from transformers import AutoTokenizer

    from canvas_data.mini_canvas import OBJECTS, STYLES, make_prompt
    from canvas_data.train import TRAIN_START, _augment, _tensors
    from erasure.models import resolve_model_path
    from evals.clip import LocalClip

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("mini-canvas") / "tokenizer")
    model = build_clip(tokenizer, seed=seed)
    clip = LocalClip(model, tokenizer, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x, ys, yo, _ = _tensors(per_pair, TRAIN_START, pose="wide")
    pair = ys * len(OBJECTS) + yo  # (N,) which caption each image has
    by_pair = [torch.nonzero(pair == k).flatten() for k in range(len(STYLES) * len(OBJECTS))]
    captions = [make_prompt(o, s) for s in STYLES for o in OBJECTS]  # caption k = pair k
    text = clip(text=captions)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    t0 = time.time()
    for step in progress(range(steps), desc="clip"):
        idx = torch.stack([rows[torch.randint(0, len(rows), (1,), generator=gen)][0] for rows in by_pair])
        pixels = clip.pixel_values(_augment(x[idx].clone(), gen))
        loss = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels,
                     return_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            logger.info("clip step %d loss %.4f", step, loss.item())
    model.eval()
    report = {"heldout_top1": heldout_top1(clip), "captions": len(captions), "train_images": int(x.shape[0]),
              "steps": steps, "lr": lr, "seed": seed, "seconds": round(time.time() - t0, 1),
              "command": f"python -m canvas_data.train clip --out {out} --steps {steps} --seed {seed}"}
    path = Path(out)
    model.save_pretrained(path)  # safetensors
    tokenizer.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3,
                                                               "size": model.config.vision_config.image_size}))
    (path / "train_report.json").write_text(json.dumps(report, indent=2))
    return report
