"""Two processes (torchrun, gloo on the CPU) share each step's rows and average their gradients: the weights they
train equal those of one process with the same global batch, within float tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from erasure.cli import main


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    """``erasure ARGS`` on two processes (torchrun, this checkout on the path)."""
    env = {**os.environ, "ERASURE_NO_PROGRESS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "erasure", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _two_processes(args: list[str]) -> None:
    done = _torchrun(args)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1  # one process reports


def _saved_tiny_lm(folder) -> dict:
    """The tiny LM without dropout (dropout draws from each process's own random stream), saved; its weights."""
    from tests.conftest import make_tiny_lm

    model, tok = make_tiny_lm()
    for key in ("attn_pdrop", "embd_pdrop", "resid_pdrop"):
        setattr(model.config, key, 0.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model.state_dict()


def _weights(folder, name):
    return load_file(str(folder / name))


def _assert_close(a: dict, b: dict, atol: float) -> None:
    """Equal within float tolerance. Adam divides by the root of the squared gradient, so a parameter whose
    true gradient is zero (an attention key bias) moves by float noise differently per summation order, up to
    about lr per step: ``atol`` allows for that; the functions the weights compute are compared tightly too."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)


def test_an_llm_unlearning_on_two_processes_matches_one(tmp_path):
    from tests.conftest import QA

    base = _saved_tiny_lm(tmp_path / "lm")
    for name, rows in (("forget", QA[:2]), ("retain", QA[2:])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["erase", "--model", str(tmp_path / "lm"), "--forget", str(tmp_path / "forget.jsonl"), "--retain",
            str(tmp_path / "retain.jsonl"), "--method", "npo", "--steps", "3", "--batch-size", "2",
            "--retain-batch-size", "4", "--lr", "1e-2"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    _two_processes([*args, "--out", str(tmp_path / "two")])
    one, two = _weights(tmp_path / "one", "model.safetensors"), _weights(tmp_path / "two", "model.safetensors")
    assert any(not torch.equal(one[k], base[k]) for k in one)  # it trained
    _assert_close(two, one, atol=1e-3)
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        logits = [AutoModelForCausalLM.from_pretrained(tmp_path / d)(ids).logits for d in ("one", "two")]
    torch.testing.assert_close(logits[1], logits[0], atol=1e-4, rtol=1e-4)
    history = [json.loads((tmp_path / d / "erasure.json").read_text())["history"] for d in ("one", "two")]
    assert [h["loss"] for h in history[1]] == pytest.approx([h["loss"] for h in history[0]], abs=1e-5)


def test_an_esd_erasure_on_two_processes_matches_one(tmp_path):
    from tests.conftest import make_tiny_pipeline

    make_tiny_pipeline(seed=0).save(tmp_path / "pipe")
    args = ["erase", "--model", str(tmp_path / "pipe"), "--concept", "Neon", "--method", "esd-x", "--steps", "2",
            "--batch-size", "2", "--lr", "1e-3", "--option", "ddim_steps=3"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    _two_processes([*args, "--out", str(tmp_path / "two")])
    unet = "unet/diffusion_pytorch_model.safetensors"
    one, two = _weights(tmp_path / "one", unet), _weights(tmp_path / "two", unet)
    base = _weights(tmp_path / "pipe", unet)
    assert any(not torch.equal(one[k], base[k]) for k in one)  # it trained
    _assert_close(two, one, atol=1e-4)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path):
    from tests.conftest import make_tiny_pipeline

    make_tiny_pipeline(seed=0).save(tmp_path / "pipe")
    done = _torchrun(["erase", "--model", str(tmp_path / "pipe"), "--concept", "Neon", "--steps", "1",
                      "--batch-size", "3", "--out", str(tmp_path / "x")])
    assert done.returncode != 0 and "batch_size 3 does not split over 2 processes" in done.stderr
    assert not (tmp_path / "x").exists()


def test_two_processes_checkpoint_once_and_resume_exactly(tmp_path):
    from tests.conftest import QA

    _saved_tiny_lm(tmp_path / "lm")
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA))
    args = ["erase", "--model", str(tmp_path / "lm"), "--forget", str(tmp_path / "forget.jsonl"), "--method", "ga",
            "--batch-size", "2", "--lr", "1e-2", "--checkpoint-every", "1"]
    assert main([*args, "--steps", "3", "--out", str(tmp_path / "one")]) == 0
    _two_processes([*args, "--steps", "2", "--out", str(tmp_path / "two")])
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["step-0000001", "step-0000002"]
    _two_processes([*args, "--steps", "3", "--resume", "--overwrite", "--out", str(tmp_path / "two")])
    one, two = _weights(tmp_path / "one", "model.safetensors"), _weights(tmp_path / "two", "model.safetensors")
    _assert_close(two, one, atol=1e-3)
