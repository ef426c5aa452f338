"""Experiment-script helpers (the scripts themselves run minutes; their pure parts are tested here)."""

from __future__ import annotations

import pytest

from experiments.advunlearn_vs_esd import MARKERS, write_readme


def test_readme_table_block_is_replaced_and_missing_markers_are_an_error(tmp_path):
    readme = tmp_path / "README.md"
    start, end = f"<!-- {MARKERS}:start -->", f"<!-- {MARKERS}:end -->"
    readme.write_text(f"intro\n{start}\nold table\n{end}\noutro\n")
    write_readme(readme, "| new |")
    assert readme.read_text() == f"intro\n{start}\n| new |\n{end}\noutro\n"
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers here\n")
    with pytest.raises(ValueError, match="advunlearn-table"):
        write_readme(bare, "| new |")


def test_style_routes_rejects_an_object_and_reads_the_shipped_model():
    from experiments.style_routes import WORDINGS, style_routes

    with pytest.raises(ValueError, match="not a mini-canvas style"):
        style_routes("mini-canvas", "Star")
    routes = style_routes("mini-canvas", "Neon", n=3)
    assert set(routes) == set(WORDINGS)
    assert routes["name"]["style"] == 1.0  # the shipped model draws Neon from its name (3 of 3 objects)
    assert routes["style words only"]["example"] == "bright night Circle image."


def _latent_pipeline(tmp_path):
    """A tiny Stable-Diffusion-layout pipeline (VAE + 4-channel latent UNet) saved to a local folder."""
    from diffusion.pipeline import T2IPipeline
    from tests.conftest import OBJECTS, STYLES, make_tiny_latent_parts, make_tiny_pipeline

    pixel = make_tiny_pipeline(seed=0)
    vae, unet = make_tiny_latent_parts(seed=0)
    pipe = T2IPipeline(unet=unet, text_encoder=pixel.text_encoder, tokenizer=pixel.tokenizer,
                       scheduler=pixel.scheduler, vae=vae, concepts=pixel.concepts)
    return pipe.save(tmp_path / "sd-like"), {"style": list(STYLES), "object": list(OBJECTS)}


def test_advunlearn_vs_esd_runs_on_a_local_latent_pipeline(tmp_path):
    """The comparison's per-concept run needs nothing mini-canvas-specific: a local SD-layout folder (VAE latents,
    its own tokenizer and concepts.json) and a judge folder are enough; AdvUnlearn leaves the UNet untouched and
    ESD-x the text encoder."""
    import argparse

    import torch
    from safetensors.torch import load_file

    from evals.judges import CanvasClassifier
    from experiments.advunlearn_vs_esd import MODELS, run_concept

    model, labels = _latent_pipeline(tmp_path)
    torch.manual_seed(0)
    CanvasClassifier(labels, width=8, image_size=16).save(tmp_path / "judge")
    args = argparse.Namespace(model=str(model), original=None, evaluator=str(tmp_path / "judge"),
                              methods=list(MODELS[1:]), attacks=["unlearndiff"], steps=2, seed=0, n=1,
                              out=str(tmp_path / "out"), attack_options={"k": 1, "iterations": 2})
    results = run_concept("Neon", args)

    assert list(results) == list(MODELS)
    for rec in results.values():
        assert all(0.0 <= rec[k] <= 1.0 for k in ("ua", "ira", "cra"))
        asr = rec["unlearndiff"]
        assert asr["n"] == 1 and 0.0 <= asr["pre_asr"] <= asr["post_asr"] <= 1.0

    def weights(folder, part):
        return load_file(folder / part / "diffusion_pytorch_model.safetensors" if part in ("unet", "vae")
                         else folder / part / "model.safetensors")

    out = tmp_path / "out" / "Neon"
    for name, frozen, edited in (("advunlearn", "unet", "text_encoder"), ("esd-x", "text_encoder", "unet")):
        before, after = weights(model, frozen), weights(out / name / "model", frozen)
        assert all(torch.equal(before[k], after[k]) for k in before), f"{name} changed the {frozen}"
        before, after = weights(model, edited), weights(out / name / "model", edited)
        assert any(not torch.equal(before[k], after[k]) for k in before), f"{name} left the {edited} unchanged"
        vae_before, vae_after = weights(model, "vae"), weights(out / name / "model", "vae")
        assert all(torch.equal(vae_before[k], vae_after[k]) for k in vae_before)


