"""Weight masks (erasure/masks.py): WAGLE / SalUn / random / magnitude scores, exact ratios, masked training on both
modalities, saving and loading."""

from __future__ import annotations

import pytest
import torch

from erasure import erase
from erasure.adapter import named_parameters
from erasure.masks import Mask, check_destination, compute, salun_scores, set_gradients, top_fraction, wagle, wagle_scores
from tests.generic_checks import TINY_CASES


def test_wagle_scores_hand_computed():
    theta, g_f, g_r = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.1]), torch.tensor([0.2, -0.4])
    # |(1 - 0.2 / 0.1) * 0.5| = 0.5 ; |(-2 + 0.4 / 0.1) * 0.1| = 0.2
    assert torch.allclose(wagle_scores(theta, g_f, g_r, mu=0.1), torch.tensor([0.5, 0.2]))
    assert torch.equal(salun_scores(torch.tensor([-3.0, 1.0])), torch.tensor([3.0, 1.0]))
    with pytest.raises(ValueError, match="mu"):
        wagle_scores(theta, g_f, g_r, mu=0.0)


def test_top_fraction_exact_counts_and_ties():
    scores = {"a": torch.tensor([[0.1, 0.5], [0.5, 0.5]]), "b": torch.tensor([0.9, 0.0, 0.5])}
    keep = top_fraction(scores, 3 / 7)  # 0.9 plus the first two of the four tied 0.5s
    assert torch.equal(keep["b"], torch.tensor([True, False, False]))
    assert torch.equal(keep["a"], torch.tensor([[False, True], [True, False]]))
    per = top_fraction(scores, 0.5, scope="tensor")  # round(0.5 * 4) = 2 of a, round(1.5) = 2 of b
    assert int(per["a"].sum()) == 2 and torch.equal(per["b"], torch.tensor([True, False, True]))
    assert not any(t.any() for t in top_fraction(scores, 0.0).values())
    assert all(t.all() for t in top_fraction(scores, 1.0).values())
    with pytest.raises(ValueError, match="ratio"):
        top_fraction(scores, 1.5)
    with pytest.raises(ValueError, match="scope"):
        top_fraction(scores, 0.5, scope="layer")


def test_set_gradients_sum_the_rows_mean_token_losses():
    case = TINY_CASES["llm"]()
    case.adapter.model.eval()  # no dropout
    params = {n: p.requires_grad_(True) for n, p in named_parameters(case.adapter.modules()).items()}
    grads = set_gradients(case.adapter, case.forget + case.retain, params, batch_size=3)  # any batch size
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for rows in ((case.forget + case.retain)[:2], (case.forget + case.retain)[2:]):
        nll, length = case.adapter.per_example_nll(case.adapter.collate(rows), torch.Generator())
        for n, g in zip(params, torch.autograd.grad((nll / length).sum(), list(params.values()), allow_unused=True)):
            if g is not None:
                expected[n] += g
    assert all(torch.allclose(grads[n], expected[n], atol=1e-6) for n in params)


@pytest.mark.parametrize("modality", sorted(TINY_CASES))
@pytest.mark.parametrize("kind", ["wagle", "salun", "random", "magnitude"])
def test_mask_ratio_is_exact(modality, kind):
    case = TINY_CASES[modality]()
    mask = compute(case.adapter, kind, case.forget, case.retain, ratio=0.3, mu=1e-3, batch_size=2)
    total = sum(t.numel() for t in mask.tensors.values())
    assert sum(int(t.sum()) for t in mask.tensors.values()) == round(0.3 * total)
    assert mask.info["kind"] == kind and mask.info["density"] == pytest.approx(0.3, abs=1 / total)
    assert set(mask.tensors) <= set(named_parameters(case.adapter.modules()))
    assert not any(p.requires_grad for p in named_parameters(case.adapter.modules()).values())


def test_wagle_prefers_what_the_forget_loss_needs():
    """The mask keeps weights whose forget gradient is large: on the tiny LM, the WAGLE mask's entries carry more
    forget-gradient mass than a random mask of the same ratio."""
    case = TINY_CASES["llm"]()
    w = wagle(case.adapter, case.forget, case.retain, ratio=0.2, mu=1e-2, batch_size=2)
    r = compute(case.adapter, "random", case.forget, ratio=0.2)
    case.adapter.model.eval()
    params = {n: p.requires_grad_(True) for n, p in named_parameters(case.adapter.modules()).items()}
    g = set_gradients(case.adapter, case.forget, params, batch_size=2)
    mass = {name: sum(float(g[n].abs()[m.tensors[n]].sum()) for n in m.tensors) for name, m in (("w", w), ("r", r))}
    assert mass["w"] > 2 * mass["r"]


@pytest.mark.parametrize("modality", sorted(TINY_CASES))
def test_masked_training_moves_only_the_mask(modality, tmp_path):
    case = TINY_CASES[modality]()
    mask = compute(case.adapter, "random", case.forget, ratio=0.5, seed=1)
    mask.save(tmp_path / "m")
    before = {n: p.detach().clone() for n, p in named_parameters(case.adapter.modules()).items()}
    method = "ga" if modality == "llm" else "esd-x"
    sel = ".*" if modality == "llm" else None
    result = erase(case.adapter, method=method, concept="Neon" if modality == "diffusion" else None,
                   forget=case.forget, retain=case.retain, steps=3, lr=1e-2, batch_size=2, recommended=False,
                   selector=[sel] if sel else None, mask=tmp_path / "m",
                   train={"optimizer": "adamw", "weight_decay": 0.1})  # decay would move every trained entry
    after = named_parameters(case.adapter.modules())
    moved = 0
    for n, p in after.items():
        if n in mask.tensors:
            m = mask.tensors[n]
            assert torch.equal(p.detach()[~m], before[n][~m]), n  # outside the mask: byte-identical
            moved += int((p.detach()[m] != before[n][m]).sum())
        else:
            assert torch.equal(p.detach(), before[n]), n
    assert moved > 0
    assert result.info["mask"]["digest"] == mask.digest()
    assert result.loop.trainable_parameters <= sum(int(t.sum()) for t in mask.tensors.values())


