"""Nothing lost, nothing silent: a table of bad inputs and faults, each a one-line error (exit 2 on the CLI,
ValueError in the API) that leaves the model folder and every earlier output as they were; checkpoints that
resume only the run they belong to, survive a damaged newest file, and keep the last finite state."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from erasure.cli import main
from tests.conftest import QA, make_tiny_lm

FAST = ["--steps", "2", "--option", "ddim_steps=2"]  # mini-canvas ESD: two steps, two DDIM sampling steps


def _cli(args: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` -> a digest of its bytes ("dir" for folders)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def canvas(tmp_path) -> Path:
    """A private copy of the shipped mini-canvas model."""
    from erasure.models import resolve_model_path

    return Path(shutil.copytree(resolve_model_path("mini-canvas"), tmp_path / "model"))


@pytest.fixture
def lm(tmp_path) -> Path:
    """A tiny causal LM folder and a forget file of QA rows."""
    model, tok = make_tiny_lm()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA))
    return tmp_path / "model"


# ------------------------------------------------------------------------------ setups that damage the inputs
def _truncate_unet(tmp: Path) -> None:
    f = tmp / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _pickle_only_unet(tmp: Path) -> None:
    f = tmp / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    f.rename(f.with_name("diffusion_pytorch_model.bin"))


def _out_not_empty(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "earlier.txt").write_text("an earlier result")


def _file_where_a_folder_goes(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder")


def _forget_rows_not_objects(tmp: Path) -> None:
    (tmp / "forget.jsonl").write_text("[1, 2]\n[3, 4]\n")


def _forget_bad_jsonl(tmp: Path) -> None:
    (tmp / "forget.jsonl").write_text(json.dumps(QA[0]) + "\n{\"question\": \"who\", \n")


def _another_models_tokenizer(tmp: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, "who": 3, "paris": 4}
    t = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    for f in (tmp / "model").glob("*token*"):
        f.unlink()
    PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
                            ).save_pretrained(tmp / "model")


def _truncate_lm(tmp: Path) -> None:
    f = tmp / "model" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])


CANVAS = ["erase", "--model", "{tmp}/model", "--concept", "Neon", "--out", "{tmp}/out", *FAST]
LLM = ["erase", "--model", "{tmp}/model", "--method", "ga", "--forget", "{tmp}/forget.jsonl", "--out", "{tmp}/out",
       "--steps", "2"]
# id: (model, setup, extra arguments (replacing a base one of the same flag), message fragment)
CASES = {
    "lr-inf": ("canvas", None, ["--lr", "inf"], "lr=inf: expected a finite number"),
    "lr-nan": ("canvas", None, ["--lr", "nan"], "lr=nan: expected a finite number"),
    "lr-negative": ("canvas", None, ["--lr", "-1"], "lr must be a finite number > 0"),
    "steps-zero": ("canvas", None, ["--steps", "0"], "steps must be >= 1"),
    "batch-size-zero": ("canvas", None, ["--batch-size", "0"], "batch_size must be >= 1"),
    "checkpoint-every-negative": ("canvas", None, ["--checkpoint-every", "-1"], "checkpoint_every must be >= 0"),
    "option-not-a-number": ("canvas", None, ["--option", "eta=abc"], "option eta='abc': expected a number"),
    "option-infinite": ("canvas", None, ["--option", "eta=1e999"], "option eta=inf: expected a finite number"),
    "out-is-the-model": ("canvas", None, ["--out", "{tmp}/model"], "is the model folder"),
    "out-inside-the-model": ("canvas", None, ["--out", "{tmp}/model/unet/x"], "inside the model folder"),
    "out-not-empty": ("canvas", _out_not_empty, [], "already holds files (earlier.txt); pass --overwrite"),
    "out-under-a-file": ("canvas", _file_where_a_folder_goes, ["--out", "{tmp}/afile/out"], "afile is a file"),
    "weights-truncated": ("canvas", _truncate_unet, [], "cannot load the pipeline in"),
    "weights-pickle-only": ("canvas", _pickle_only_unet, [], "safetensors only"),
    "concept-unknown": ("canvas", None, ["--concept", "Nope"], "unknown concept 'Nope'"),
    "resume-without-checkpoints": ("canvas", None, ["--resume"], "no checkpoint under"),
    "forget-rows-not-objects": ("lm", _forget_rows_not_objects, [], "forget.jsonl, line 1: a record must be a JSON object"),
    "forget-not-jsonl": ("lm", _forget_bad_jsonl, [], "forget.jsonl, line 2: not valid JSON"),
    "forget-missing": ("lm", None, ["--forget", "{tmp}/nope.jsonl"], "nope.jsonl' does not exist"),
    "lm-another-tokenizer": ("lm", _another_models_tokenizer, [], "is it this model's tokenizer?"),
    "lm-weights-truncated": ("lm", _truncate_lm, [], "cannot load the model in"),
    "lm-lr-inf": ("lm", None, ["--lr", "inf"], "lr=inf: expected a finite number"),
}


def _args(base: list[str], extra: list[str], tmp: Path) -> list[str]:
    args = list(base)
    i = 0
    while i < len(extra):  # a flag given again replaces the base one (and its value)
        flag = extra[i]
        has_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if flag in args and flag != "--option":
            j = args.index(flag)
            del args[j: j + 2]
        args += extra[i: i + 1 + has_value]
        i += 1 + has_value
    return [a.replace("{tmp}", str(tmp)) for a in args]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line_and_changes_nothing(case, tmp_path, request, capsys):
    kind, setup, extra, message = CASES[case]
    request.getfixturevalue(kind)
    if setup is not None:
        setup(tmp_path)
    before = _snapshot(tmp_path)
    code, err = _cli(_args(CANVAS if kind == "canvas" else LLM, extra, tmp_path), capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("erasure erase: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before  # the model, earlier outputs: untouched; nothing half-written


@pytest.mark.parametrize("command, extra, setup, message", [
    ("eval", ["--out", "{tmp}/model"], None, "is the model folder"),
    ("eval", [], _out_not_empty, "already holds files (earlier.txt); pass --overwrite"),
    ("audit", ["--out", "{tmp}/model/unet"], None, "inside the model folder"),
    ("audit", [], _out_not_empty, "already holds files (earlier.txt); pass --overwrite"),
])
def test_reports_never_replace_a_model_or_an_earlier_report(command, extra, setup, message, canvas, tmp_path,
                                                            capsys):
    if setup is not None:
        setup(tmp_path)
    before = _snapshot(tmp_path)
    base = [command, "--model", "{tmp}/model", "--concept", "Neon", "--out", "{tmp}/out"]
    code, err = _cli(_args(base, extra, tmp_path), capsys)
    assert code == 2 and f"erasure {command}: error:" in err and message in err, err
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------ outputs
def test_a_full_disk_while_saving_leaves_the_earlier_output(canvas, tmp_path, capsys, monkeypatch):
    """--overwrite replaces an earlier output only once the new one is complete: a write that fails half-way
    (disk full) leaves the earlier one as it was, and no partial folder."""
    from diffusion.adapter import DiffusionAdapter

    _out_not_empty(tmp_path)
    real_save = DiffusionAdapter.save

    def full_disk(self, path):
        real_save(self, path)  # some files made it...
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(path) / "unet" / "config.json"))

    monkeypatch.setattr(DiffusionAdapter, "save", full_disk)
    before = _snapshot(tmp_path)
    code, err = _cli(_args(CANVAS, ["--overwrite"], tmp_path), capsys)
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert _snapshot(tmp_path) == before


def test_overwrite_replaces_an_earlier_output_whole(canvas, tmp_path, capsys):
    _out_not_empty(tmp_path)
    code, err = _cli(_args(CANVAS, ["--overwrite"], tmp_path), capsys)
    assert code == 0, err
    out = tmp_path / "out"
    assert not (out / "earlier.txt").exists() and (out / "erasure.json").is_file()
    assert (out.stat().st_mode & 0o777) == (canvas.stat().st_mode & 0o777)  # the usual permissions
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_the_api_refuses_what_the_cli_refuses(tmp_path, monkeypatch):
    from diffusion.pipeline import T2IPipeline
    from erasure import erase
    from erasure.models import resolve_model_path

    model = Path(shutil.copytree(resolve_model_path("mini-canvas"), tmp_path / "model"))
    with pytest.raises(ValueError, match="unknown concept 'Nope'"):
        erase(T2IPipeline.load(model), "Nope", "esd-x", steps=1, ddim_steps=2)
    with pytest.raises(ValueError, match="lr=inf: expected a finite number"):
        erase(T2IPipeline.load(model), "Neon", "esd-x", steps=1, lr=float("inf"), ddim_steps=2)
    before = _snapshot(tmp_path)
    result = erase(T2IPipeline.load(model), "a red balloon", "esd-x", steps=1, ddim_steps=2, free_text=True)
    with pytest.raises(ValueError, match="is the model folder"):
        result.save(model)
    with pytest.raises(ValueError, match="inside the model folder"):
        result.save(model / "unet")
    assert _snapshot(tmp_path) == before
    result.save(tmp_path / "out")
    with pytest.raises(ValueError, match="already holds files"):
        result.save(tmp_path / "out")
    result.save(tmp_path / "out", overwrite=True)
    # out= is checked before any training (the loop is never entered), then saved to
    from erasure.loop import Unlearner

    with monkeypatch.context() as m:
        m.setattr(Unlearner, "run", lambda self: pytest.fail("trained before checking out="))
        with pytest.raises(ValueError, match="is the model folder"):
            erase(T2IPipeline.load(model), "Neon", "esd-x", steps=1, ddim_steps=2, out=model)
    erase(T2IPipeline.load(model), "Neon", "esd-x", steps=1, ddim_steps=2, out=tmp_path / "direct")
    assert (tmp_path / "direct" / "erasure.json").is_file()


# ------------------------------------------------------------------------------ checkpoints
def _checkpointed(tmp_path: Path, *extra: str) -> list[str]:
    return _args(CANVAS, ["--checkpoint-every", "1", "--checkpoint-dir", "{tmp}/ck", *extra], tmp_path)


@pytest.mark.parametrize("change, message", [
    (["--concept", "Sketch"], "its concept is \"Neon\", this run's is \"Sketch\""),
    (["--seed", "1"], "its seed is 0, this run's is 1"),
    (["--method", "esd-u"], "its method is \"esd-x\""),
    (["--option", "eta=2.0"], "its method_options is"),
    (["--steps", "1"], "is at step 2, past this run's steps=1"),
])
def test_resume_refuses_a_checkpoint_of_another_run(change, message, canvas, tmp_path, capsys):
    code, err = _cli(_checkpointed(tmp_path), capsys)
    assert code == 0, err
    before = _snapshot(tmp_path)
    code, err = _cli(_args(_checkpointed(tmp_path, "--resume", "--out", "{tmp}/again"), change, tmp_path), capsys)
    assert code == 2 and message in err, err
    assert _snapshot(tmp_path) == before


def test_a_fresh_run_refuses_a_folder_with_earlier_checkpoints(canvas, tmp_path, capsys):
    assert _cli(_checkpointed(tmp_path), capsys)[0] == 0
    code, err = _cli(_checkpointed(tmp_path, "--out", "{tmp}/again"), capsys)
    assert code == 2 and "holds an earlier run's checkpoints" in err


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(canvas, tmp_path, capsys, caplog):
    """Checkpoints after steps 2 and 3; the newest is cut in half; resuming to step 4 starts from step 2 with a
    warning and ends byte-identical to an uninterrupted 4-step run."""
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert _cli(_args(CANVAS, ["--steps", "4", "--out", "{tmp}/straight"], tmp_path), capsys)[0] == 0
    assert _cli(_checkpointed(tmp_path, "--steps", "3", "--out", "{tmp}/first"), capsys)[0] == 0
    newest = tmp_path / "ck" / "step-0000003" / "trainable.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    code, err = _cli(_checkpointed(tmp_path, "--steps", "4", "--resume", "--out", "{tmp}/resumed"), capsys)
    assert code == 0, err
    assert any("step-0000003 is damaged" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "resumed" / weights).read_bytes() == (tmp_path / "straight" / weights).read_bytes()


def test_a_diverging_run_keeps_the_last_finite_state_and_resumes_from_it(canvas, tmp_path, capsys):
    """lr 1e30: the first step's weights give an infinite loss; the error says so in one line, and the checkpoint
    kept is the state before that step (finite), from which a sane lr resumes."""
    import torch
    from safetensors.torch import load_file

    code, err = _cli(_checkpointed(tmp_path, "--lr", "1e30", "--steps", "3"), capsys)
    assert code == 2 and "became" in err and "last good state (step 0)" in err and "lower lr" in err, err
    kept = sorted((tmp_path / "ck").glob("step-*"))
    assert [p.name for p in kept] == ["step-0000000"]
    assert all(torch.isfinite(w).all() for w in load_file(kept[0] / "trainable.safetensors").values())
    assert not (tmp_path / "out").exists()
    code, err = _cli(_checkpointed(tmp_path, "--lr", "1e-4", "--steps", "2", "--resume"), capsys)
    assert code == 0, err


def test_verbose_shows_the_traceback_of_an_expected_error(canvas, tmp_path, capsys):
    code, err = _cli(["-v", *_args(CANVAS, ["--lr", "inf"], tmp_path)], capsys)
    assert code == 2 and "Traceback" in err and "lr=inf" in err.splitlines()[-1]


def test_kill_9_then_resume_is_byte_identical(canvas, tmp_path, capsys):
    """A real ``kill -9`` of the erase process after its second checkpoint; --resume then ends with the same bytes
    as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    weights = "unet/diffusion_pytorch_model.safetensors"
    assert _cli(_args(CANVAS, ["--steps", "5", "--out", "{tmp}/straight"], tmp_path), capsys)[0] == 0
    args = _checkpointed(tmp_path, "--steps", "5")
    proc = subprocess.Popen([sys.executable, "-m", "erasure", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "ERASURE_NO_PROGRESS": "1"})
    deadline = time.time() + 300
    while not (tmp_path / "ck" / "step-0000002").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / weights).exists() or proc.returncode == 0
    code, err = _cli([*args, "--resume", "--overwrite"], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / weights).read_bytes() == (tmp_path / "straight" / weights).read_bytes()


