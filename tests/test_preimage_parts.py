"""The pre-image engine's parts, each against a reference: the pyramid parameterisation and its
adjoint, the papers' optimiser, the jittered crop, the hand-written TV² and inversion gradients,
and the engine's folded pyramid against the textbook loop."""

import pytest
import torch
import torch.nn.functional as F

from repscope.preimage import total_variation
from repscope.preimage import jitter, pyramid
from repscope.preimage.optimizers import MomentumAdaGrad


@pytest.mark.parametrize("in_size,out_size", [((5, 7), (10, 14)), ((5, 7), (9, 13)), ((1, 1), (2, 1)),
                                              ((60, 61), (120, 121)), ((116, 116), (232, 232))])
def test_upsample2_is_bilinear_x2_and_its_backward_is_the_adjoint(in_size, out_size):
    x = torch.randn(2, 3, *in_size, dtype=torch.float64, requires_grad=True)
    reference = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    reference = reference[..., : out_size[0], : out_size[1]]
    up = pyramid.upsample2(x, out_size)
    torch.testing.assert_close(up, reference, rtol=0, atol=1e-12)
    g = torch.randn_like(up)
    (ours,) = torch.autograd.grad(up, x, g)
    (theirs,) = torch.autograd.grad(reference, x, g)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("in_size,out_size", [((5, 7), (10, 14)), ((5, 7), (9, 13)), ((1, 1), (2, 1)), ((4, 4), (7, 8))])
def test_hand_written_adjoint_equals_aten_at_small_sizes(in_size, out_size):
    """CUDA takes the hand-written adjoint at every size (aten's accumulates with atomics there)."""
    g = torch.randn(2, 3, *out_size, dtype=torch.float64)
    aten = pyramid.upsample2_adjoint(g, in_size)  # small on the CPU: aten's kernel
    ours = pyramid._up_adjoint(pyramid._up_adjoint(g, 2, in_size[0]), 3, in_size[1])
    torch.testing.assert_close(ours, aten, rtol=0, atol=1e-12)


def test_upsample2_passes_gradcheck_on_the_hand_written_path():
    x = torch.randn(1, 3, 130, 9, dtype=torch.float64, requires_grad=True)  # large enough for the manual path
    assert torch.autograd.gradcheck(lambda v: pyramid.upsample2(v, (259, 18)), (x,), fast_mode=True)


def test_pyramid_split_compose_round_trip_and_level_shapes():
    canvas = torch.randn(2, 3, 29, 30)
    levels = pyramid.split(canvas, 3)
    assert [tuple(p.shape[-2:]) for p in levels] == [(29, 30), (15, 15), (8, 8), (4, 4)]
    torch.testing.assert_close(pyramid.compose(levels), canvas, rtol=0, atol=0)
    levels[3] += 1.0  # a constant on the coarsest level is a constant on the canvas
    torch.testing.assert_close(pyramid.compose(levels), canvas + 1.0)
    assert [pyramid.level_count(s, s) for s in (224, 64, 16, 7)] == [5, 4, 2, 0]
    assert pyramid.level_count(224, 20) == 2  # the short side decides


@pytest.mark.parametrize("size,count", [((29, 30), 3), ((225, 226), 5)])
def test_pyramid_adjoint_equals_autograd_through_compose(size, count):
    canvas = torch.randn(2, 3, *size, dtype=torch.float64)
    levels = [p.normal_().requires_grad_(True) for p in pyramid.split(canvas, count)]
    g = torch.randn(2, 3, *size, dtype=torch.float64)
    expected = torch.autograd.grad(pyramid.compose(levels), levels, g)
    ours = pyramid.adjoint(g, count)
    assert [p.shape for p in ours] == [p.shape for p in levels]
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_momentum_adagrad_follows_the_formula_per_group():
    x = torch.tensor([1.0, -1.0, 0.5], requires_grad=True)
    y = torch.tensor([2.0], requires_grad=True)
    opt = MomentumAdaGrad([{"params": [x]}, {"params": [y], "scale": 0.25}], lr=10.0, momentum=0.8, decay=0.5)
    ref = {"x": x.detach().clone(), "y": y.detach().clone()}
    state = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in ref.items()}
    for step in range(4):
        grads = {"x": torch.tensor([0.3, -2.0, 1.0]) * (step + 1), "y": torch.tensor([-0.7])}
        x.grad, y.grad = grads["x"].clone(), grads["y"].clone()
        opt.step()
        for k, s in (("x", 1.0), ("y", 0.25)):
            v, g2 = state[k]
            g2.mul_(0.5).add_(grads[k] ** 2)
            v.mul_(0.8).sub_(s * grads[k] / (1 / 10.0 + g2.sqrt()))
            ref[k] += v
    torch.testing.assert_close(x.detach(), ref["x"])
    torch.testing.assert_close(y.detach(), ref["y"])


