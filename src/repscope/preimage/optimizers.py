r"""The papers' optimiser as a ``torch.optim.Optimizer``: momentum with an AdaGrad-style step.

Mahendran & Vedaldi (the authors' released code), per element of every parameter:

.. math::

    G \leftarrow \rho\,G + g^2, \qquad v \leftarrow \mu\,v - s\,\frac{g}{1/\mathrm{lr} + \sqrt{G}},
    \qquad x \leftarrow x + v

The papers use μ = ρ = 0.9 and s = 1. With the papers' large lr (H·W · 0.05σ²/α) the step is
≈ s·g/√G, about s/√(1/(1-ρ)) per iteration in the direction of −sign(g) before momentum.

Example:
    >>> import torch
    >>> x = torch.zeros(3, requires_grad=True)
    >>> opt = MomentumAdaGrad([x], lr=1e6)
    >>> x.grad = torch.tensor([1.0, -2.0, 0.0])
    >>> opt.step()
    >>> x.detach().round(decimals=4)  # ≈ −sign(g) on the first step
    tensor([-1.,  1.,  0.])
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["MomentumAdaGrad"]


class MomentumAdaGrad(torch.optim.Optimizer):
    """Momentum μ with an AdaGrad-style scale (decay ρ) and a step multiplier s; see the module formula.

    Args:
        params: tensors or parameter groups (each group may set its own ``lr``, ``momentum``,
            ``decay``, ``scale``).
        lr: lr of the formula (the step size only while 1/lr is not small next to √G).
        momentum: μ.
        decay: ρ.
        scale: s.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, decay: float = 0.9, scale: float = 1.0):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, dict(lr=lr, momentum=momentum, decay=decay, scale=scale))

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: D102 - torch.optim.Optimizer.step
        params, grads, velocity, sum_sq, momentum, decay, inv_lr, scale = ([] for _ in range(8))
        for group in self.param_groups:  # one set of foreach calls for every group (per-tensor scalars)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(velocity=torch.zeros_like(p), sum_sq=torch.zeros_like(p))
                params.append(p), grads.append(p.grad)
                velocity.append(state["velocity"]), sum_sq.append(state["sum_sq"])
                momentum.append(group["momentum"]), decay.append(group["decay"])
                inv_lr.append(1.0 / group["lr"]), scale.append(-group["scale"])
        if not params:
            return
        torch._foreach_mul_(sum_sq, decay)
        torch._foreach_addcmul_(sum_sq, grads, grads)
        denominator = torch._foreach_sqrt(sum_sq)
        torch._foreach_add_(denominator, inv_lr)
        torch._foreach_mul_(velocity, momentum)
        torch._foreach_addcdiv_(velocity, grads, denominator, scale)
        torch._foreach_add_(params, velocity)
