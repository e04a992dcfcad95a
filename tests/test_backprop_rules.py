"""Backward rules: agreement with Captum, hand-derived references for every rectifier form, hygiene."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import repscope.backprop as bp
from repscope.errors import RepscopeError


def input_grad(net: nn.Module, x: torch.Tensor, method: str | None, target=None) -> torch.Tensor:
    """d(target . net(x))/dx with the forward pass under ``method`` (None: no mode at all)."""
    x = x.detach().clone().requires_grad_(True)
    if method is None:
        out = net(x)
    else:
        with bp.rule(method):
            out = net(x)
    target = torch.ones_like(out) if target is None else target
    (g,) = torch.autograd.grad(out, x, grad_outputs=target)
    return g


# ---------------------------------------------------------------- Captum on torchvision models
CAPTUM = {"gradient": "Saliency", "guided": "GuidedBackprop", "deconvnet": "Deconvolution"}


@pytest.fixture(scope="module")
def torchvision_nets():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return {name: getattr(torchvision.models, name)(weights=None).eval() for name in ("resnet18", "vgg11", "alexnet")}


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "alexnet"])
@pytest.mark.filterwarnings("ignore")
def test_rules_equal_captum(torchvision_nets, name):
    captum_attr = pytest.importorskip("captum.attr")
    net = torchvision_nets[name]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    classes = [3, 17]
    maps = {}
    for method, cls in CAPTUM.items():
        kwargs = {"abs": False} if method == "gradient" else {}
        ref = getattr(captum_attr, cls)(net).attribute(x, target=classes, **kwargs)
        ours = bp.saliency(net, x, bp.Target.class_(classes), method)
        scale = ref.abs().max()
        assert scale > 0
        assert (ours - ref).abs().max() <= 1e-5 * scale, (name, method)
        maps[method] = ours
    # the three methods are genuinely different maps on these ReLU networks
    assert not torch.allclose(maps["guided"], maps["gradient"])
    assert not torch.allclose(maps["deconvnet"], maps["guided"])


# ---------------------------------------------------------------- hand-derived references
# h = W1 x with x = (1, 2) gives h = (-3, 5, 1, 8); output = W2 . act(h), so the incoming signal at h
# is g = W2 = (1, -1, 2, -3); the input map is W1^T (rule applied to g).
W1 = torch.tensor([[1.0, -2.0], [3.0, 1.0], [-1.0, 1.0], [4.0, 2.0]])
W2 = torch.tensor([[1.0, -1.0, 2.0, -3.0]])
X = torch.tensor([[1.0, 2.0]])
# ReLU:  mask (0,1,1,1); gradient W1^T(0,-1,2,-3) = (-17,-5); deconvnet W1^T(1,0,2,0) = (-1,0);
#        guided W1^T(0,0,2,0) = (-2,2).
# ReLU6: mask 1[0<h<6] = (0,1,1,0); gradient W1^T(0,-1,2,0) = (-5,1); deconvnet and guided as ReLU.
# Leaky a=0.1: f'(h) = (.1,1,1,1); gradient W1^T(.1,-1,2,-3) = (-16.9,-5.2);
#        deconvnet W1^T leaky(g) = W1^T(1,-.1,2,-.3) = (-2.5,-.7); guided W1^T leaky(f'g) = (-3.4,1.1).
EXPECTED = {
    "relu": {"gradient": (-17.0, -5.0), "deconvnet": (-1.0, 0.0), "guided": (-2.0, 2.0)},
    "relu6": {"gradient": (-5.0, 1.0), "deconvnet": (-1.0, 0.0), "guided": (-2.0, 2.0)},
    "leaky": {"gradient": (-16.9, -5.2), "deconvnet": (-2.5, -0.7), "guided": (-3.4, 1.1)},
}
FORMS = {
    "nn.ReLU": ("relu", nn.ReLU()),
    "nn.ReLU(inplace)": ("relu", nn.ReLU(inplace=True)),
    "F.relu": ("relu", F.relu),
    "F.relu(inplace)": ("relu", lambda h: F.relu(h, inplace=True)),
    "torch.relu": ("relu", torch.relu),
    "torch.relu_": ("relu", torch.relu_),
    "F.relu_": ("relu", F.relu_),
    "Tensor.relu": ("relu", lambda h: h.relu()),
    "Tensor.relu_ (result unused)": ("relu", lambda h: (h.relu_(), h)[1]),
    "nn.ReLU6": ("relu6", nn.ReLU6()),
    "nn.ReLU6(inplace)": ("relu6", nn.ReLU6(inplace=True)),
    "F.relu6": ("relu6", F.relu6),
    "F.relu6(inplace)": ("relu6", lambda h: F.relu6(h, inplace=True)),
    "F.hardtanh(0,6)": ("relu6", lambda h: F.hardtanh(h, 0.0, 6.0)),
    "F.hardtanh_(0,6)": ("relu6", lambda h: F.hardtanh_(h, 0.0, 6.0)),
    "nn.LeakyReLU(0.1)": ("leaky", nn.LeakyReLU(0.1)),
    "nn.LeakyReLU(0.1,inplace)": ("leaky", nn.LeakyReLU(0.1, inplace=True)),
    "F.leaky_relu_": ("leaky", lambda h: F.leaky_relu_(h, 0.1)),
}


class Tiny(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc1 = nn.Linear(2, 4, bias=False)
        self.fc2 = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(W1)
            self.fc2.weight.copy_(W2)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("method", bp.METHODS)
def test_every_rectifier_form_matches_hand_derivation(form, method):
    kind, act = FORMS[form]
    net = Tiny(act)
    with torch.no_grad():
        plain_out = net(X)
    with bp.rule(method) as mode:
        x = X.clone().requires_grad_(True)
        out = net(x)
    assert mode.calls == 1
    assert torch.equal(out.detach(), plain_out)  # the forward pass is unchanged
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(g, torch.tensor([EXPECTED[kind][method]]), atol=1e-6), (form, method, g)


def test_non_rectifier_hardtanh_and_other_ops_pass_through():
    x = torch.tensor([[-2.0, 0.5, 3.0]], requires_grad=True)
    with bp.rule("deconvnet") as mode:
        y = F.hardtanh(x, -1.0, 1.0) * torch.sigmoid(x)
    assert mode.calls == 0
    (g,) = torch.autograd.grad(y.sum(), x)
    (ref,) = torch.autograd.grad((F.hardtanh(x, -1.0, 1.0) * torch.sigmoid(x)).sum(), x)
    assert torch.equal(g, ref)


def test_maxpool_keeps_switches_in_all_methods():
    # h = -x = [[-1, 3], [2, -0.5]] -> relu -> maxpool picks (0, 1); out = 2 * pooled.
    x0 = torch.tensor([[[[1.0, -3.0], [-2.0, 0.5]]]])
    net = lambda x: 2 * F.max_pool2d(F.relu(-x), 2)  # noqa: E731
    for method in bp.METHODS:
        g = input_grad(net, x0, method)
        # only the switch position receives signal, even for deconvnet (h = 2 > 0 at (1, 0) gets nothing)
        assert torch.equal(g, torch.tensor([[[[0.0, -2.0], [0.0, 0.0]]]])), method
    # with a negative top signal the rectifying rules stop it, the gradient does not
    assert torch.equal(input_grad(net, x0, "gradient", -torch.ones(1, 1, 1, 1)), torch.tensor([[[[0.0, 2.0], [0, 0]]]]))
    assert torch.equal(input_grad(net, x0, "guided", -torch.ones(1, 1, 1, 1)), torch.zeros(1, 1, 2, 2))


class SmallCNN(nn.Module):
    """Rectifiers written in the ways real code does: F.relu, inplace modules, Tensor.relu_, relu6."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.max_pool2d(self.act(self.c2(x)), 2)
        x = self.c3(x)
        x.relu_()
        return self.fc(F.relu6(x).mean((2, 3)))