def test_jittered_crop_equals_slicing_and_its_gradient():
    canvas = torch.randn(3, 3, 12, 11, dtype=torch.float64, requires_grad=True)
    mean = torch.tensor([100.0, 110.0, 120.0], dtype=torch.float64).view(1, 3, 1, 1)
    where = [(0, 1), (2, 0), (1, 1)]
    ours = jitter.crop_images01(canvas, where, (10, 10), mean)
    reference = torch.stack([(canvas[n, :, dy : dy + 10, dx : dx + 10] + mean[0]) / 255
                             for n, (dy, dx) in enumerate(where)])
    torch.testing.assert_close(ours, reference)
    g = torch.randn_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, canvas, g)[0], torch.autograd.grad(reference, canvas, g)[0])
    same = jitter.crop_images01(canvas, [(1, 0)] * 3, (10, 10), mean)  # one slice for the whole batch
    torch.testing.assert_close(same, (canvas[:, :, 1:11, 0:10] + mean) / 255)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    assert all(0 <= o <= 2 for off in jitter.offsets(gens, 2) for o in off)


def test_squared_total_variation_gradient_matches_autograd_of_the_formula():
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: total_variation(v, 2.0), (x,))
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum((1, 2, 3))
    vertical = (x[..., 1:, :] - x[..., :-1, :]).pow(2).sum((1, 2, 3))
    formula = (horizontal + vertical) / 63
    torch.testing.assert_close(total_variation(x, 2.0), formula)


def test_invert_loss_gradient_matches_autograd_of_the_formula():
    from repscope.preimage import Invert

    target = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    f = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: Invert(target)(v), (f,))
    formula = (f - target).pow(2).sum((1, 2, 3)) / target.pow(2).sum((1, 2, 3))
    torch.testing.assert_close(Invert(target)(f), formula)


def test_engine_iterates_equal_the_textbook_pyramid_loop():
    """The engine folds each step into the canvas; the textbook loop composes the levels every
    iteration, projects with a straight-through gradient and lets the finest level carry Π."""
    from repscope.preimage import Invert, PreimageConfig, optimise

    torch.manual_seed(0)
    phi = torch.nn.Conv2d(3, 4, 3).double()
    start = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    target = Invert(phi(torch.rand(2, 3, 16, 16, dtype=torch.float64)).detach())
    config = PreimageConfig(iters=12, jitter=0, pyramid=2, final_fraction=0.5)
    ours = optimise(phi, target, start01=start, config=config)

    c = config.resolve(1)
    mean = torch.tensor(c.mean, dtype=torch.float64).view(1, 3, 1, 1) * 255
    low, high = -mean, 255 - mean
    levels = [p.requires_grad_(True) for p in pyramid.split(torch.clamp(start * 255 - mean, low, high), 2)]

    def optimiser(lr):
        groups = [{"params": [p], "scale": c.step_scale * c.pyramid_decay**k} for k, p in enumerate(levels)]
        return MomentumAdaGrad(groups, lr=lr, momentum=c.momentum, decay=c.decay)

    opt = optimiser(c.lr * 16 * 16)
    for t in range(12):
        if t == 6:  # the final stage restarts the optimiser at 0.1 lr
            opt = optimiser(c.lr * 16 * 16 * c.final_lr_factor)
        composed = pyramid.compose(levels)
        projected = torch.clamp(composed, low, high).detach()
        canvas = composed + (projected - composed).detach()
        energy = c.data_weight * target(phi((canvas + mean) / 255)) + c.lambda_tv * total_variation(canvas, 2.0)
        grads = torch.autograd.grad(energy.sum(), levels)
        with torch.no_grad():
            levels[0] += projected - composed
        for p, g in zip(levels, grads):
            p.grad = g
        opt.step()
        torch.testing.assert_close(ours.losses[t], energy.detach(), rtol=1e-9, atol=1e-9)
    expected = ((torch.clamp(pyramid.compose(levels), low, high) + mean) / 255).clamp(0, 1)
    torch.testing.assert_close(ours.images01, expected.detach(), rtol=0, atol=1e-9)


def test_cuda_runs_hold_cudnn_to_deterministic_algorithms_and_restore_the_flags():
    from repscope.preimage.engine import _reproducible

    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        with pytest.raises(KeyError), _reproducible(torch.device("cuda")):
            assert (cudnn.deterministic, cudnn.benchmark) == (True, False)
            raise KeyError("the loop failed")
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
        with _reproducible(torch.device("cpu")):
            assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def test_section_times_cover_the_loop_and_change_no_result():
    from repscope.preimage import Invert, PreimageConfig, optimise

    torch.manual_seed(0)
    phi = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3, 2))
    target = Invert(phi(torch.rand(2, 3, 64, 64)).detach())
    config = PreimageConfig(iters=15, jitter=2)
    plain = optimise(phi, target, size=(64, 64), batch=2, config=config)
    timed = optimise(phi, target, size=(64, 64), batch=2, config=config, time_sections=True,
                     callback=lambda t, canvas: None)
    assert plain.section_seconds == {}
    assert torch.equal(plain.images01, timed.images01)
    assert list(timed.section_seconds) == ["jitter crop", "forward + objective", "priors", "backward",
                                           "pyramid adjoint", "finite check", "step", "pyramid fold",
                                           "projection", "callback"]
    assert min(timed.section_seconds.values()) > 0
    # only the progress iterator's own time is outside the sections
    assert 0.8 * timed.seconds < sum(timed.section_seconds.values()) <= timed.seconds
