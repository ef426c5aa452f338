"""UCE (closed-form cross-attention edit): the equation on hand-made matrices, the token alignment, and the edit of
a tiny pipeline through ``erase()``."""

from __future__ import annotations

import pytest
import torch

from diffusion.uce import UCEConfig, aligned_tails, edited_weight, prompt_pairs
from erasure import erase


def test_edited_weight_is_the_papers_closed_form():
    g = torch.Generator().manual_seed(0)
    w, c, c_star, keep = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((5, 4), (3, 4), (3, 4), (2, 4)))
    cfg = UCEConfig(erase_scale=2.0, preserve_scale=0.5, lamb=0.3)
    lhs = 0.3 * w + 2.0 * sum(torch.outer(w @ c_star[i], c[i]) for i in range(3)) + \
        0.5 * sum(torch.outer(w @ keep[i], keep[i]) for i in range(2))
    rhs = 0.3 * torch.eye(4, dtype=torch.float64) + 2.0 * c.T @ c + 0.5 * keep.T @ keep
    assert torch.allclose(edited_weight(w, c, c_star, keep, cfg), lhs @ torch.inverse(rhs), atol=1e-10)


def test_with_room_the_edit_maps_erased_onto_guides_and_keeps_preserved():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 5, generator=g, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))[0]
    c, keep = basis[:2], basis[2:4]  # independent erased and preserved directions
    c_star = torch.randn(2, 5, generator=g, dtype=torch.float64)
    new = edited_weight(w, c, c_star, keep, UCEConfig(lamb=1e-9))
    assert torch.allclose(c @ new.T, c_star @ w.T, atol=1e-6)
    assert torch.allclose(keep @ new.T, keep @ w.T, atol=1e-6)


def test_prompt_pairs_and_tails_align_from_the_concepts_last_token():
    assert prompt_pairs(["A Circle image in Neon style."], "neon", "") == [("A Circle image in Neon style.",
                                                                           "A Circle image in  style.")]
    assert prompt_pairs(["A cathedral with a cat."], "cat", "dog") == [("A cathedral with a cat.",
                                                                      "A cathedral with a dog.")]
    with pytest.raises(ValueError, match="does not contain 'Neon'"):
        prompt_pairs(["A Circle image in Sketch style."], "Neon", "")
    pad = 0
    ids = torch.tensor([[1, 5, 6, 7, 8, 2, pad, pad]])  # BOS a b CONCEPT c EOS
    guide = torch.tensor([[1, 5, 6, 8, 2, pad, pad, pad]])  # BOS a b c EOS (empty guide)
    (k, kg), = aligned_tails(ids, guide, [6], [5])
    assert k.tolist() == [3, 4, 5, 6, 7] and kg.tolist() == [2, 3, 4, 5, 6]
    two = torch.tensor([[1, 5, 6, 9, 9, 8, 2, pad]])  # a two-token concept mapped onto a one-token guide
    (k, kg), = aligned_tails(two, torch.tensor([[1, 5, 6, 3, 8, 2, pad, pad]]), [7], [6])
    assert k.tolist() == [4, 5, 6, 7] and kg.tolist() == [3, 4, 5, 6]


def _gaps(pipe, layer, weight, pairs, keep):
    """(relative distance of the concept's keys from the guide's, relative change of the preserved keys) under
    ``weight``, both against the keys before the edit."""
    from diffusion.uce import _embeddings

    with torch.no_grad():
        c, c_star = _embeddings(pipe, pairs)
        target, kept = c_star @ layer.weight.T, keep @ layer.weight.T
        return ((c @ weight.T - target).norm() / target.norm()).item(), ((keep @ weight.T - kept).norm() /
                                                                        kept.norm()).item()


@pytest.mark.parametrize("options", [{}, {"preserve_scale": 0.0, "lamb": 1e-3}])
def test_uce_moves_the_concept_onto_its_guide_in_cross_attention_keys_values_only(tiny_pipe, options):
    from diffusion.adapter import DiffusionAdapter

    adapter = DiffusionAdapter(tiny_pipe)
    before = {n: p.detach().clone() for n, p in tiny_pipe.unet.named_parameters()}
    text_before = {n: p.detach().clone() for n, p in tiny_pipe.text_encoder.named_parameters()}
    pairs = prompt_pairs(tiny_pipe.concepts.prompts_with("Neon"), "Neon", "")
    with torch.no_grad():
        keep = tiny_pipe.encode_ids(tiny_pipe.tokenize(tiny_pipe.concepts.prompts_without("Neon"))).flatten(0, 1)
    layer = tiny_pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k
    gap_before, _ = _gaps(tiny_pipe, layer, layer.weight, pairs, keep)

    result = erase(adapter, "Neon", method="uce", train={"show_progress": False}, **options)
    changed = {n for n, p in tiny_pipe.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n in before if ".attn2.to_k." in n or ".attn2.to_v." in n}
    assert all(torch.equal(p, text_before[n]) for n, p in tiny_pipe.text_encoder.named_parameters())
    layer.weight.data, edited = before[_name(tiny_pipe, layer)].clone(), layer.weight.data.clone()
    gap_after, kept_change = _gaps(tiny_pipe, layer, edited, pairs, keep)
    if options:  # nothing to preserve: the concept's keys land near the guide's (21 aligned positions in a
        assert gap_after < 0.4 * gap_before  # 16-wide space: least squares, not an exact fit)
    else:  # preserving every position of the other prompts: a compromise, but towards the guide, and the
        assert gap_after < 0.8 * gap_before  # preserved keys move less than the erased ones do
        assert kept_change < gap_before - gap_after
    assert result.loop.steps == 0 and result.info["closed_form"]["edited_layers"] == len(changed)
    assert result.info["closed_form"]["preserved_positions"] == len(keep)


def _name(pipe, module) -> str:
    return next(f"{n}.weight" for n, m in pipe.unet.named_modules() if m is module)


def test_uce_refuses_what_it_cannot_do(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    adapter = DiffusionAdapter(tiny_pipe)
    with pytest.raises(ValueError, match="give the concept"):
        erase(adapter, method="uce", forget=["A Circle image in Neon style."])
    with pytest.raises(ValueError, match="no LoRA"):
        erase(adapter, "Neon", method="uce", lora={"rank": 2})
    with pytest.raises(ValueError, match="no adversary"):
        erase(adapter, "Neon", method="uce", adversary="unlearndiff")
    with pytest.raises(ValueError, match="no linear layer"):
        erase(adapter, "Neon", method="uce", selector=[r"^nothing"])
    with pytest.raises(ValueError, match="lamb > 0 or preserve_scale > 0"):
        UCEConfig(lamb=0.0, preserve_scale=0.0)


def test_uce_checks_every_layer_before_editing_any(tiny_pipe):
    from diffusion.adapter import DiffusionAdapter

    before = {n: p.detach().clone() for n, p in tiny_pipe.unet.named_parameters()}
    with pytest.raises(ValueError, match="projections of the text embeddings"):  # to_q takes image features
        erase(DiffusionAdapter(tiny_pipe), "Neon", method="uce", selector=[r"\.attn2\.to_[kq]\."])
    assert all(torch.equal(p, before[n]) for n, p in tiny_pipe.unet.named_parameters())