def test_small_cnn_guided_differs_from_gradient():
    torch.manual_seed(0)
    net = SmallCNN().eval()
    x = torch.rand(2, 3, 16, 16)
    grad = bp.saliency(net, x, 1, "gradient")
    guided = bp.saliency(net, x, 1, "guided")
    # the gradient rule is torch's own derivative: bit-identical to plain autograd
    assert torch.equal(grad, input_grad(net, x, None, F.one_hot(torch.tensor([1, 1]), 5).float()))
    assert (guided - grad).abs().max() > 0.1 * grad.abs().max()


def test_lite0_relu6_guided_is_not_the_gradient_where_captum_is():
    timm = pytest.importorskip("timm")
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    x = torch.rand(1, 3, 64, 64)
    grad = bp.saliency(net, x, 7, "gradient")
    for method, cls in (("guided", "GuidedBackprop"), ("deconvnet", "Deconvolution")):
        with pytest.warns(UserWarning):
            captum_map = getattr(captum_attr, cls)(net).attribute(x, target=7)
        assert torch.allclose(captum_map, grad, atol=1e-7)  # Captum's known failure on ReLU6
        ours = bp.backward_map(net, x, 7, method)
        assert ours.rectifiers == 33  # every ReLU6 of lite0 was rewritten
        assert (ours.maps - grad).abs().max() > 0.1 * grad.abs().max()
    assert torch.equal(grad, input_grad(net, x, None, F.one_hot(torch.tensor([7]), 1000).float()))


