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
        (["erase", "--model", "mini-tofu", "--concept", "Neon", "--out", "x"], "--concept does not apply to this model"),
        (["eval", "--model", "mini-tofu", "--target", "Japan", "--out", "x"],
         "--target belongs to benchmark mini-rwku: name it with --benchmark"),
        (["erase", "--model", "mini-tofu", "--out", "x", "--method", "ga"], "needs a forget set"),
        (["erase", "--model", "mini-tofu", "--forget", "forget10", "--out", "x"], "'esd-x' is for diffusion models"),
        (["erase", "--model", "mini-tofu", "--forget", "forget10", "--method", "ga", "--lora", '{"rnk": 2}', "--out",
          "x"], "unknown --lora option(s): rnk"),
        (["erase", "--model", "mini-tofu", "--forget", "forget10", "--method", "ga", "--lora", "rank=2", "--out",
          "x"], "--lora expects a JSON object"),
        (["eval", "--model", "mini-canvas", "--benchmark", "mini-tofu", "--out", "x"],
         "benchmark 'mini-tofu' is for llm models"),
        (["audit", "--model", "mini-tofu", "--attack", "unlearndiff", "--out", "x"],
         "attack 'unlearndiff' is for diffusion models"),
        (["audit", "--model", "mini-canvas", "--concept", "Neon", "--attack", "advunlearn-prefix", "--no-utility",
          "--out", "x"], "needs the model before erasure: give --original"),
    ],
)
def test_bad_input_gives_a_clear_error(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(args, capsys)
    assert code == 2
    assert message in err


def test_a_real_model_not_yet_converted_names_the_command_that_fetches_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ERASURE_CACHE", str(tmp_path))
    code, _, err = _run(["erase", "--model", "smollm2-135m", "--forget", "forget10", "--method", "npo", "--out",
                         str(tmp_path / "x")], capsys)
    assert code == 2 and "model 'smollm2-135m' is not on this machine yet: run `make real-lm`" in err


def test_concepts_of_an_llm_are_its_forget_splits(capsys):
    code, out, _ = _run(["concepts", "--model", "mini-tofu"], capsys)
    assert code == 0 and json.loads(out)["forget_splits"] == ["forget01", "forget05", "forget10"]


def test_python_api_and_cli_train_the_same_model(tmp_path, capsys):
    """Both entry points take the model folder's recommended.json, so the same seed gives byte-identical weights."""
    from diffusion.pipeline import T2IPipeline
    from erasure import erase
    from erasure.models import resolve_model_path

    erase(T2IPipeline.load(resolve_model_path("mini-canvas")), "Neon", "esd-x", steps=2, ddim_steps=4
          ).save(tmp_path / "api")
    code, _, err = _run(["erase", "--model", "mini-canvas", "--concept", "Neon", "--steps", "2", "--option",
                         "ddim_steps=4", "--out", str(tmp_path / "cli")], capsys)
    assert code == 0, err
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "api" / weights).read_bytes() == (tmp_path / "cli" / weights).read_bytes()
    for entry in ("api", "cli"):
        summary = json.loads((tmp_path / entry / "erasure.json").read_text())
        assert summary["recommended"].endswith("mini-canvas/recommended.json")
        assert summary["train_config"]["lr"] == 3e-4  # recommended.json's, not the paper's 1e-5
    paper = erase(T2IPipeline.load(resolve_model_path("mini-canvas")), "Neon", "esd-x", steps=1, ddim_steps=2,
                  recommended=False)
    assert paper.train_config["lr"] == 1e-5 and paper.info["recommended"] is None


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


def _audit(out, capsys, *args: str) -> dict:
    """Run ``erasure audit ARGS --no-utility --out OUT``; returns robustness.json."""
    code, _, err = _run(["audit", *args, "--no-utility", "--out", str(out)], capsys)
    assert code == 0, err
    return json.loads((out / "robustness.json").read_text())


def test_audit_with_several_attacks_writes_one_table(tmp_path, capsys):
    out = tmp_path / "audit"
    summary = _audit(out, capsys, "--model", "mini-canvas", "--concept", "Neon", "--attack", "unlearndiff", "random",
                     "--n", "2", "--iterations", "2", "--option", "random.tries=1")
    assert set(summary["attacks"]) == {"unlearndiff", "random"}
    for name in ("unlearndiff", "random"):
        record = json.loads((out / name / "audit.json").read_text())
        assert record["n"] == 2 and len(record["per_example"]) == 2
        assert record["post_asr"] >= record["pre_asr"]
        assert [r["seed"] for r in record["per_example"]] == [0, 1]
    # each prompt has its own evaluation seed, so every attack sees the same pre-attack verdicts
    pre = {n: [r["pre_success"] for r in json.loads((out / n / "audit.json").read_text())["per_example"]]
           for n in ("unlearndiff", "random")}
    assert pre["unlearndiff"] == pre["random"]
    table = (out / "robustness.md").read_text()
    assert "| unlearndiff |" in table and "| random |" in table
    assert (out / "attack_heatmap.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attack", "random", "--iterations", "3"], "none of the attacks ['random'] has that option"),
        (["--attack", "random", "--option", "lr=0.1"], "attack 'random'"),
        (["--attack", "random", "--option", "embedding.lr=0.1"], "not among the attacks run"),
        (["--attack", "random", "random"], "named twice"),
    ],
)
def test_audit_bad_attack_options_are_clear_errors(args, message, capsys, tmp_path):
    code, _, err = _run(["audit", "--model", "mini-canvas", "--concept", "Neon", "--out", str(tmp_path / "a"),
                         "--no-utility", *args], capsys)
    assert code == 2 and message in err


def test_llm_audit_runs_soft_prompt_and_relearning(tmp_path, capsys):
    out = tmp_path / "llm-audit"
    summary = _audit(out, capsys, "--model", "mini-tofu", "--forget", "forget10", "--attack", "soft-prompt", "relearn",
                     "--n", "4", "--option", "soft-prompt.steps=2", "--option", "relearn.steps=1")
    assert summary["attacks"]["soft-prompt"]["n"] == 4
    assert summary["attacks"]["relearn"]["n"] == 2  # relearns on half the rows, judged on the other half
    for name in ("soft-prompt", "relearn"):
        record = json.loads((out / name / "audit.json").read_text())
        assert 0.0 <= record["pre_asr"] <= record["post_asr"] <= 1.0
    assert "| soft-prompt |" in (out / "robustness.md").read_text()


def test_erase_flags_reach_the_training_options():
    from erasure.cli import _train_options, build_parser

    args = build_parser().parse_args(["erase", "--model", "mini-canvas", "--concept", "Neon", "--method", "esd-x",
                                      "--out", "o", "--gradient-checkpointing", "--mixed-precision", "no"])
    assert _train_options(args) == {"gradient_checkpointing": True, "mixed_precision": "no"}
    plain = build_parser().parse_args(["erase", "--model", "mini-canvas", "--concept", "Neon", "--out", "o"])
    assert _train_options(plain) == {}


def test_option_values_are_python_literals_or_json_words():
    from erasure.cli import parse_options

    assert parse_options(["eta=2.0", "retain_loss=kl", "use_pooler=false", "a=True", "b=null", "c='x'"]) == \
        {"eta": 2.0, "retain_loss": "kl", "use_pooler": False, "a": True, "b": None, "c": "x"}
