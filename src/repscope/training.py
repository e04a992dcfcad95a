"""The one task trainer: a small map inserted in a frozen network, trained on the network's own task.

Lenc & Vedaldi (CVPR 2015) learn a stitching layer E (and the talk an equivariance map M_g) through the
frozen rest of a network with the classification loss. Csiszárik et al. (NeurIPS 2021) train on the
teacher network's soft predictions instead, so no labels are needed. Given batches ``(x, t)``, a student
``f_θ(x)`` (logits ``(B, K)``; only the map's parameters θ change) and a target ``t``::

    loss = KL(softmax(t) ‖ softmax(f_θ(x)))      t: the frozen network's own logits (B, K)  ("kl")
    loss = −log softmax(f_θ(x))[t]               t: class indices (B,)                      ("ce")

averaged over the batch. θ starts where the caller put it (the ridge solution); Adam takes the steps
on batches drawn by a seeded ``torch.Generator`` (an epoch is a random permutation of the batches);
every ``eval_every`` steps the loss on the held-out batches is measured, the best θ is kept, and
training stops after ``patience`` evaluations without improvement; θ ends at the best held-out point.
Every other parameter is frozen for the duration (:func:`frozen_parameters`, restored even after an
exception), so no gradient is computed for, and no value written to, the network's own weights.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(4, 3); linear_map = nn.Linear(4, 4)
    >>> x = torch.randn(64, 4); batches = [(xb, net(xb).detach()) for xb in x.split(16)]
    >>> result = train_map(linear_map, lambda xb: net(linear_map(xb)), batches[:3], batches[3:],
    ...                    frozen=[net], steps=30, seed=0)
    >>> result.held_out_loss[-1] <= result.held_out_loss[0]
    True
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import OptimisationError, RepscopeError

LOSSES = ("kl", "ce")


@dataclass
class TrainResult:
    """What :func:`train_map` did.

    Attributes:
        loss: ``"kl"`` or ``"ce"``. steps: optimiser steps taken. best_step: the step whose θ is kept.
        held_out_loss: held-out loss at step 0 (the starting map), then at every evaluation.
        eval_steps: the step of each ``held_out_loss`` entry. train_loss: the loss of every step.
        step_seconds: wall time of every step (forward, backward, Adam; evaluations excluded).
        stopped_early: whether patience ran out before ``steps``.
    """

    loss: str
    steps: int
    best_step: int
    held_out_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list, repr=False)
    step_seconds: list[float] = field(default_factory=list, repr=False)
    stopped_early: bool = False

    @property
    def improvement(self) -> float:
        """Held-out loss at the start minus at the kept step."""
        return self.held_out_loss[0] - min(self.held_out_loss)


@contextlib.contextmanager
def frozen_parameters(*modules: nn.Module) -> Iterator[None]:
    """Set ``requires_grad=False`` on every parameter of ``modules``; restore each flag on exit."""
    params = {id(p): p for m in modules for p in m.parameters()}
    saved = {k: p.requires_grad for k, p in params.items()}
    try:
        for p in params.values():
            p.requires_grad_(False)
        yield
    finally:
        for k, p in params.items():
            p.requires_grad_(saved[k])


def task_loss(logits: Tensor, target: Tensor, loss: str = "kl") -> Tensor:
    """KL to the teacher's soft predictions (target logits ``(B, K)``) or cross-entropy (labels ``(B,)``)."""
    if loss == "kl":
        return F.kl_div(F.log_softmax(logits, 1), F.log_softmax(target, 1), log_target=True, reduction="batchmean")
    return F.cross_entropy(logits, target)


def train_map(map_module: nn.Module, student: Callable[[Tensor], Tensor], fit: Sequence[tuple[Tensor, Tensor]],
              held_out: Sequence[tuple[Tensor, Tensor]], *, frozen: Sequence[nn.Module] = (),
              loss: str | None = None, steps: int = 200, lr: float = 1e-3,
              eval_every: int = 10, patience: int = 3, seed: int = 0, progress: bool = False) -> TrainResult:
    """Train ``map_module``'s parameters by Adam through ``student`` on the task loss; returns a :class:`TrainResult`.

    Args:
        map_module: the inserted map (its parameters are the only ones trained; modified in place).
        student: ``x -> logits (B, K)`` through the frozen network and ``map_module``.
        fit: training batches ``(x, target)``; held_out: batches for early stopping (photos not in ``fit``).
        frozen: modules whose parameters must not train (the networks).
        loss: ``"kl"`` (targets are teacher logits) or ``"ce"`` (targets are labels); default from the dtype.
        steps: at most this many Adam steps. lr: Adam's step size. eval_every, patience: early stopping.
        seed: the order of the batches. progress: show a progress bar.
    """
    from .progress import progress as bar

    if not fit or not held_out:
        raise RepscopeError("task training needs fit and held-out batches. Use more images (at least 3 photos).")
    loss = loss or ("ce" if not fit[0][1].is_floating_point() else "kl")
    if loss not in LOSSES:
        raise RepscopeError(f"unknown loss '{loss}'. Use one of {', '.join(LOSSES)}.")
    if steps < 0 or not lr > 0 or eval_every < 1:
        raise RepscopeError(f"need steps ≥ 0, lr > 0, eval_every ≥ 1 (got {steps}, {lr}, {eval_every}). "
                            "Try --steps 200 --lr 1e-4.")
    params = [p for p in map_module.parameters()]
    gen = torch.Generator().manual_seed(seed)
    result = TrainResult(loss=loss, steps=0, best_step=0)
    with frozen_parameters(*frozen):
        for p in params:
            p.requires_grad_(True)
        optimiser = torch.optim.Adam(params, lr=lr)
        best = _held_out(student, held_out, loss)
        best_state = copy.deepcopy(map_module.state_dict())
        result.held_out_loss.append(best)
        result.eval_steps.append(0)
        stale, order = 0, []
        for step in bar(range(1, steps + 1), total=steps, desc="task", quiet=not progress):
            if not order:
                order = torch.randperm(len(fit), generator=gen).tolist()
            x, target = fit[order.pop()]
            start = time.perf_counter()
            value = task_loss(student(x), target, loss)
            if not torch.isfinite(value):
                map_module.load_state_dict(best_state)
                raise OptimisationError(f"task training diverged at step {step}. Lower --lr.", iteration=step)
            optimiser.zero_grad(set_to_none=True)
            value.backward()
            optimiser.step()
            result.step_seconds.append(time.perf_counter() - start)
            result.steps = step
            result.train_loss.append(float(value.detach()))
            if step % eval_every == 0 or step == steps:
                current = _held_out(student, held_out, loss)
                result.held_out_loss.append(current)
                result.eval_steps.append(step)
                if current < best:
                    best, stale, result.best_step = current, 0, step
                    best_state = copy.deepcopy(map_module.state_dict())
                else:
                    stale += 1
                    if stale >= patience:
                        result.stopped_early = step < steps
                        break
        map_module.load_state_dict(best_state)
    return result


def _held_out(student: Callable[[Tensor], Tensor], batches: Sequence[tuple[Tensor, Tensor]], loss: str) -> float:
    """The mean task loss over ``batches`` (weighted by batch size), without gradients."""
    total, n = 0.0, 0
    with torch.no_grad():
        for x, target in batches:
            total += float(task_loss(student(x), target, loss)) * len(target)
            n += len(target)
    value = total / max(n, 1)
    return value if math.isfinite(value) else float("inf")
