"""The shared core: selectors, reference strategies, the loop (checkpoint/resume, non-finite guard), erase()."""

from __future__ import annotations

import json

import pytest
import torch

from erasure import erase
from erasure.adapter import named_parameters
from erasure.config import TrainConfig, from_dict
from erasure.loop import NonFiniteLossError, Unlearner, batch_indices
from erasure.objectives import Objective
from erasure.reference import PeftReference, SnapshotReference
from erasure.selectors import Selector
from tests.conftest import make_tiny_pipeline


def _state(modules):
    return {n: p.detach().clone() for n, p in named_parameters(modules).items()}


def test_presets_pick_the_published_parameter_sets(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    names = list(named_parameters(DiffusionAdapter(tiny_pipe).modules()))
    x = [n for n in names if Selector.preset("esd-x").matches(n)]
    u = [n for n in names if Selector.preset("esd-u").matches(n)]
    te = [n for n in names if Selector.preset("text-encoder").matches(n)]
    assert x and all(".attn2." in n and n.startswith("unet.") for n in x)
    assert u and not any(".attn2." in n for n in u) and all(n.startswith("unet.") for n in u)
    assert set(x) | set(u) == {n for n in names if n.startswith("unet.")}
    assert te and all(n.startswith("text_encoder.") and "embeddings" not in n for n in te)
    assert any("final_layer_norm" in n for n in te)
    strict = [n for n in names if Selector.preset("esd-x-strict").matches(n)]
    assert strict and all(".to_k." in n or ".to_v." in n for n in strict)


def test_unknown_preset_and_empty_selection_are_clear_errors(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    with pytest.raises(ValueError, match="unknown selector preset"):
        Selector.preset("esd-z")
    with pytest.raises(ValueError, match="matched no parameter"):
        Selector(include=[r"^nothing\."]).apply(DiffusionAdapter(tiny_pipe).modules())


def test_esd_x_changes_only_cross_attention(tiny_pipe):
    modules = {"unet": tiny_pipe.unet, "text_encoder": tiny_pipe.text_encoder}
    before = _state(modules)
    erase(tiny_pipe, concept="Neon", method="esd-x", steps=3, lr=1e-2, ddim_steps=4, train={"show_progress": False})
    after = _state(modules)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed, "training changed nothing"
    assert all(".attn2." in n for n in changed)
    frozen = [n for n in before if ".attn2." not in n]
    assert all(torch.equal(before[n], after[n]) for n in frozen)  # byte-identical


def test_snapshot_reference_is_exact_and_restores_weights(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    adapter = DiffusionAdapter(tiny_pipe)
    trainable = Selector.preset("esd-x").apply(adapter.modules())
    ref = SnapshotReference(trainable)
    x = torch.randn(2, 3, 8, 8)
    cond = tiny_pipe.encode_prompts(["a image", "a image"])
    with torch.no_grad():
        orig = tiny_pipe.predict_noise(x, 10, cond)
        for p in trainable.values():
            p.add_(0.5)
        moved = tiny_pipe.predict_noise(x, 10, cond)
        with ref.active():
            as_ref = tiny_pipe.predict_noise(x, 10, cond)
        back = tiny_pipe.predict_noise(x, 10, cond)
    assert not torch.allclose(orig, moved)
    assert torch.equal(orig, as_ref)
    assert torch.equal(moved, back)
    with pytest.raises(RuntimeError, match="no_grad"):
        with ref.active():
            pass


def test_lora_selector_trains_adapters_and_reference_disables_them(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    adapter = DiffusionAdapter(tiny_pipe)
    base = _state(adapter.modules())
    result = erase(tiny_pipe, concept="Neon", method="esd-x", steps=2, lr=1e-2, ddim_steps=3,
                   lora={"rank": 2, "alpha": 4}, train={"show_progress": False})
    assert result.loop.reference == "peft"
    # merged back into plain layers: same parameter names as before, only attn2 weights differ
    after = _state(adapter.modules())
    assert set(after) == set(base)
    changed = {n for n in base if not torch.equal(base[n], after[n])}
    assert changed and all(".attn2." in n for n in changed)


def test_peft_reference_requires_adapters(tiny_pipe):
    with pytest.raises(ValueError, match="peft"):
        PeftReference({"unet": tiny_pipe.unet})


def test_batch_indices_cover_each_epoch_once():
    rows = [i for s in range(5) for i in batch_indices(10, s, 2, seed=3, split=0)]
    assert sorted(rows) == list(range(10))
    assert batch_indices(10, 7, 3, 3, 0) == batch_indices(10, 7, 3, 3, 0)


class _BatchSizes:
    """A forget NLL term that records how many rows of each split every step drew."""

    name, split, needs_reference = "sizes", "forget", False

    def __init__(self):
        self.seen: list[dict[str, int]] = []

    def __call__(self, s):
        self.seen.append({split: len(rows) for split, rows in s.rows.items()})
        nll, _ = s.nll("forget")
        return nll.mean()


def test_retain_batch_size_draws_its_own_number_of_retain_rows(tiny_lm):
    from llm.adapter import CausalLMAdapter
    from tests.conftest import QA

    model, tok = tiny_lm
    runs = {}
    for retain_batch_size in (None, 3):
        term = _BatchSizes()
        cfg = TrainConfig(steps=2, lr=1e-3, batch_size=1, retain_batch_size=retain_batch_size, show_progress=False)
        Unlearner(CausalLMAdapter(model, tok), Objective([(1.0, term)]), Selector(include=[r"^model\."]), cfg,
                  forget=QA[:1], retain=QA[1:]).run()
        runs[retain_batch_size] = term.seen
    assert runs[None] == [{"forget": 1, "retain": 1}] * 2
    assert runs[3] == [{"forget": 1, "retain": 3}] * 2
    with pytest.raises(ValueError, match="retain_batch_size must be >= 1"):
        TrainConfig(retain_batch_size=0)


def test_erase_calls_on_step_after_every_step_with_its_loss(tiny_lm):
    model, tok = tiny_lm
    seen = []
    result = erase(model, method="ga", tokenizer=tok, forget="forget10", steps=3, lr=1e-3,
                   train={"show_progress": False}, on_step=lambda step, logs: seen.append((step, logs["loss"])))
    assert [s for s, _ in seen] == [1, 2, 3]
    assert [loss for _, loss in seen] == [h["loss"] for h in result.loop.history]


def _esd_run(tmp_path, steps, resume=False, every=0):
    pipe = make_tiny_pipeline(seed=0)
    train = {"show_progress": False, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": every,
             "resume": resume}
    erase(pipe, concept="Neon", method="esd-x", steps=steps, lr=1e-2, ddim_steps=4, train=train)
    return _state({"unet": pipe.unet})


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    full = _esd_run(tmp_path / "a", steps=6)
    _esd_run(tmp_path / "b", steps=3, every=3)  # "interrupted" after 3 steps, checkpoint at 3
    resumed = _esd_run(tmp_path / "b", steps=6, resume=True, every=3)
    assert all(torch.equal(full[n], resumed[n]) for n in full)
    state = json.loads((sorted((tmp_path / "b" / "ckpt").glob("step-*"))[-1] / "state.json").read_text())
    assert state["step"] == 6 and len(state["history"]) == 6


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        _esd_run(tmp_path, steps=2, resume=True)


class _NaNAfter:
    """A loss term that turns NaN at a given step (counts its calls)."""

    name, split, needs_reference = "nan", "forget", False

    def __init__(self, at: int):
        self.at, self.calls = at, 0

    def __call__(self, s):
        self.calls += 1
        nll, _ = s.nll("forget")
        return nll.mean() * (float("nan") if self.calls > self.at else 1.0)


def test_non_finite_loss_stops_with_error_and_keeps_last_good_state(tmp_path):
    from diffusion.adapter import DiffusionAdapter

    pipe = make_tiny_pipeline()
    adapter = DiffusionAdapter(pipe)
    rows = [{"prompt": "a circle image in neon style .", "image": torch.rand(3, 8, 8)}]
    cfg = TrainConfig(steps=5, lr=1e-3, checkpoint_dir=str(tmp_path), show_progress=False)
    loop = Unlearner(adapter, Objective([(1.0, _NaNAfter(at=2))]), Selector.preset("esd-x"), cfg, forget=rows)
    with pytest.raises(NonFiniteLossError, match="at step 3.*last good state \\(step 1\\)"):
        loop.run()
    # the weights after two steps gave the NaN loss, so the last good state is the one after the first step
    saved = sorted(tmp_path.glob("step-*"))
    assert [p.name for p in saved] == ["step-0000001"]
    from safetensors.torch import load_file

    weights = load_file(saved[-1] / "trainable.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown training option.*stpes"):
        from_dict(TrainConfig, {"stpes": 3}, what="training")
    with pytest.raises(ValueError, match="steps must be"):
        TrainConfig(steps=0)


def test_erase_rejects_bad_input(tiny_pipe):
    with pytest.raises(ValueError, match="unknown method 'esd-z'"):
        erase(tiny_pipe, concept="Neon", method="esd-z")
    with pytest.raises(ValueError, match="concept is empty"):
        erase(tiny_pipe, concept="  ", method="esd-x")
    with pytest.raises(ValueError, match="unknown 'esd-x' method option"):
        erase(tiny_pipe, concept="Neon", method="esd-x", etaa=2.0)
    with pytest.raises(ValueError, match="forget set is empty"):
        erase(tiny_pipe, forget=[], method="esd-x", steps=1)
    with pytest.raises(ValueError, match="unknown concept 'Nope'"):  # as the CLI: the model ships a vocabulary
        erase(tiny_pipe, concept="Nope", method="esd-x", steps=1)
    with pytest.raises(ValueError, match="is .* tokens long"):
        erase(tiny_pipe, concept="neon " * 20, method="esd-x", steps=1, free_text=True,
              train={"show_progress": False})


def test_result_save_is_loadable_by_toolkit_and_diffusers(tiny_pipe, tmp_path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from diffusion.pipeline import T2IPipeline

    result = erase(tiny_pipe, concept="Neon", method="esd-x", steps=1, lr=1e-3, ddim_steps=2,
                   train={"show_progress": False})
    result.save(tmp_path)
    again = T2IPipeline.load(tmp_path)
    assert again.concepts.styles == tiny_pipe.concepts.styles
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    te = CLIPTextModel.from_pretrained(tmp_path / "text_encoder")
    for n, p in tiny_pipe.unet.named_parameters():
        assert torch.equal(p, unet.get_parameter(n))
    assert te.config.hidden_size == 16
    summary = json.loads((tmp_path / "erasure.json").read_text())
    assert summary["method"] == "esd-x" and len(summary["history"]) == 1


@pytest.mark.parametrize("modality", ["diffusion", "llm"])
def test_gradient_checkpointing_gives_the_same_run_and_is_switched_off_after(modality):
    """Recomputing activations changes memory, not arithmetic: same losses and weights; the flag is restored."""
    from tests.conftest import QA, make_tiny_lm

    def on(module):  # diffusers and transformers blocks both carry a ``gradient_checkpointing`` flag
        return any(getattr(m, "gradient_checkpointing", False) is True for m in module.modules())

    def run(checkpointing: bool):
        if modality == "diffusion":
            model = make_tiny_pipeline()
            module, kw = model.unet, dict(concept="Neon", method="esd-x", steps=3, lr=1e-2, ddim_steps=3)
        else:
            model, tok = make_tiny_lm()
            module, kw = model, dict(tokenizer=tok, forget=QA[:2], retain=QA[2:], method="npo", steps=3, lr=1e-2)
        seen = []  # the flag at every forward pass that builds a graph (training passes)
        module.register_forward_pre_hook(lambda m, _: seen.append(on(m)) if torch.is_grad_enabled() else None)
        result = erase(model, train={"show_progress": False, "gradient_checkpointing": checkpointing}, **kw)
        return result, seen, module

    plain, seen_plain, _ = run(False)
    ckpt, seen_ckpt, module = run(True)
    assert seen_plain and not any(seen_plain)
    assert seen_ckpt and all(seen_ckpt) and not on(module)
    # nothing of it outlives the run: no embedding hook left (transformers adds one), nothing else switched
    assert not any(getattr(m, "_require_grads_hooks", None) for m in ckpt.adapter.modules().values())
    assert not any(on(m) for m in ckpt.adapter.modules().values())
    assert [h["loss"] for h in ckpt.loop.history] == pytest.approx([h["loss"] for h in plain.loop.history], rel=1e-5)
    a, b = _state(plain.adapter.modules()), _state(ckpt.adapter.modules())
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_gradient_checkpointing_on_a_model_without_it_is_a_clear_error(tiny_pipe):
    from erasure.loop import _supports_checkpointing

    assert not _supports_checkpointing(torch.nn.Linear(2, 2)) and _supports_checkpointing(tiny_pipe.unet)
    tiny_pipe.unet._supports_gradient_checkpointing = False
    tiny_pipe.text_encoder.supports_gradient_checkpointing = False
    with pytest.raises(ValueError, match="gradient_checkpointing: none of the model's modules"):
        erase(tiny_pipe, concept="Neon", method="esd-x", steps=1, train={"gradient_checkpointing": True})


def test_a_second_erase_may_use_another_mixed_precision():
    """accelerate keeps one state per process; erase() resets it when the precision changes (it used to raise)."""
    from tests.conftest import QA, make_tiny_lm

    model, tok = make_tiny_lm()
    seen = []
    model.register_forward_pre_hook(
        lambda m, _: seen.append(torch.is_autocast_enabled("cpu")) if torch.is_grad_enabled() else None)
    for precision in ("no", "bf16", "no"):
        seen.clear()
        erase(model, tokenizer=tok, forget=QA[:2], retain=QA[2:], method="ga", steps=1,
              train={"show_progress": False, "mixed_precision": precision})
        assert seen and all(on == (precision == "bf16") for on in seen), (precision, seen)


def test_gradient_checkpointing_skips_modules_that_train_nothing(tiny_pipe):
    """ESD-x trains the UNet only: the frozen text encoder is not checkpointed (no graph built through it)."""
    from erasure.loop import _checkpointing_off, _checkpointing_on

    tiny_pipe.text_encoder.requires_grad_(False)
    modules = {"unet": tiny_pipe.unet, "text_encoder": tiny_pipe.text_encoder}
    switched: list[str] = []
    _checkpointing_on(modules, switched)
    assert switched == ["unet"] and tiny_pipe.unet.is_gradient_checkpointing
    _checkpointing_off({n: modules[n] for n in switched})
    assert not tiny_pipe.unet.is_gradient_checkpointing


def test_dropout_runs_repeat_and_leave_the_caller_rng_alone():
    """The loop seeds the global RNG per step (dropout draws from it), restoring the caller's state afterwards."""
    from tests.generic_checks import TINY_CASES

    case = TINY_CASES["llm"]()
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in case.adapter.model.modules())
    runs = []
    for caller_seed in (1, 2):  # whatever the caller's RNG holds, the same seed gives the same weights
        adapter = TINY_CASES["llm"]().adapter  # (building the tiny model seeds the RNG itself)
        torch.manual_seed(caller_seed)
        result = erase(adapter, method="ga", forget=case.forget, steps=2, lr=1e-2, batch_size=2,
                       recommended=False, selector=[".*"])
        runs.append(named_parameters(result.adapter.modules()))
        after = torch.rand(1)
        torch.manual_seed(caller_seed)
        assert torch.equal(after, torch.rand(1))  # the caller's stream continues as if nothing ran
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])


def test_method_names_by_modality():
    from erasure.registry import method_names

    llm, diffusion = method_names("llm"), method_names("diffusion")
    assert "rmu" in llm and "esd-x" not in llm and "esd-x" in diffusion and "rmu" not in diffusion
    assert "npo" in llm and "npo" in diffusion  # a method for any modality serves both
    assert set(llm) | set(diffusion) == set(method_names())
