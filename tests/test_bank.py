"""ESD's trajectory bank (diffusion/bank.py): its entries are exactly what frozen-model sampling gives, it is
cached by what it depends on, draws are shareable between processes, and ESD / AdvUnlearn train from it."""

from __future__ import annotations

import pytest
import torch

from diffusion import bank as bank_mod
from diffusion.adapter import DiffusionAdapter
from diffusion.bank import TrajectoryBank, build_bank, get_bank
from diffusion.esd import ESDLoss
from erasure import erase
from erasure.objectives import StepScores
from erasure.reference import SnapshotReference

PROMPTS = ["A Circle image in Neon style.", "A Star image in Neon style."]


def test_bank_entries_are_frozen_sampling_stopped_at_each_step(tiny_pipe):
    bank = build_bank(tiny_pipe, PROMPTS, trajectories=2, ddim_steps=4, guidance=3.0, seed=5, batch_size=3)
    assert len(bank) == 2 * 2 * 4 and bank.prompt_index.tolist() == [0] * 8 + [1] * 8
    noise = torch.randn((4, *tiny_pipe.latent_shape), generator=torch.Generator().manual_seed(5))
    # prompt 1, trajectory 1 (run 3), stopped after 2 steps: entry 1 * 8 + 1 * 4 + 2
    cond = tiny_pipe.encode_prompts(PROMPTS[1:])
    uncond = tiny_pipe.encode_prompts([""])
    with torch.no_grad():
        x = tiny_pipe.denoise(noise[3:4], cond, uncond, 4, 3.0, stop_at=2)
        t = tiny_pipe.ddim(4).timesteps[2]
        eps_u = tiny_pipe.predict_noise(x, t, uncond)
        eps_c = tiny_pipe.predict_noise(x, t, cond)
    i = 8 + 4 + 2
    torch.testing.assert_close(bank.xt[i:i + 1], x, rtol=1e-5, atol=1e-6)
    assert int(bank.t[i]) == int(t)
    torch.testing.assert_close(bank.eps_uncond[i:i + 1], eps_u, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bank.eps_cond[i:i + 1], eps_c, rtol=1e-5, atol=1e-6)


