"""Forward hooks, registered for one block and always removed: the one home of hook hygiene.

Every engine that watches or changes a forward pass through module hooks (the truncated forward
of :mod:`repscope.layers`, ψ's output replacement, the call counts of the layer table, the
pre-flight check) registers them through :func:`forward_hooks`; the hooks are removed in
``finally``, also when the forward pass raises (a hook that stops it early, a shape error), and
also when registering one of them fails half-way.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    >>> seen = []
    >>> with forward_hooks([(net[0], lambda m, args, out: seen.append(out.shape))]):
    ...     _ = net(torch.zeros(3, 2))
    >>> seen, len(net[0]._forward_hooks)
    ([torch.Size([3, 2])], 0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["ForwardHook", "PreHook", "forward_hooks"]

#: ``hook(module, args, output) -> None | replacement output`` (``nn.Module.register_forward_hook``).
ForwardHook = Callable[[nn.Module, tuple, object], object]
#: ``hook(module, args) -> None | replacement args`` (``nn.Module.register_forward_pre_hook``).
PreHook = Callable[[nn.Module, tuple], object]


@contextlib.contextmanager
def forward_hooks(after: Iterable[tuple[nn.Module, ForwardHook]] = (),
                  before: Iterable[tuple[nn.Module, PreHook]] = ()) -> Iterator[list[RemovableHandle]]:
    """Register forward hooks (``after``) and forward pre-hooks (``before``) for the ``with`` block.

    Args:
        after: ``(module, hook)`` pairs; each hook runs after its module's forward.
        before: ``(module, hook)`` pairs; each hook runs before its module's forward.

    Yields:
        The handles, pre-hooks first (for callers that drop a hook early).

    Every hook is removed when the block exits, normally or by an exception.
    """
    handles: list[RemovableHandle] = []
    try:
        for module, hook in before:
            handles.append(module.register_forward_pre_hook(hook))
        for module, hook in after:
            handles.append(module.register_forward_hook(hook))
        yield handles
    finally:
        for handle in handles:
            handle.remove()
