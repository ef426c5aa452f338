"""Sophia, the clipped second-order optimizer SOUL unlearns with, and its Hessian-diagonal estimators.

Sophia (Liu et al. 2023, https://arxiv.org/abs/2305.14342), SophiaG's update as its code orders it:

    theta <- theta * (1 - lr * wd)
    m     <- b1 m + (1 - b1) g
    theta <- theta - lr * sign(m) * min(|m| / (rho * bs * h + eps), 1)

and, every ``k`` steps, h <- b2 h + (1 - b2) h_hat from a fresh estimate h_hat of the loss's Hessian diagonal.
SOUL (Jia et al. 2024, https://arxiv.org/abs/2404.18239) uses it for LLM unlearning with betas (0.9, 0.95), rho
0.04 and weight decay 0.1. The estimate comes from the model's own outputs:

- Gauss-Newton-Bartlett (``gnb``), for adapters with categorical outputs (they offer ``sampled_nll``): labels drawn
  from the model's own distribution, h_hat = g_hat * g_hat with g_hat the gradient of their mean NLL, and bs = the
  number of label tokens (Sophia's code passes the tokens per step as ``bs``).
- Hutchinson (``hutchinson``), for any adapter and objective: h_hat = u * (H u) with Rademacher u and the
  Hessian-vector product of the step's own unlearning loss (ESD's, for diffusion), bs = 1.

Where this differs from SOUL's code (which takes h_hat = the squared training gradient at every step and leaves
Sophia's bs at 5120), the README says so.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from erasure.config import HESSIAN_ESTIMATORS


class Sophia(torch.optim.Optimizer):
    """SophiaG with the Hessian estimate handed in (``update_hessian``) rather than computed inside.

    Args:
        params: parameters (or groups).
        lr: learning rate (the largest per-entry step: the ratio is clipped at 1).
        betas: (b1 for the momentum, b2 for the Hessian's moving average).
        rho: the clipping scale.
        weight_decay: decoupled weight decay.
        eps: added to the denominator.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: Sequence[float] = (0.9, 0.95),
                 rho: float = 0.04, weight_decay: float = 0.1, eps: float = 1e-15):
        if lr <= 0 or rho <= 0 or weight_decay < 0:
            raise ValueError(f"Sophia needs lr > 0, rho > 0 and weight_decay >= 0; got lr={lr}, rho={rho}, "
                             f"weight_decay={weight_decay}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Sophia's betas must be two numbers in [0, 1), got {tuple(betas)}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), rho=rho, weight_decay=weight_decay, eps=eps,
                                      bs=1.0))

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def update_hessian(self, estimates: Sequence[torch.Tensor | None], bs: float) -> None:
        """h <- b2 h + (1 - b2) h_hat for every parameter (in ``param_groups`` order; None leaves one as it is).

        Args:
            estimates: h_hat per parameter.
            bs: the units the estimate averaged over (label tokens for GNB, 1 for Hutchinson).
        """
        count = sum(len(g["params"]) for g in self.param_groups)
        if len(estimates) != count:
            raise ValueError(f"{len(estimates)} Hessian estimates for {count} parameters")
        given = iter(estimates)
        for group in self.param_groups:
            group["bs"] = float(bs)
            b2 = group["betas"][1]
            for p, h_hat in zip(group["params"], given):
                if h_hat is not None:
                    self._state(p)["hessian"].mul_(b2).add_(h_hat.to(p.dtype), alpha=1 - b2)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, _), rho, wd, eps, bs = (group[k] for k in ("lr", "betas", "rho", "weight_decay", "eps", "bs"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                state["step"] += 1
                p.mul_(1 - lr * wd)
                m = state["exp_avg"].mul_(b1).add_(p.grad, alpha=1 - b1)
                # a negative curvature estimate (Hutchinson's can be) counts as none: the step is sign(m) * lr
                ratio = (m.abs() / ((rho * bs * state["hessian"]).clamp(min=0) + eps)).clamp(max=1)
                p.addcmul_(m.sign(), ratio, value=-lr)
        return loss


def estimator_for(adapter: Any, choice: str = "auto") -> str:
    """``gnb`` where the adapter can sample its own labels (``sampled_nll``), else ``hutchinson``; a named choice
    is checked against what the adapter offers."""
    if choice not in HESSIAN_ESTIMATORS:
        raise ValueError(f"unknown Hessian estimator {choice!r}; known: {', '.join(HESSIAN_ESTIMATORS)}")
    can_sample = callable(getattr(adapter, "sampled_nll", None))
    if choice == "gnb" and not can_sample:
        raise ValueError(f"{type(adapter).__name__} has no categorical outputs to sample labels from (sampled_nll): "
                         "use the Hutchinson estimator")
    if choice == "auto":
        return "gnb" if can_sample else "hutchinson"
    return choice


def gnb_estimate(adapter: Any, batches: Sequence[Any], params: Sequence[torch.nn.Parameter],
                 generator: torch.Generator) -> tuple[list[torch.Tensor], float]:
    """Gauss-Newton-Bartlett: (g_hat * g_hat per parameter, label tokens) with g_hat the gradient of the mean NLL
    of labels the model samples from its own distribution on the step's batches (Sophia's GNB).

    Args:
        adapter: an adapter with ``sampled_nll(batch, generator) -> (nll (B,), tokens (B,))``.
        batches: the step's collated batches (forget, and retain when the objective has one).
        params: the trained parameters.
        generator: seeds the sampled labels (a resumed run draws the same).
    """
    params = list(params)
    nll, units = zip(*(adapter.sampled_nll(b, generator) for b in batches))
    tokens = sum(u.sum() for u in units)
    loss = sum(n.sum() for n in nll) / tokens.clamp(min=1)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [g.detach() * g.detach() if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)], \
        float(tokens)


def twice_differentiable():
    """A context in which scaled-dot-product attention runs its plain math kernel: the fused kernels (flash,
    memory-efficient) have no second derivative, which Hutchinson's Hessian-vector product needs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def hutchinson_estimate(loss: torch.Tensor, params: Sequence[torch.nn.Parameter],
                        generator: torch.Generator) -> tuple[list[torch.Tensor], float]:
    """Hutchinson: (u * (H u) per parameter, 1) with Rademacher u and the Hessian of ``loss`` (built with its graph:
    the step's own unlearning loss, computed inside ``twice_differentiable()``), from one Hessian-vector product.

    Args:
        loss: a scalar whose graph reaches ``params``.
        params: the trained parameters.
        generator: seeds u.
    """
    params = list(params)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    used = [(p, g) for p, g in zip(params, grads) if g is not None and g.requires_grad]
    us = [(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p.device, p.dtype) for p, _ in used]
    hvps = torch.autograd.grad([g for _, g in used], [p for p, _ in used], grad_outputs=us, allow_unused=True)
    found = {id(p): (u * h).detach() for (p, _), u, h in zip(used, us, hvps) if h is not None}
    return [found.get(id(p), torch.zeros_like(p)) for p in params], 1.0