def test_draws_follow_their_prompts_and_shard_like_one_process(tiny_pipe):
    bank = build_bank(tiny_pipe, PROMPTS, trajectories=1, ddim_steps=3)
    prompts = [PROMPTS[1], PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    whole = bank.draw(prompts, torch.Generator().manual_seed(3))
    for x, p in zip(whole[0], prompts):  # each drawn x_t is one of its own prompt's entries
        own = bank.xt[bank.prompt_index == PROMPTS.index(p)]
        assert any(torch.equal(x, e) for e in own)
    part = bank.draw(prompts[2:], torch.Generator().manual_seed(3), shard=(2, 4))
    for a, b in zip(whole, part):
        assert torch.equal(a[2:], b)
    assert bank.covers(PROMPTS, 3, 3.0) and not bank.covers(PROMPTS, 4, 3.0) and not bank.covers(["x"], 3, 3.0)


def test_bank_is_cached_on_disk_keyed_by_the_frozen_weights(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("ERASURE_BANK_DIR", str(tmp_path))
    monkeypatch.setattr(bank_mod, "_MEMORY", type(bank_mod._MEMORY)())
    ref = SnapshotReference({})
    first = get_bank(tiny_pipe, ref, PROMPTS, trajectories=1, ddim_steps=3)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    bank_mod._MEMORY.clear()
    monkeypatch.setattr(bank_mod, "build_bank", lambda *a, **k: pytest.fail("rebuilt a cached bank"))
    again = get_bank(tiny_pipe, ref, PROMPTS, trajectories=1, ddim_steps=3)
    assert torch.equal(again.xt, first.xt) and torch.equal(again.eps_cond, first.eps_cond)
    assert again.prompts == first.prompts
    with torch.no_grad():  # other weights: another key, so a new bank
        tiny_pipe.unet.conv_out.bias.add_(0.1)
    with pytest.raises(pytest.fail.Exception, match="rebuilt"):
        get_bank(tiny_pipe, ref, PROMPTS, trajectories=1, ddim_steps=3)


def test_bank_loss_equals_the_reference_target_at_the_same_xt(tiny_pipe):
    """One bank iteration's target is exactly the frozen reference's ESD target at the drawn x_t, even after the
    trained weights moved (the bank holds theta*, not theta)."""
    adapter = DiffusionAdapter(tiny_pipe)
    attn2 = {n: p for n, p in tiny_pipe.unet.named_parameters() if ".attn2." in n}
    ref = SnapshotReference(attn2, adapter.modules())
    loss = ESDLoss(ddim_steps=3, sampling="frozen", bank_cache=False)
    loss.prepare(adapter, ref, {"forget": PROMPTS}, {"forget"})
    with torch.no_grad():
        for p in attn2.values():
            p.add_(0.3 * torch.randn_like(p))
    scores = StepScores(adapter, ref, {"forget": adapter.collate(PROMPTS)}, seed=1)
    xt, t, frozen = adapter.esd_latents(PROMPTS, scores.generator("forget"), 3, 3.0)
    assert frozen is not None
    exact = loss.target(scores, xt, t, PROMPTS)
    torch.testing.assert_close(loss.combine(*frozen), exact, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        mixed = tiny_pipe.predict_noise(xt, t, tiny_pipe.encode_prompts(PROMPTS))
    assert not torch.allclose(frozen[1], mixed, atol=1e-4)  # the trained weights would give another target
    value = loss(scores)
    expected = torch.nn.functional.mse_loss(tiny_pipe.predict_noise(xt, t, tiny_pipe.encode_prompts(PROMPTS)), exact)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("sampling", ["frozen", "rolling"])
@pytest.mark.parametrize("method", ["esd-x", "advunlearn-fast"])
def test_bank_and_pool_train_without_sampling_per_step(method, sampling, tiny_pipe, monkeypatch):
    adapter_calls = []
    real = DiffusionAdapter.sample_xt
    monkeypatch.setattr(DiffusionAdapter, "sample_xt", lambda *a, **k: adapter_calls.append(1) or real(*a, **k))
    before = {n: p.clone() for n, p in tiny_pipe.unet.named_parameters()}
    te_before = {n: p.clone() for n, p in tiny_pipe.text_encoder.named_parameters()}
    result = erase(tiny_pipe, concept="Neon", method=method, steps=3, lr=1e-2, ddim_steps=3, sampling=sampling,
                   train={"show_progress": False, "adversary_warmup": 0}, **({"attack_steps": 2} if "adv" in method else {}))
    assert not adapter_calls, f"{sampling} sampling still sampled whole partial trajectories during training"
    unet_changed = any(not torch.equal(p, before[n]) for n, p in tiny_pipe.unet.named_parameters())
    te_changed = any(not torch.equal(p, te_before[n]) for n, p in tiny_pipe.text_encoder.named_parameters())
    assert (unet_changed, te_changed) == ((True, False) if method == "esd-x" else (False, True))
    assert result.loop.history[0]["esd"] > 0
    # the bank holds the frozen predictions: no snapshot of the trained tensors (adversarial training keeps one)
    assert result.loop.reference == (None if sampling == "frozen" and method == "esd-x" else "snapshot")


def test_a_bank_without_a_reference_is_the_one_the_snapshot_builds(tiny_pipe):
    """Before the first step the live weights are the original's: the bank built from them (no reference) is the
    bank a snapshot reference gives, under the same key."""
    attn2 = {n: p for n, p in tiny_pipe.unet.named_parameters() if ".attn2." in n}
    ref = SnapshotReference(attn2, DiffusionAdapter(tiny_pipe).modules())
    tiny_pipe.unet.train()
    a = get_bank(tiny_pipe, None, PROMPTS, trajectories=1, ddim_steps=3, cache=False)
    assert tiny_pipe.unet.training  # its mode is given back
    bank_mod._MEMORY.clear()
    b = get_bank(tiny_pipe, ref, PROMPTS, trajectories=1, ddim_steps=3, cache=False)
    assert torch.equal(a.xt, b.xt) and torch.equal(a.eps_cond, b.eps_cond) and torch.equal(a.eps_uncond, b.eps_uncond)


def test_trained_sampling_still_samples_each_step(tiny_pipe, monkeypatch):
    calls = []
    real = DiffusionAdapter.sample_xt
    monkeypatch.setattr(DiffusionAdapter, "sample_xt", lambda *a, **k: calls.append(1) or real(*a, **k))
    erase(tiny_pipe, concept="Neon", method="esd-x", steps=2, lr=1e-2, ddim_steps=3, sampling="trained",
          train={"show_progress": False})
    assert len(calls) == 2
    with pytest.raises(ValueError, match="sampling must be one of trained, rolling, frozen"):
        erase(tiny_pipe, concept="Neon", method="esd-x", steps=1, sampling="bank")


def test_bank_roundtrip(tiny_pipe, tmp_path):
    bank = build_bank(tiny_pipe, PROMPTS, trajectories=1, ddim_steps=2)
    bank.save(tmp_path / "b.safetensors")
    back = TrajectoryBank.load(tmp_path / "b.safetensors")
    assert back.prompts == PROMPTS and back.ddim_steps == 2 and back.guidance == 3.0
    assert all(torch.equal(getattr(back, k), getattr(bank, k)) for k in ("xt", "t", "eps_uncond", "eps_cond"))


def test_rolling_pool_states_are_the_models_own_partial_trajectories(tiny_pipe):
    from diffusion.bank import RollingPool

    pool = RollingPool(PROMPTS, per_prompt=2, ddim_steps=4, seed=1)
    pool.start(tiny_pipe)
    assert pool.step.tolist() != [0, 0, 0, 0]  # staggered phases
    cond = tiny_pipe.encode_prompts(PROMPTS[1:])
    uncond = tiny_pipe.encode_prompts([""])
    for _ in range(5):  # through a restart of every trajectory
        for r in range(4):
            noise = pool._noise(tiny_pipe, torch.tensor([r]))
            c = tiny_pipe.encode_prompts([PROMPTS[int(pool.prompt_index[r])]])
            with torch.no_grad():
                x = tiny_pipe.denoise(noise, c, uncond, 4, 3.0, stop_at=int(pool.step[r]))
            torch.testing.assert_close(pool.x[r:r + 1], x, rtol=1e-5, atol=1e-5)
        pool.advance(tiny_pipe)
    assert int(pool.restarts.min()) >= 1
    xt, t = pool.draw([PROMPTS[1]], torch.Generator().manual_seed(0))
    timesteps = tiny_pipe.ddim(4).timesteps
    assert int(t[0]) in [int(timesteps[int(s)]) for s in pool.step[2:]]
    assert cond.shape[0] == 1


def test_rolling_sampling_resumes_exactly(tiny_pipe, tmp_path):
    from tests.conftest import make_tiny_pipeline

    kwargs = dict(concept="Neon", method="esd-x", lr=1e-2, ddim_steps=3, seed=2, sampling="rolling")
    straight = make_tiny_pipeline()
    erase(straight, steps=4, train={"show_progress": False}, **kwargs)
    ckpt = tmp_path / "ckpt"
    erase(tiny_pipe, steps=2, train={"show_progress": False, "checkpoint_every": 2, "checkpoint_dir": str(ckpt)},
          **kwargs)
    assert (ckpt / "step-0000002" / "objective.safetensors").is_file()
    resumed = make_tiny_pipeline()
    erase(resumed, steps=4, train={"show_progress": False, "checkpoint_every": 2, "checkpoint_dir": str(ckpt),
                                   "resume": True}, **kwargs)
    for (n, a), b in zip(straight.unet.named_parameters(), resumed.unet.parameters()):
        assert torch.equal(a, b), n


def test_evaluations_are_computed_once_per_weights_and_settings(tmp_path, monkeypatch):
    import evals.canvas
    from diffusion.modality import DIFFUSION
    from erasure.registry import get_benchmark

    monkeypatch.setenv("ERASURE_EVAL_CACHE", str(tmp_path))
    bench = get_benchmark("unlearncanvas", "diffusion")
    adapter = DIFFUSION.load("mini-canvas")
    kwargs = dict(model="mini-canvas", concept="Neon", per_prompt=1, ddim_steps=2, return_images=True)
    first = bench.evaluate(adapter, **kwargs)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1 and "cached" not in first
    real = evals.canvas.evaluate_concept
    monkeypatch.setattr(evals.canvas, "evaluate_concept", lambda *a, **k: pytest.fail("evaluated again"))
    again = bench.evaluate(adapter, **kwargs)
    assert again["cached"] is True
    assert {k: again[k] for k in ("ua", "ira", "cra", "per_sample")} == {k: first[k] for k in ("ua", "ira", "cra", "per_sample")}
    shown, stored = first["_images"]["target"], again["_images"]["target"]
    assert shown[1] == stored[1] and (shown[0] - stored[0]).abs().max() <= 0.5 / 255 + 1e-6
    monkeypatch.setattr(evals.canvas, "evaluate_concept", real)
    with torch.no_grad():  # other weights or other settings: evaluated anew
        adapter.pipe.unet.conv_out.bias.add_(0.01)
    assert "cached" not in bench.evaluate(adapter, **kwargs)
    assert "cached" not in bench.evaluate(adapter, **{**kwargs, "seed": 1})
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