def test_rwku_table_averages_each_method_against_the_base_model(tmp_path):
    from experiments.rwku_table import table, write_readme as write_rwku

    rec = lambda qa, ut, **kw: {"forget_qa": qa, "forget_fb": 1.0, "forget_adversarial": 1.0, "neighbour": 1.0,  # noqa
                                "utility": ut, "fluency_ppl": 40.0, "mia_auc": 0.5, **kw}
    results = {"A": {"base": rec(1.0, 1.0), "npo": rec(0.25, 0.9, erase_minutes=5.0, steps=20, lr=2e-5)},
               "B": {"base": rec(1.0, 0.8), "npo": rec(0.75, 0.8, erase_minutes=3.0, steps=20, lr=2e-5)}}
    text = table(results, ["npo", "ga"])
    # QA drop: (0.75 + 0.25) / 2 = 0.5; utility / base: (0.9 + 1.0) / 2 = 0.95; erase minutes 4.0; ga never ran
    assert "| npo | 2 | 0.500 | 0.000 | 0.000 | 1.000 | 0.950 | 1.000 | 4.000 |" in text
    assert "| ga |" not in text
    readme = tmp_path / "R.md"
    start, end = "<!-- rwku-table:start -->", "<!-- rwku-table:end -->"
    readme.write_text(f"a\n{start}\nold\n{end}\nb\n")
    write_rwku(readme, "new")
    assert readme.read_text() == f"a\n{start}\nnew\n{end}\nb\n"


def _record(pre, post, ua=1.0, ira=0.8):
    return {"ua": ua, "ira": ira, "cra": 0.9, "unlearndiff": {"pre_asr": pre, "post_asr": post, "n": 10}}


def test_summary_reads_the_central_claim_over_concepts():
    from experiments.advunlearn_vs_esd import summary

    met = {"A": {"esd-x": _record(0.1, 0.5), "advunlearn": _record(0.0, 0.1)},
           "B": {"esd-x": _record(0.0, 0.2), "advunlearn": _record(0.0, 0.1, ira=0.75)}}
    text = summary(met, "unlearndiff")
    assert "**met**" in text and "lift is >= 0.15 on 2 concepts and the gap on 1" in text
    assert "| A | 0.1 -> 0.5 | 0.0 -> 0.1 | +0.4 | +0.4 |" in text
    low_ira = {"A": {"esd-x": _record(0.1, 0.5), "advunlearn": _record(0.0, 0.1, ira=0.5)}}
    assert "**not met**" in summary(low_ira, "unlearndiff")


def test_resume_refuses_a_concept_run_with_other_settings(tmp_path):
    import argparse
    import json

    from experiments.advunlearn_vs_esd import run_concept

    args = argparse.Namespace(model="mini-canvas", original=None, evaluator="mini-canvas-evaluator",
                              methods=["esd-x"], attacks=["unlearndiff"], steps=2, seed=0, n=1, resume=True,
                              out=str(tmp_path), attack_options={"k": 1})
    (tmp_path / "Neon").mkdir()
    (tmp_path / "Neon" / "results.json").write_text(json.dumps({"original": {"settings": {"steps": 99}}}))
    with pytest.raises(ValueError, match="run with other settings"):
        run_concept("Neon", args)


def test_canvas_benchmark_table_means_and_tradeoff_plot(tmp_path):
    from experiments.canvas_benchmark import method_means, table, tradeoff

    run = {"domain": "style", "ua": 1.0, "ira": 0.8, "cra": 0.6, "fid": 4.0, "steps": 10, "erase_seconds": 2.0,
           "peak_rss_mb": 500.0, "changed_mb": 0.2}
    results = {"uce": {"Neon": run, "Square": {**run, "ua": 0.5, "fid": 6.0}}, "ca": {"Neon": {**run, "fid": None}}}
    means = method_means(results)
    assert means["uce"]["ua"] == 0.75 and means["uce"]["fid"] == 5.0 and means["ca"]["fid"] is None
    text = table(results)
    assert "| uce | 2 | 0.750 | 0.800 | 0.600 | 5.000 |" in text and "| ca | 1 | 1.000 | 0.800 | 0.600 | n/a |" in text
    assert tradeoff(results, tmp_path / "t.png").stat().st_size > 0


