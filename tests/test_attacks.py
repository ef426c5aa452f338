"""UnlearnDiff and AdvUnlearn on the tiny in-code pipeline: objective improves, bad input, UNet untouched."""

from __future__ import annotations

import pytest
import torch

from attacks.unlearndiff import UnlearnDiff, project_to_simplex
from diffusion.adapter import DiffusionAdapter, DiffusionBatch
from erasure import erase


def test_simplex_projection():
    z = torch.tensor([[0.5, 0.2, 0.9], [-1.0, 3.0, 0.0]])
    p = project_to_simplex(z)
    assert torch.allclose(p.sum(-1), torch.ones(2)) and (p >= 0).all()
    assert torch.allclose(p[1], torch.tensor([0.0, 1.0, 0.0]))
    q = torch.tensor([[0.2, 0.3, 0.5]])
    assert torch.allclose(project_to_simplex(q), q)  # already on the simplex: unchanged
    # hand-computed: (0.5, 0.2, 0.9) -> theta = (0.9 + 0.5 - 1) / 2 = 0.2 off the top two, the rest clipped
    assert torch.allclose(p[0], torch.tensor([0.3, 0.0, 0.7]), atol=1e-6)


def _target_batch(pipe, n=4):
    g = torch.Generator().manual_seed(0)
    return DiffusionBatch(["a star image in neon style ."] * n, torch.rand(n, 3, 8, 8, generator=g))


@pytest.mark.parametrize("variant", ["embedding", "discrete"])
def test_attack_lowers_its_objective_on_the_shipped_model(variant):
    """Against the shipped mini-canvas model, the prefix found makes Neon images easier to denoise."""
    from canvas_data.dataset import to_tensor
    from canvas_data.mini_canvas import render
    from diffusion.pipeline import T2IPipeline
    from erasure.models import resolve_model_path

    pipe = T2IPipeline.load(resolve_model_path("mini-canvas"))
    images = to_tensor([render("Neon", "Star", i) for i in range(4)])
    batch = DiffusionBatch(["A Star image in Sketch style."] * 4, images)  # wrong style: room to improve
    lr = 0.05 if variant == "embedding" else 0.5
    result = UnlearnDiff(k=3, iterations=25, lr=lr, weight_decay=0.0, variant=variant, check_every=0).attack(
        DiffusionAdapter(pipe), batch, torch.Generator().manual_seed(1))
    assert result.info["objective_end"] < result.info["objective_start"], result.info
    assert len(result.trace) == 25 and result.success is None


def test_discrete_attack_returns_a_prompt_and_stops_on_success(tiny_pipe):
    adapter = DiffusionAdapter(tiny_pipe)
    calls = []

    def judge(images, prompts):
        calls.append(images.shape)
        return [True] * images.shape[0]

    result = UnlearnDiff(k=2, iterations=20, check_every=5, sample_steps=2).attack(
        adapter, _target_batch(tiny_pipe), torch.Generator().manual_seed(0), judge=judge)
    assert result.success == [True] and result.info["steps"] == 5 and len(calls) == 1
    assert result.info["adversarial_prompt"].endswith("a star image in neon style .")
    assert len(result.info["prefix_tokens"]) == 2
    specials = set(tiny_pipe.tokenizer.all_special_ids)
    assert not specials & set(result.info["prefix_tokens"])