def test_mask_save_load_and_refusals(tmp_path):
    mask = Mask({"m.w": torch.tensor([True, False]), "m.b": torch.tensor([[False]])}, {"kind": "random"})
    for path in (tmp_path / "folder", tmp_path / "one.safetensors"):
        mask.save(path)
        back = Mask.load(path)
        assert back.digest() == mask.digest() and back.info == {"kind": "random"}
        with pytest.raises(ValueError, match="already"):
            mask.save(path)
        mask.save(path, overwrite=True)
    assert (tmp_path / "folder" / "mask.json").is_file()
    (tmp_path / "model").mkdir()
    with pytest.raises(ValueError, match="inside the model folder"):
        check_destination(tmp_path / "model" / "mask", sources=[tmp_path / "model"])
    with pytest.raises(FileNotFoundError, match="no mask"):
        Mask.load(tmp_path / "absent")
    from safetensors.torch import save_file

    save_file({"m.w": torch.zeros(2)}, tmp_path / "float.safetensors")
    with pytest.raises(ValueError, match="not a mask"):
        Mask.load(tmp_path / "float.safetensors")


def test_mask_of_another_model_is_refused():
    case = TINY_CASES["llm"]()
    name = next(iter(named_parameters(case.adapter.modules())))
    with pytest.raises(ValueError, match="no entry"):
        erase(case.adapter, method="ga", forget=case.forget, steps=1, selector=[".*"], recommended=False,
              mask=Mask({name: torch.ones(1, dtype=torch.bool)}))
    with pytest.raises(ValueError, match="unknown mask kind"):
        compute(case.adapter, "hessian", case.forget, ratio=0.5)


def _lm():
    return TINY_CASES["llm"]().adapter  # GPT-2 with dropout: each step seeds it, so a resumed run draws the same


def test_masked_run_resumes_exactly(tmp_path):
    case = TINY_CASES["llm"]()
    mask = compute(case.adapter, "magnitude", case.forget, ratio=0.4)
    common = dict(method="npo", forget=case.forget, retain=case.retain, lr=1e-2, batch_size=2, recommended=False,
                  selector=[".*"], mask=mask)
    ckpt = {"checkpoint_dir": str(tmp_path / "c"), "checkpoint_every": 2}
    full = erase(_lm(), steps=4, **common)
    erase(_lm(), steps=2, train=ckpt, **common)
    resumed = erase(_lm(), steps=4, train={**ckpt, "resume": True}, **common)
    a, b = named_parameters(full.adapter.modules()), named_parameters(resumed.adapter.modules())
    assert all(torch.equal(a[n], b[n]) for n in a)
    other = compute(case.adapter, "random", case.forget, ratio=0.4)
    with pytest.raises(ValueError, match="its mask is"):
        erase(_lm(), steps=4, **{**common, "mask": other}, train={**ckpt, "resume": True})


def test_cli_mask_then_masked_erase(tmp_path, capsys):
    import json

    from erasure.cli import main
    from safetensors.torch import load_file

    out = tmp_path / "mask"
    assert main(["mask", "--model", "mini-tofu", "--forget", "forget01", "--kind", "wagle", "--ratio", "0.1",
                 "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "wagle" and info["forget"] > 0 and info["retain"] > 0
    assert info["density"] == pytest.approx(0.1, abs=1e-6)
    assert main(["mask", "--model", "mini-tofu", "--forget", "forget01", "--kind", "wagle", "--ratio", "0.1",
                 "--out", str(out)]) == 2  # an existing mask is kept
    assert "already holds files" in capsys.readouterr().err
    assert main(["mask", "--model", "mini-tofu", "--forget", "forget01", "--kind", "fisher", "--ratio", "0.1",
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown --kind 'fisher'" in capsys.readouterr().err
    assert main(["erase", "--model", "mini-tofu", "--forget", "forget01", "--method", "graddiff", "--steps", "2",
                 "--mask", str(out), "--optimizer", "sophia", "--out", str(tmp_path / "erased")]) == 0
    summary = json.loads((tmp_path / "erased" / "erasure.json").read_text())
    assert summary["train_config"]["optimizer"] == "sophia" and summary["train_config"]["weight_decay"] is None
    assert summary["mask"]["kind"] == "wagle" and summary["trainable_parameters"] <= round(0.1 * sum(
        t.numel() for t in load_file(out / "mask.safetensors").values()))


def test_salun_mask_for_a_concept_uses_the_model_s_own_images(tmp_path, capsys):
    """A concept's forget rows are prompts; the diffusion adapter draws its own image of each for the loss."""
    import json

    from erasure.cli import main

    assert main(["mask", "--model", "mini-canvas", "--concept", "Neon", "--kind", "salun", "--ratio", "0.5",
                 "--out", str(tmp_path / "neon.safetensors")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "salun" and info["forget"] > 1 and info["density"] == pytest.approx(0.5, abs=1e-4)
    mask = Mask.load(tmp_path / "neon.safetensors")
    assert mask.tensors and all(".attn2." in n for n in mask.tensors)  # the model's default selection (esd-x)