def test_attack_matrix_means_and_ranking_changes():
    from experiments.attack_matrix import means, ranking_changes, table

    def audit(**post):
        return {"attacks": {a: {"pre": 0.0, "post": p, "n": 10, "seconds": 1.0} for a, p in post.items()}}

    results = {"esd-x": {"A": audit(unlearndiff=0.4, cce=0.2), "B": audit(unlearndiff=0.2, cce=0.2)},
               "uce": {"A": audit(unlearndiff=0.1, cce=0.5)}}
    mean = means(results)
    assert abs(mean["esd-x"]["unlearndiff"]["post"] - 0.3) < 1e-9 and mean["uce"]["cce"]["post"] == 0.5
    changes = ranking_changes(mean)
    assert changes == ["esd-x vs uce: esd-x more robust under cce; uce under unlearndiff"]
    assert "0.00 -> 0.30" in table(results)
    assert ranking_changes({"a": {"x": {"post": 0.1}}, "b": {"x": {"post": 0.2}}}) == []


def test_summary_bar_is_not_lost_to_float_rounding():
    from experiments.advunlearn_vs_esd import summary

    # lifts 0.0 and 0.3: mean 0.15 exactly in tenths, 0.1499... in floats
    results = {"A": {"esd-x": _record(0.0, 0.0), "advunlearn": _record(0.0, 0.0)},
               "B": {"esd-x": _record(0.4, 0.7), "advunlearn": _record(0.0, 0.0)}}
    text = summary(results, "unlearndiff")
    assert "**met**" in text, text


def test_attack_matrix_resume_keeps_a_finished_audit(tmp_path, monkeypatch):
    """A resumed matrix skips what results.json already holds (no audit runs) and writes the table and the plot."""
    import json
    import sys

    import experiments.attack_matrix as am

    out = tmp_path / "am"
    out.mkdir()
    done = {"attack_names": ["random"], "seed": 0, "smooth": [], "models": None, "model": "m",
            "attacks": {"random": {"pre": 0.0, "post": 0.1, "n": 10, "seconds": 1.0}}}
    (out / "results.json").write_text(json.dumps({"uce": {"Neon": done}}))
    monkeypatch.setattr(am, "audit", lambda *a, **k: pytest.fail("a finished audit ran again"))
    monkeypatch.setattr(sys, "argv", ["attack_matrix", "--out", str(out), "--methods", "uce", "--concepts", "Neon",
                                      "--attacks", "random", "--smooth-methods", "--resume"])
    am.main()
    assert "0.00 -> 0.10" in (out / "table.md").read_text() and (out / "matrix.png").is_file()


