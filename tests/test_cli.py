"""The command line on the shipped mini-canvas default (few steps: behaviour, not quality)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from erasure.cli import main


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_concepts_lists_styles_and_objects(capsys):
    code, out, _ = _run(["concepts", "--model", "mini-canvas"], capsys)
    data = json.loads(out)
    assert code == 0 and len(data["styles"]) >= 10 and len(data["objects"]) >= 10
    assert "Neon" in data["styles"] and "Star" in data["objects"]


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "erasure", "concepts", "--model", "mini-canvas"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "styles" in json.loads(res.stdout)


@pytest.mark.parametrize(
    "args, message",
    [
        (["erase", "--model", "mini-canvas", "--concept", "Baroque", "--out", "x"], "unknown concept 'Baroque'"),
        (["erase", "--model", "mini-canvas", "--concept", " ", "--out", "x"], "concept is empty"),
        (["erase", "--model", "mini-canvas", "--concept", "Neon", "--method", "nope", "--out", "x"],
         "unknown method 'nope'"),
        (["erase", "--model", "/no/such/model", "--concept", "Neon", "--out", "x"], "does not exist"),
        (["eval", "--model", "mini-canvas", "--concept", "Dragon", "--out", "x"], "unknown concept 'Dragon'"),
        (["erase", "--model", "mini-canvas", "--concept", "Neon", "--out", "x", "--option", "etaa=2"],
         "unknown 'esd-x' method option"),
    ],
)
def test_bad_input_gives_a_clear_error(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(args, capsys)
    assert code == 2
    assert message in err


def test_erase_then_eval_writes_model_and_metrics(tmp_path, capsys):
    out = tmp_path / "erased"
    code, stdout, _ = _run(["erase", "--model", "mini-canvas", "--concept", "Neon", "--method", "esd-x",
                            "--out", str(out), "--steps", "2", "--option", "ddim_steps=5"], capsys)
    assert code == 0, stdout
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "text_encoder").is_dir() and (out / "concepts.json").is_file()
    ev = tmp_path / "ev"
    code, stdout, _ = _run(["eval", "--model", str(out), "--concept", "Neon", "--out", str(ev), "--per-prompt", "1",
                            "--ddim-steps", "3"], capsys)
    assert code == 0
    record = json.loads((ev / "eval.json").read_text())
    for key in ("ua", "ira", "cra"):
        assert 0.0 <= record[key] <= 1.0
    assert record["domain"] == "style" and record["n_target"] == 10 and record["n_other"] == 90
    assert record["seconds"]["total"] > 0
    assert (ev / "samples.png").is_file()
