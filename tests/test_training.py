"""The task trainer: lowers its held-out loss, never changes a frozen weight, reproducible by seed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repscope.errors import RepscopeError
from repscope.stitching import Stitch, StitchedNetwork
from repscope.training import frozen_parameters, task_loss, train_map

from test_stitching import digits_data, train_digits_cnn


@pytest.fixture(scope="module")
def pair():
    return train_digits_cnn(0, epochs=4), train_digits_cnn(1, epochs=4)


def _setup(pair, labels: bool = False, seed: int = 0):
    a, b = pair
    x, y = digits_data()
    s = Stitch(16, 16, kernel=1)
    with torch.no_grad():  # a poor start (a random map), so there is something to learn
        s.map.weight.copy_(torch.eye(16)[:, :, None, None] + 0.3 * torch.randn(16, 16, 1, 1,
                                                                         generator=torch.Generator().manual_seed(seed)))
        s.map.bias.zero_()
    net = StitchedNetwork(a, "r1", b, "r1", s)
    with torch.no_grad():
        targets = y if labels else b(x)
    batches = [(x[i:i + 64], targets[i:i + 64]) for i in range(0, 640, 64)]
    return net, batches[:8], batches[8:]


def _snapshot(*models):
    return [{k: v.clone() for k, v in m.module.state_dict().items()} for m in models]


@pytest.mark.parametrize("labels", [False, True])
def test_lowers_held_out_loss_and_never_changes_frozen_weights(pair, labels):
    net, fit, held = _setup(pair, labels)
    before = _snapshot(*pair)
    flags = [p.requires_grad for m in pair for p in m.module.parameters()]
    start = {k: v.clone() for k, v in net.stitch.state_dict().items()}
    result = train_map(net.stitch, net, fit, held, frozen=[m.module for m in pair], steps=60, lr=3e-3,
                       eval_every=10, patience=3, seed=0)
    assert result.loss == ("ce" if labels else "kl")
    assert min(result.held_out_loss) < 0.8 * result.held_out_loss[0]
    with torch.no_grad():  # the kept map is the best held-out one, and it is loaded
        total = sum(float(task_loss(net(x), t, result.loss)) * len(t) for x, t in held) / sum(len(t) for _, t in held)
    assert total == pytest.approx(min(result.held_out_loss), rel=1e-5)
    assert not torch.equal(start["map.weight"], net.stitch.map.weight)
    for old, new in zip(before, _snapshot(*pair)):  # frozen networks unchanged, bit for bit
        assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    assert flags == [p.requires_grad for m in pair for p in m.module.parameters()]
    assert all(p.grad is None for m in pair for p in m.module.parameters())


def test_same_seed_same_map_and_early_stopping(pair):
    runs = []
    for _ in range(2):
        net, fit, held = _setup(pair)
        train_map(net.stitch, net, fit, held, frozen=[m.module for m in pair], steps=20, seed=3)
        runs.append(net.stitch.map.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])
    net, fit, held = _setup(pair)
    # an lr so large that every step makes the held-out loss worse: stop after `patience` evaluations
    result = train_map(net.stitch, net, fit, held, frozen=[m.module for m in pair], steps=500, lr=5.0,
                       eval_every=5, patience=2, seed=0)
    assert result.stopped_early and result.steps < 500 and result.best_step < result.steps


def test_frozen_parameters_restores_flags_after_an_exception():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    net[1].weight.requires_grad_(False)
    with pytest.raises(RuntimeError):
        with frozen_parameters(net):
            assert not any(p.requires_grad for p in net.parameters())
            raise RuntimeError("boom")
    assert [p.requires_grad for p in net.parameters()] == [True, True, False, True]


def test_bad_arguments_are_one_line_errors(pair):
    net, fit, held = _setup(pair)
    with pytest.raises(RepscopeError, match="held-out"):
        train_map(net.stitch, net, fit, [], steps=5)
    with pytest.raises(RepscopeError, match="lr"):
        train_map(net.stitch, net, fit, held, steps=5, lr=float("nan"))
    with pytest.raises(RepscopeError, match="unknown loss"):
        train_map(net.stitch, net, fit, held, steps=5, loss="mse")


@pytest.mark.slow
def test_equivariance_map_trained_on_the_task_through_the_same_trainer(lite0):
    from repscope.crops import crop_data
    from repscope.equivariance_task import equivariance_task_layers

    fit, test = crop_data(n_fit=16, n_test=8, size=65, batch_size=8)
    before = {k: v.clone() for k, v in lite0.module.state_dict().items()}
    ((row, task),) = equivariance_task_layers(lite0, "vflip", ["blocks.1"], fit=fit, test=test, steps=10, lr=1e-3)
    assert task["loss"] == "kl" and task["steps"] == 10
    assert task["held_out_loss"][1] < 0.98 * task["held_out_loss"][0]  # KL to the network on x, held-out photos
    assert set(row.agreement) >= {"learned", "uncompensated"} and row.n_test == 8
    assert all(torch.equal(before[k], v) for k, v in lite0.module.state_dict().items())