# ---------------------------------------------------------------- hygiene
def _hooks(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in net.modules())


def test_model_state_untouched_and_mode_popped_even_after_exception():
    torch.manual_seed(0)
    net = SmallCNN().eval()
    x = torch.rand(1, 3, 16, 16)
    before = net(x)
    flags = [m.inplace for m in net.modules() if hasattr(m, "inplace")]
    params = {k: v.clone() for k, v in net.state_dict().items()}
    for method in bp.METHODS:
        bp.saliency(net, x, 0, method)
    with pytest.raises(ValueError):
        with bp.rule("guided"):
            net(x)
            raise ValueError("boom")
    assert torch._C._len_torch_function_stack() == 0
    assert _hooks(net) == 0
    assert [m.inplace for m in net.modules() if hasattr(m, "inplace")] == flags
    assert all(torch.equal(v, params[k]) for k, v in net.state_dict().items())
    assert torch.equal(net(x), before)
    # plain autograd afterwards is the true gradient again
    y = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(y)[0, 0], y)
    assert torch.allclose(g, bp.saliency(net, x, 0, "gradient"))


def test_rule_is_thread_scoped_and_backward_may_run_after_the_block():
    net = Tiny(nn.ReLU())
    seen = {}

    def other_thread():
        seen["stack"] = torch._C._len_torch_function_stack()
        x = X.clone().requires_grad_(True)
        (seen["grad"],) = torch.autograd.grad(net(x).sum(), x)

    x = X.clone().requires_grad_(True)
    with bp.rule("guided"):
        out = net(x)
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    (g,) = torch.autograd.grad(out.sum(), x)  # after the block: the recorded rule still applies
    assert seen["stack"] == 0
    assert torch.allclose(seen["grad"], torch.tensor([EXPECTED["relu"]["gradient"]]))
    assert torch.allclose(g, torch.tensor([EXPECTED["relu"]["guided"]]))


def test_nested_rules_innermost_wins():
    net = Tiny(nn.ReLU())
    x = X.clone().requires_grad_(True)
    with bp.rule("gradient") as outer, bp.rule("deconvnet") as inner:
        out = net(x)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert (outer.calls, inner.calls) == (0, 1)
    assert torch.allclose(g, torch.tensor([EXPECTED["relu"]["deconvnet"]]))


def test_guided_gradient_rule_is_a_true_gradient_float64():
    net = SmallCNN().double().eval()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)

    def f(x):
        with bp.rule("gradient"):
            return net(x)

    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)


def test_unknown_method_is_a_one_line_error():
    with pytest.raises(RepscopeError, match="guided"):
        with bp.rule("guidedd"):
            pass
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("kind,p", [("relu", 0.0), ("hardtanh", 6.0), ("leaky", 0.1)])
@pytest.mark.parametrize("inplace", [False, True])
def test_rectifier_function_gradient_rule_passes_gradcheck(kind, p, inplace):
    from repscope.backprop.rules import _Rectifier

    x = (torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _Rectifier.apply(t * 1.0, kind, p, "gradient", inplace), (x,))


def test_inplace_rectifier_on_a_view():
    # relu_ on h[:, 1:3] of h = x = (1, -2, 3, -4); output w . h with w = (-1, 1, 2, -1).
    # gradient: (-1, 0, 2, -1); deconvnet ignores the mask: (-1, 1, 2, -1); guided: (-1, 0, 2, -1).
    expected = {"gradient": [-1.0, 0.0, 2.0, -1.0], "deconvnet": [-1.0, 1.0, 2.0, -1.0], "guided": [-1.0, 0.0, 2.0, -1.0]}
    w = torch.tensor([[-1.0, 1.0, 2.0, -1.0]])
    for method in bp.METHODS:
        x = torch.tensor([[1.0, -2.0, 3.0, -4.0]], requires_grad=True)
        with bp.rule(method):
            h = x * 1
            h[:, 1:3].relu_()
        assert torch.equal(h.detach(), torch.tensor([[1.0, 0.0, 3.0, -4.0]]))
        (g,) = torch.autograd.grad((h * w).sum(), x)
        assert torch.equal(g, torch.tensor([expected[method]])), method