@pytest.mark.parametrize("variant", ["discrete", "embedding"])
def test_batched_attack_equals_one_prompt_at_a_time(tiny_pipe, variant):
    """attack_each on three prompts: one UNet call per iteration for all still running, a prompt that succeeded
    leaves the batch, and every result (trace, prefix, steps, verdict) is the one the prompt gets alone."""
    adapter = DiffusionAdapter(tiny_pipe)
    g = torch.Generator().manual_seed(0)
    heads = ["a star image in neon style .", "a square image in neon style .", "a star image in sketch style ."]
    batches = [DiffusionBatch([h] * 2, torch.rand(2, 3, 8, 8, generator=g)) for h in heads]
    seeds = [5, 6, 7]

    def judge(images, prompts):  # the second prompt breaks at its second check, the others never
        judge.calls.append(len(prompts))
        for p in prompts:
            judge.seen[p] = judge.seen.get(p, 0) + 1
        return [p == heads[1] and judge.seen[p] >= 2 for p in prompts]

    attack = UnlearnDiff(k=2, iterations=12, check_every=3, sample_steps=2, lr=0.1, variant=variant)
    calls = []
    original = attack.losses  # one UNet call per use: record how many prompts it carries
    attack.losses = lambda pipe, prompts, *a: calls.append(len(prompts)) or original(pipe, prompts, *a)
    judge.calls, judge.seen = [], {}
    together = attack.attack_each(adapter, batches, [torch.Generator().manual_seed(100 + i) for i in range(3)],
                                  seeds, judge=judge)
    training_calls, batched_checks = calls[4:-4], judge.calls  # 4 fixed draws before and after
    assert training_calls == [3] * 6 + [2] * 6  # all three prompts, then the two left after the success at step 6
    assert batched_checks == [3, 3, 2, 2]
    assert [r.success for r in together] == [[False], [True], [False]]
    params = [p for m in adapter.modules().values() for p in m.parameters()]  # differentiated through, not into
    assert all(p.requires_grad and p.grad is None for p in params)
    assert [r.info["steps"] for r in together] == [12, 6, 12]
    assert together[1].info["output"].ndim == 3 and "output" not in together[0].info  # the image judged a success
    for i, res in enumerate(together):
        judge.seen = {}
        alone = UnlearnDiff(k=2, iterations=12, check_every=3, sample_steps=2, lr=0.1, variant=variant,
                            seed=seeds[i]).attack(adapter, batches[i], torch.Generator().manual_seed(100 + i),
                                                  judge=judge)
        assert alone.success == res.success and alone.info["steps"] == res.info["steps"]
        assert alone.trace == pytest.approx(res.trace, rel=1e-4, abs=1e-6)
        assert alone.info.get("prefix_tokens") == res.info.get("prefix_tokens")
        assert torch.allclose(alone.batch.prefix, res.batch.prefix, atol=1e-5)
        assert alone.info["objective_end"] == pytest.approx(res.info["objective_end"], rel=1e-4)


def test_batch_prompts_splits_the_audit_into_groups(tiny_pipe):
    adapter = DiffusionAdapter(tiny_pipe)
    g = torch.Generator().manual_seed(0)
    batches = [DiffusionBatch(["a star image in neon style ."], torch.rand(1, 3, 8, 8, generator=g))
               for _ in range(3)]
    res = UnlearnDiff(k=1, iterations=2, check_every=0, batch_prompts=2).attack_each(
        adapter, batches, [torch.Generator().manual_seed(i) for i in range(3)], [0, 1, 2])
    assert [r.info["group"] for r in res] == [2, 2, 1] and all(r.success is None for r in res)
    assert UnlearnDiff(batch_prompts=0).attack_each(adapter, [], [], []) == []  # nothing left to attack
    with pytest.raises(ValueError, match="batch_prompts"):
        UnlearnDiff(batch_prompts=-1)
    with pytest.raises(ValueError, match="one generator and one seed per batch"):
        UnlearnDiff().attack_each(adapter, batches, [torch.Generator()], [0, 1, 2])


def test_prefix_longer_than_free_positions_is_a_clear_error(tiny_pipe):
    with pytest.raises(ValueError, match="free positions"):
        UnlearnDiff(k=10).attack(DiffusionAdapter(tiny_pipe), _target_batch(tiny_pipe), torch.Generator())


def test_advunlearn_trains_text_encoder_blocks_only(tiny_pipe):
    unet = {n: p.clone() for n, p in tiny_pipe.unet.named_parameters()}
    te = {n: p.clone() for n, p in tiny_pipe.text_encoder.named_parameters()}
    result = erase(tiny_pipe, concept="Neon", method="advunlearn", steps=3, lr=1e-2, ddim_steps=3, attack_steps=2,
                   train={"show_progress": False, "adversary_warmup": 1})
    assert all(torch.equal(p, unet[n]) for n, p in tiny_pipe.unet.named_parameters())  # UNet byte-identical
    changed = {n for n, p in tiny_pipe.text_encoder.named_parameters() if not torch.equal(p, te[n])}
    assert changed and not any("embeddings" in n for n in changed)
    assert {"esd", "retain_kl"} <= set(result.loop.history[-1])