def test_cross_modal_rows_masks_and_optimizers(tmp_path, monkeypatch):
    """The sweep on a tiny LM suite: every (mask, optimizer) row runs, masked rows train the mask's share, the
    table lays the suite's columns out, and --resume keeps the rows."""
    import json
    import sys

    import torch

    from experiments import cross_modal
    from llm.adapter import CausalLMAdapter
    from tests.conftest import QA, make_trained_tiny_lm

    CausalLMAdapter(*make_trained_tiny_lm()).save(tmp_path / "lm")

    def score(adapter, label):
        adapter.model.eval()
        with torch.no_grad():
            nll, n = adapter.per_example_nll(adapter.collate(QA[:2]))
        return {"forget nll": float((nll / n).mean())}

    suite = cross_modal.Suite(str(tmp_path / "lm"), "graddiff", lambda a: {"forget": QA[:2], "retain": QA[2:]},
                              score, ("forget nll",))
    monkeypatch.setitem(cross_modal.SUITES, "tiny", lambda: suite)
    argv = ["cross_modal", "--suites", "tiny", "--masks", "dense", "random", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    cross_modal.main()
    results = json.loads((tmp_path / "out" / "results.json").read_text())["tiny"]
    assert set(results) == {"base", "dense + adam", "dense + sophia", "random + adam", "random + sophia"}
    total = results["dense + adam"]["trainable"]
    assert results["random + sophia"]["trainable"] <= round(0.5 * total) < total
    assert results["dense + adam"]["forget nll"] > results["base"]["forget nll"]  # it unlearned
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| random | sophia |" in table and "tiny forget nll" in table and "| wagle | adam | n/a |" in table
    monkeypatch.setattr(sys, "argv", argv + ["--resume"])
    monkeypatch.setattr(cross_modal, "run_row", lambda *a: (_ for _ in ()).throw(AssertionError("rerun")))
    cross_modal.main()  # nothing reruns
    monkeypatch.setattr(sys, "argv", argv + ["--resume", "--lr", "1e-3"])
    with pytest.raises(SystemExit, match="lr"):  # rows at another lr do not mix with these
        cross_modal.main()


def test_safety_table_erases_and_evaluates_each_row(tmp_path, monkeypatch):
    import llm.safety_benchmark
    from experiments.safety_table import judge_rows, rescore, run_row, run_sku_scales, table
    from llm.adapter import CausalLMAdapter
    from tests.conftest import make_tiny_lm

    CausalLMAdapter(*make_tiny_lm()).save(tmp_path / "m")
    model = str(tmp_path / "m")
    sku = run_row(model, "sku", "graddiff", {"steps": 1, "batch_size": 2, "options": {"k": 2}})
    lora = run_row(model, "ga-lora", "llmu", {"steps": 1, "batch_size": 2, "lr": 1e-3, "options": {"k": 2}})
    assert sku["method"] == "sku" and sku["steps"] == 1 and lora["lora"] == {"rank": 8, "alpha": 16}
    assert lora["method"] == "llmu" and lora["lr"] == 1e-3
    text = table({"sku": sku, "ga-lora": lora})
    assert "| sku | sku | 1 | 2e-05 |" in text and "| ga-lora | llmu | 1 | 0.001 |" in text and "VerbMem" not in text
    scaled = run_sku_scales(model, {"steps": 1, "batch_size": 2, "options": {"k": 2}}, [1.0, 3.0])
    assert list(scaled) == [1.0, 3.0] and [r["scale"] for r in scaled.values()] == [1.0, 3.0]
    assert scaled[1.0]["compliance_forget"] == sku["compliance_forget"]  # the same acquisition at scale 1
    stale = {**sku, "compliance_forget": -1.0, "step_form_test": -1.0}  # scored by an earlier rule
    rescore({"stale": stale})
    assert stale == sku  # scored again from its stored answers
    monkeypatch.setattr(llm.safety_benchmark, "compliance_verdict",
                        lambda judge, data=None: lambda answers, rows: [True] * len(answers))
    assert "judged forget" not in text
    judge_rows({"sku": sku, "ga-lora": lora}, "a-judge", match="sku")
    assert sku["compliance_judged_test"] == 1.0 and sku["judge"].startswith("a-judge (cases ") and "judge" not in lora
    monkeypatch.setattr(llm.safety_benchmark, "compliance_verdict",
                        lambda judge, data=None: lambda answers, rows: [False] * len(answers))
    judge_rows({"sku": sku}, "a-judge")  # judged with the same cases: kept
    assert sku["compliance_judged_test"] == 1.0
    sku["judge"] = "a-judge"  # judged before the cases were recorded (or with other cases): judged again
    judge_rows({"sku": sku}, "a-judge")
    assert sku["compliance_judged_test"] == 0.0
    assert "| judged forget | judged test |" in table({"sku": sku, "ga-lora": lora})


def test_rwku_results_merge_with_the_first_run_winning(tmp_path):
    import json

    from experiments.rwku_table import merge_results

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps({"T": {"base": {"x": 1}, "npo": {"x": 2}}}))
    (tmp_path / "b" / "results.json").write_text(json.dumps({"T": {"base": {"x": 9}, "ga": {"x": 3}},
                                                             "U": {"base": {"x": 4}}}))
    assert merge_results([tmp_path / "a", tmp_path / "b"]) == {"T": {"base": {"x": 1}, "npo": {"x": 2}, "ga": {"x": 3}},
                                                              "U": {"base": {"x": 4}}}


def test_every_experiment_and_bench_script_answers_help_when_run_as_a_script():
    """`python experiments/x.py --help` as the README spells it: the script's folder, not the repository root, is on
    sys.path (one process for all scripts, so the shared imports load once)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    scripts = sorted(str(p) for folder in ("experiments", "bench") for p in (root / folder).glob("*.py")
                     if not p.name.startswith("_"))
    code = """
import runpy, sys
from pathlib import Path
root = sys.argv[1]
base = [p for p in sys.path if p not in ("", ".", root)]
failed = []
for script in sys.argv[2:]:
    sys.path[:] = [str(Path(script).parent), *base]  # as `python script` sets it; no script's additions leak
    for name in [m for m in sys.modules if m == "experiments" or m.startswith(("experiments.", "bench."))]:
        del sys.modules[name]
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, None):
            failed.append(f"{script}: exit {e.code}")
    except Exception as e:
        failed.append(f"{script}: {type(e).__name__}: {e}")
