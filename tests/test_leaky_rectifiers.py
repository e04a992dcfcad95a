"""Leaky rectifiers (activation maximisation): every rectifier form, in place or not, and thread scoping."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repscope.preimage.rectifiers import leaky_rectifiers

LEAK = 0.05


def _stmt_tensor_relu_(h):
    h.relu_()  # result unused: the statement must rectify h itself
    return h


def _stmt_f_relu_(h):
    F.relu_(h)
    return h


def _stmt_torch_relu_(h):
    torch.relu_(h)
    return h


def _stmt_hardtanh_(h):
    F.hardtanh_(h, 0.0, 6.0)
    return h


# Every form tests/test_backprop_rules.py tests, plus the statement forms; kind -> reference below.
FORMS = {
    "nn.ReLU": ("relu", nn.ReLU()),
    "nn.ReLU(inplace)": ("relu", nn.ReLU(inplace=True)),
    "F.relu": ("relu", F.relu),
    "F.relu(inplace)": ("relu", lambda h: F.relu(h, inplace=True)),
    "torch.relu": ("relu", torch.relu),
    "torch.relu_": ("relu", torch.relu_),
    "F.relu_": ("relu", F.relu_),
    "Tensor.relu": ("relu", lambda h: h.relu()),
    "Tensor.relu_ (result unused)": ("relu", _stmt_tensor_relu_),
    "F.relu_ (result unused)": ("relu", _stmt_f_relu_),
    "torch.relu_ (result unused)": ("relu", _stmt_torch_relu_),
    "nn.ReLU6": ("relu6", nn.ReLU6()),
    "nn.ReLU6(inplace)": ("relu6", nn.ReLU6(inplace=True)),
    "F.relu6": ("relu6", F.relu6),
    "F.relu6(inplace)": ("relu6", lambda h: F.relu6(h, inplace=True)),
    "F.hardtanh(0,6)": ("relu6", lambda h: F.hardtanh(h, 0.0, 6.0)),
    "F.hardtanh_(0,6)": ("relu6", lambda h: F.hardtanh_(h, 0.0, 6.0)),
    "F.hardtanh_(0,6) (result unused)": ("relu6", _stmt_hardtanh_),
    "nn.LeakyReLU(0.1)": ("leaky", nn.LeakyReLU(0.1)),
    "nn.LeakyReLU(0.1,inplace)": ("leaky", nn.LeakyReLU(0.1, inplace=True)),
    "F.leaky_relu_": ("leaky", lambda h: F.leaky_relu_(h, 0.1)),
}
INPLACE = {name for name in FORMS if "inplace" in name or "unused" in name or name.endswith("_")
           or name == "F.hardtanh_(0,6)"}

# h = W1 x = (-3, 5, 1, 8) for x = (1, 2); output W2 . act(h) with W2 = (1, -1, 2, -3).
W1 = torch.tensor([[1.0, -2.0], [3.0, 1.0], [-1.0, 1.0], [4.0, 2.0]])
W2 = torch.tensor([[1.0, -1.0, 2.0, -3.0]])
X = torch.tensor([[1.0, 2.0]])
# relu  -> leaky 0.05: act = (-0.15, 5, 1, 8), out -27.15; f' = (.05, 1, 1, 1): grad W1^T(.05,-1,2,-3) = (-16.95, -5.1)
# relu6 -> leaky 0.05 capped at 6: act = (-0.15, 5, 1, 6), out -21.15; f' = (.05,1,1,0): grad (-4.95, 0.9)
# leaky(0.1) unchanged: act = (-0.3, 5, 1, 8), out -27.3; f' = (.1,1,1,1): grad (-16.9, -5.2)
EXPECTED = {
    "relu": ([-0.15, 5.0, 1.0, 8.0], -27.15, (-16.95, -5.1)),
    "relu6": ([-0.15, 5.0, 1.0, 6.0], -21.15, (-4.95, 0.9)),
    "leaky": ([-0.3, 5.0, 1.0, 8.0], -27.3, (-16.9, -5.2)),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_every_rectifier_form_leaks_and_in_place_forms_modify_their_argument(form):
    kind, act = FORMS[form]
    values, out_expected, grad_expected = EXPECTED[kind]
    x = X.clone().requires_grad_(True)
    with leaky_rectifiers(LEAK):
        h = x @ W1.T
        before = h.detach().clone()
        a = act(h)
        out = (a @ W2.T).sum()
    torch.testing.assert_close(a.detach(), torch.tensor([values]))
    if form in INPLACE:
        assert a is h or a.data_ptr() == h.data_ptr(), form  # the argument itself holds the result
        torch.testing.assert_close(h.detach(), torch.tensor([values]))
    else:
        assert torch.equal(h.detach(), before), form  # out-of-place forms leave their argument alone
    assert float(out.detach()) == pytest.approx(out_expected, abs=1e-5)
    (g,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(g, torch.tensor([grad_expected]))


def test_statement_in_place_relu_on_two_values_at_leak_0_05():
    """The issue's case: [-2, 1] becomes [-0.1, 1], not the identity."""
    for stmt in (_stmt_tensor_relu_, _stmt_f_relu_, _stmt_torch_relu_):
        h = torch.tensor([-2.0, 1.0])
        with leaky_rectifiers(LEAK):
            stmt(h)
        torch.testing.assert_close(h, torch.tensor([-0.1, 1.0]))


def test_in_place_relu_on_a_view_changes_only_the_view():
    h = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    with leaky_rectifiers(LEAK):
        h[:, 1:3].relu_()
    torch.testing.assert_close(h, torch.tensor([[1.0, -0.1, 3.0, -4.0]]))


def test_leaky_rectifiers_are_thread_scoped():
    seen = {}

    def other_thread():
        seen["stack"] = torch._C._len_torch_function_stack()
        h = torch.tensor([-2.0, 1.0])
        seen["out"] = torch.relu(h)
        h.relu_()
        seen["inplace"] = h

    with leaky_rectifiers(LEAK):
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        inside = torch.relu(torch.tensor([-2.0, 1.0]))
    assert seen["stack"] == 0
    assert torch.equal(seen["out"], torch.tensor([0.0, 1.0])) and torch.equal(seen["inplace"], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(inside, torch.tensor([-0.1, 1.0]))
    assert torch._C._len_torch_function_stack() == 0


def test_zero_or_none_leak_changes_nothing():
    for leak in (0, None):
        with leaky_rectifiers(leak):
            assert torch._C._len_torch_function_stack() == 0
            assert torch.equal(torch.relu(torch.tensor([-2.0, 1.0])), torch.tensor([0.0, 1.0]))