def test_advunlearn_layers_option_trains_only_the_named_blocks(tiny_pipe):
    te = {n: p.clone() for n, p in tiny_pipe.text_encoder.named_parameters()}
    erase(tiny_pipe, concept="Neon", method="advunlearn", steps=2, lr=1e-2, ddim_steps=3, attack_steps=1, layers="0",
          train={"show_progress": False, "adversary_warmup": 1})
    changed = {n for n, p in tiny_pipe.text_encoder.named_parameters() if not torch.equal(p, te[n])}
    assert changed and all(".layers.0." in n for n in changed)
    n_layers = tiny_pipe.text_encoder.config.num_hidden_layers
    with pytest.raises(ValueError, match=f"blocks 0..{n_layers - 1}"):
        erase(tiny_pipe, concept="Neon", method="advunlearn", steps=1, layers=str(n_layers))
    with pytest.raises(ValueError, match="comma-separated block indices"):
        erase(tiny_pipe, concept="Neon", method="advunlearn", steps=1, layers="first")


def test_advunlearn_attack_hands_its_z_t_to_the_esd_term(tiny_pipe, monkeypatch):
    """One z_t per step, as in AdvUnlearn: the ESD term reuses the latents the inner attack sampled."""
    from attacks.advunlearn_prefix import PrefixAttack
    from diffusion.esd import ESDLoss
    from erasure.objectives import StepScores
    from erasure.reference import SnapshotReference

    adapter = DiffusionAdapter(tiny_pipe)
    ref = SnapshotReference(dict(tiny_pipe.text_encoder.named_parameters()))
    calls = []
    real = adapter.sample_xt
    monkeypatch.setattr(adapter, "sample_xt", lambda *a, **k: calls.append(1) or real(*a, **k))
    adv = PrefixAttack(k=1, steps=1, ddim_steps=3).attack(adapter, DiffusionBatch(["Neon"]), torch.Generator(),
                                                          reference=ref)
    assert adv.batch.xt is not None and len(calls) == 1
    loss = ESDLoss(ddim_steps=3)(StepScores(adapter, ref, {"forget": adv.batch}, seed=0))
    assert torch.isfinite(loss) and len(calls) == 1  # no second sampling


def _unlearned_tiny_lm():
    from tests.conftest import QA, make_trained_tiny_lm

    model, tok = make_trained_tiny_lm()
    erase(model, tokenizer=tok, forget=QA[:2], retain=QA[2:], method="graddiff", steps=8, lr=5e-3, batch_size=2,
          train={"show_progress": False})
    return model, tok, QA[:2]


def test_soft_prompt_attack_lowers_forget_nll_and_leaves_weights():
    from attacks.soft_prompt import SoftPromptAttack
    from evals.judges import answer_matcher
    from evals.robustness import audit_attack
    from llm.adapter import CausalLMAdapter

    model, tok, forget = _unlearned_tiny_lm()
    before = {n: p.clone() for n, p in model.named_parameters()}
    record = audit_attack(CausalLMAdapter(model, tok), forget, SoftPromptAttack(k=3, steps=30, lr=0.05),
                          answer_matcher(0.5))
    assert record["trace"][-1] < record["trace"][0]
    assert record["post_asr"] >= record["pre_asr"] and record["n"] == 2
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_relearning_attack_recovers_and_leaves_weights():
    from attacks.relearn import RelearnAttack
    from evals.judges import answer_matcher
    from evals.robustness import audit_attack
    from llm.adapter import CausalLMAdapter
    from tests.conftest import QA

    model, tok, _ = _unlearned_tiny_lm()
    before = {n: p.clone() for n, p in model.named_parameters()}
    record = audit_attack(CausalLMAdapter(model, tok), QA, RelearnAttack(steps=15, lr=5e-3), answer_matcher(0.5))
    assert record["trace"][-1] < record["trace"][0]  # relearning lowered the loss on the relearn rows
    assert record["n"] == 2
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
