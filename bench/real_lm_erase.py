"""One mini-RWKU erase on the real SmolLM2-135M-Instruct, timed: how long a user waits for one target.
Prints the wall time, steps and seconds per step of the erase (and of loading the model); asserts nothing.

    make real-lm            # once
    python bench/real_lm_erase.py [--method npo] [--target "Harry Potter"]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    from erasure import erase
    from llm.modality import LLM
    from llm.rwku_benchmark import MINI_RWKU

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--method", default="npo")
    p.add_argument("--target", default="Harry Potter")
    args = p.parse_args()
    t0 = time.time()
    adapter = LLM.load(args.model)
    t_load = time.time() - t0
    forget, retain = MINI_RWKU.erase_data(adapter, target=args.target)
    t1 = time.time()
    result = erase(adapter, method=args.method, forget=forget, retain=retain)
    seconds = time.time() - t1
    print(json.dumps({"model": args.model, "method": args.method, "target": args.target,
                      "load_seconds": round(t_load, 1), "erase_seconds": round(seconds, 1),
                      "erase_minutes": round(seconds / 60, 2), "steps": result.loop.steps,
                      "seconds_per_step": round(result.loop.seconds / result.loop.steps, 2),
                      "batch_size": result.train_config["batch_size"], "lr": result.train_config["lr"],
                      "trainable_parameters": result.loop.trainable_parameters}, indent=2))


if __name__ == "__main__":
    main()