print("FAILED", failed, file=sys.stderr) if failed else None
sys.exit(1 if failed else 0)
"""
    done = subprocess.run([sys.executable, "-c", code, str(root), *scripts], capture_output=True, text=True,
                          cwd=root.parent)
    assert done.returncode == 0, done.stderr[-3000:]


def test_tradeoff_gap_reads_the_dense_curve_at_the_candidates_forget_level():
    """Hand-computed: dense points (UA 0.8, CRA 0.9) and (1.0, 0.7) give 0.8 at UA 0.9; a candidate at (0.9, 0.85)
    is 0.05 better. Two seeds with different values: the bootstrap interval spans their resampled means."""
    import numpy as np

    from experiments.tradeoff_compare import interpolate_at, tradeoff_gap

    assert interpolate_at(0.9, [1.0, 0.8], [0.7, 0.9]) == (pytest.approx(0.8), True)
    assert interpolate_at(1.2, [1.0, 0.8], [0.7, 0.9]) == (pytest.approx(0.7), False)
    with pytest.raises(ValueError, match="two or more points"):
        interpolate_at(0.5, [0.8], [0.9])
    dense = [np.array([[0.8, 0.9], [0.8, 0.9]]), np.array([[1.0, 0.7], [1.0, 0.7]])]
    same = tradeoff_gap(np.array([[0.9, 0.85], [0.9, 0.85]]), dense, resamples=200)
    assert same["gap"] == pytest.approx([0.0, 0.05]) and same["ci95"][1] == pytest.approx([0.05, 0.05])
    assert same["not_better"][1] == 0.0 and same["outside"] == 0.0 and same["n_seeds"] == 2
    # seeds disagree: CRA 0.95 and 0.70 at UA 0.9 -> gaps +0.15 and -0.10 (mean +0.025); resamples span both
    spread = tradeoff_gap(np.array([[0.9, 0.95], [0.9, 0.70]]), dense, resamples=400, seed=1)
    assert spread["gap"][1] == pytest.approx(0.025)
    assert spread["ci95"][1] == pytest.approx([-0.10, 0.15])
    assert 0.1 < spread["not_better"][1] < 0.5  # resamples of (seed 2, seed 2) only, about a quarter
    out = tradeoff_gap(np.array([[1.1, 0.9], [1.1, 0.9]]), dense, resamples=10)
    assert out["outside"] == 1.0 and out["gap"][1] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="shape"):
        tradeoff_gap(np.zeros((3, 2)), [np.zeros((2, 2))], resamples=0)


def test_tradeoff_rows_merge_results_by_seed_and_refuse_a_seed_twice(tmp_path):
    import json

    from experiments.tradeoff_compare import load_runs, parse_row

    def results(path, seeds):
        runs = [{"seed": s, "after": {"ua": 0.5 + s / 10, "ira": 0.9, "cra": 0.8}} for s in seeds]
        path.write_text(json.dumps({"Neon": {"runs": runs}}))
        return str(path)

    a, b = results(tmp_path / "a.json", [0, 1]), results(tmp_path / "b.json", [2])
    assert load_runs([a, b], "Neon", ["ua", "cra"]) == {0: [0.5, 0.8], 1: [0.6, 0.8], 2: [0.7, 0.8]}
    with pytest.raises(ValueError, match="erase seed 0 is already"):
        load_runs([a, a], "Neon", ["ua"])
    with pytest.raises(ValueError, match="no concept 'Star'"):
        load_runs([a], "Star", ["ua"])
    assert parse_row(f"Adam 1e-4={a},{b}") == ("Adam 1e-4", [a, b])
    with pytest.raises(ValueError, match="NAME=results.json"):
        parse_row("no files")


def test_tradeoff_compare_refuses_an_existing_out_before_reading_rows(tmp_path, monkeypatch):
    import sys

    from experiments import tradeoff_compare

    out = tmp_path / "done.json"
    out.write_text("{}")
    monkeypatch.setattr(sys, "argv", ["tradeoff_compare.py", "--concept", "Neon", "--candidate", "S=missing.json",
                                      "--baseline", "A=missing.json", "--out", str(out)])
    with pytest.raises(SystemExit) as e:
        tradeoff_compare.main()
    assert e.value.code == 2 and out.read_text() == "{}"


def test_judge_agreement_counts_missed_and_flagged_answers():
    from experiments.judge_agreement import agreement

    got = agreement([True, False, True, False], [True, True, False, False])
    assert got == {"agree": 0.5, "missed": 1, "flagged": 1, "n": 4}


def test_llm_speed_bench_runs_every_configuration_on_the_tiny_model():
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench" / "llm_speed.py"
    done = subprocess.run([sys.executable, str(bench), "--model", "mini-tofu", "--steps", "2"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"spul_step shared outputs and kept reference / neither"' in done.stdout
