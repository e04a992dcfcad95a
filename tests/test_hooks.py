"""Hook hygiene: forward_hooks removes every hook, and features() / ψ / the check leave none behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repscope import layers
from repscope.checks import check
from repscope.errors import LayerError
from repscope.hooks import forward_hooks
from repscope.layer_info import call_counts


def _hook_count(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, stride=2),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def test_forward_hooks_run_inside_and_are_removed_after_an_exception():
    net = _net()
    order = []
    x = torch.rand(1, 3, 8, 8)
    with forward_hooks(after=[(net[0], lambda m, a, o: order.append("after0")),
                              (net[2], lambda m, a, o: order.append("after2"))],
                       before=[(net[2], lambda m, a: order.append("before2"))]) as handles:
        net(x)
        assert len(handles) == 3 and _hook_count(net) == 3
    assert order == ["after0", "before2", "after2"] and _hook_count(net) == 0
    with pytest.raises(ValueError, match="boom"):
        with forward_hooks([(net[0], lambda m, a, o: None)]):
            raise ValueError("boom")
    assert _hook_count(net) == 0


def test_forward_hooks_registered_half_way_are_removed():
    net = _net()
    with pytest.raises(AttributeError):
        with forward_hooks([(net[0], lambda m, a, o: None), ("not a module", lambda m, a, o: None)]):
            pass  # never reached: the second registration fails
    assert _hook_count(net) == 0


def test_a_hook_may_replace_the_output():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[1].weight.fill_(1.0)
    with forward_hooks([(net[0], lambda m, a, o: torch.full_like(o, 2.0))]):
        out = net(torch.zeros(5, 2))
    assert torch.equal(out, torch.full((5, 1), 4.0)) and _hook_count(net) == 0


def test_features_leaves_no_hook_after_its_early_stop():
    net = _net()
    x = torch.rand(2, 3, 16, 16)
    calls = []
    with forward_hooks([(net[6], lambda m, a, o: calls.append(1))]):
        got = layers.features(net, x, ["0", "2"])
    assert got["2"].shape == (2, 4, 7, 7) and calls == []  # stopped before the last layer
    assert _hook_count(net) == 0


def test_features_leaves_no_hook_after_a_layer_error():
    class Pair(nn.Module):
        def forward(self, x):
            return "not", "tensors"

    net = nn.Sequential(nn.Conv2d(3, 3, 1), Pair(), nn.Identity())
    with pytest.raises(LayerError, match="not a tensor"):
        layers.features(net, torch.rand(1, 3, 4, 4), ["0", "1"])
    assert _hook_count(net) == 0

    class Skips(nn.Module):  # 'unused' is a layer name, but the forward pass never calls it
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.used(x)

    skips = Skips()
    with pytest.raises(LayerError, match="never ran"):
        layers.features(skips, torch.rand(1, 3, 4, 4), ["used", "unused"])
    assert _hook_count(skips) == 0


def test_psi_call_counts_and_check_leave_no_hook():
    net = _net()
    x = torch.rand(2, 3, 16, 16)
    psi = layers.rest_of_network(net, "3")
    with torch.no_grad():
        feats = layers.features(net, x, "3")["3"]
        assert torch.allclose(psi(x, feats), net(x))
        with pytest.raises(RuntimeError):
            psi(x, torch.zeros(2, 5, 7, 7))  # wrong width: fails inside the forward pass
        counts = call_counts(net, x)
    assert counts == {str(i): 1 for i in range(7)}
    check(net, x)
    assert _hook_count(net) == 0
