"""The pre-flight check finds each planted problem, and only what is really there in lite0."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repscope import models
from repscope.checks import check


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv(x))  # functional rectifier


class _Planted(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)          # in-place activation
        self.block = _Block()
        self.shared = nn.Conv2d(8, 8, 1)          # called twice
        self.bn = nn.BatchNorm2d(8)               # left in train mode
        self.drop = nn.Dropout(0.5)               # left in train mode
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.act(self.stem(x))
        x = self.shared(self.shared(self.block(x)))
        x = self.drop(self.bn(x))
        return self.head(x.mean(dim=(2, 3)))


def test_finds_every_planted_problem():
    net = _Planted()
    net.eval()
    net.bn.train()
    net.drop.train()
    model = models.Model("planted", net, models.Preprocessing(32), None)
    findings = check(model, torch.rand(2, 3, 32, 32))
    found = {(f.kind, f.layer) for f in findings}
    assert found == {("inplace", "act"), ("functional-rectifier", "block"), ("reused", "shared"),
                     ("train-mode", "bn"), ("train-mode", "drop")}
    assert all(f.action for f in findings)
    assert net.bn.training and net.act.inplace  # check changes nothing
    assert torch.equal(net.bn.running_mean, torch.zeros(8)) and int(net.bn.num_batches_tracked) == 0


def test_lite0_has_only_its_inplace_relu6(lite0):
    findings = check(lite0)
    assert {f.kind for f in findings} == {"inplace"}
    relu6 = [n for n, m in lite0.module.named_modules() if isinstance(m, nn.ReLU6) and m.inplace]
    assert sorted(f.layer for f in findings) == sorted(relu6)


def test_wrong_input_range_is_flagged(lite0):
    unit_range = models.wrap(lite0.module)  # [0, 1] instead of the [-1, 1] lite0 was trained on
    imagenet = models.wrap(lite0.module, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    for wrong in (unit_range, imagenet):
        kinds = {f.kind: f for f in check(wrong)}
        assert "input-range" in kinds and kinds["input-range"].layer == "bn1"