def test_checkpoints_inside_out_survive_the_save_and_resume(canvas, tmp_path, capsys):
    """Without --checkpoint-dir the checkpoints live in --out/checkpoints: the model is written around them, and a
    later --resume to more steps into the same folder needs --overwrite (the folder holds a finished model)."""
    args = _args(CANVAS, ["--checkpoint-every", "1"], tmp_path)
    assert _cli(args, capsys)[0] == 0
    out = tmp_path / "out"
    assert (out / "erasure.json").is_file() and (out / "checkpoints" / "step-0000002").is_dir()
    more = _args(args, ["--steps", "3", "--resume"], tmp_path)
    code, err = _cli(more, capsys)
    assert code == 2 and "already holds files" in err
    code, err = _cli([*more, "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((out / "erasure.json").read_text())["steps"] == 3
    assert (out / "checkpoints" / "step-0000003").is_dir()


def test_a_diverging_rolling_run_keeps_the_pool_of_its_last_good_state(canvas, tmp_path, capsys):
    """ESD's rolling pool advances at the start of every step; the state kept after a divergence at the first step
    must hold the pool as it was before that step, so resuming with a sane lr equals a fresh run byte for byte."""
    weights = "unet/diffusion_pytorch_model.safetensors"
    rolling = ["--option", "sampling='rolling'"]
    code, err = _cli(_checkpointed(tmp_path, "--lr", "1e30", "--steps", "3", *rolling), capsys)
    assert code == 2 and "last good state (step 0)" in err, err
    assert (tmp_path / "ck" / "step-0000000" / "objective.safetensors").is_file()
    code, err = _cli(_checkpointed(tmp_path, "--lr", "1e-4", "--steps", "2", "--resume", *rolling), capsys)
    assert code == 0, err
    code, err = _cli(_args(CANVAS, ["--lr", "1e-4", "--steps", "2", "--out", "{tmp}/fresh", *rolling], tmp_path), capsys)
    assert code == 0, err
    assert (tmp_path / "out" / weights).read_bytes() == (tmp_path / "fresh" / weights).read_bytes()
