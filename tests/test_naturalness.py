"""Transfer (classified by networks that did not make the image) and image statistics, on hand-made cases."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from repscope import models
from repscope.errors import RepscopeError, ShapeError
from repscope.naturalness import (default_classes, radial_power, same_network, saturation, spectral_slope,
                                  transfer, transfer_rates, tv_per_pixel)


class _Constant(nn.Module):
    """Logits that ignore the image: ``scores`` for every input; records the input sizes it saw."""

    def __init__(self, scores):
        super().__init__()
        self.register_buffer("scores", torch.as_tensor(scores, dtype=torch.float32))
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return self.scores.expand(x.shape[0], -1) + 0 * x.mean(dim=(1, 2, 3))[:, None]


class _Refuses(nn.Module):
    """A source network A whose forward must never run during transfer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 10)

    def forward(self, x):
        raise AssertionError("transfer called the source network")


def test_default_classes_fixed_distinct_and_seeded():
    a = default_classes(seed=0)
    assert a == default_classes(seed=0) and len(a) == 20 and len(set(a)) == 20
    assert a == sorted(a) and all(0 <= k < 1000 for k in a)
    assert default_classes(seed=1) != a
    assert len(default_classes(seed=0, count=50)) == 50
    with pytest.raises(RepscopeError, match="1..1000"):
        default_classes(count=0)


def test_rank_top1_top5_by_hand():
    b = models.wrap(_Constant(torch.arange(10.0)), name="b")  # class c has rank 10 - c
    out = transfer(torch.rand(3, 3, 8, 8), [9, 5, 0], {"b": b}, resize=False)["b"]
    assert [r["rank"] for r in out] == [1, 5, 10]
    assert [r["top1"] for r in out] == [True, False, False]
    assert [r["top5"] for r in out] == [True, True, False]
    rates = transfer_rates({"b": out})["b"]
    assert rates["top1"] == pytest.approx(1 / 3) and rates["top5"] == pytest.approx(2 / 3)
    assert rates["median_rank"] == 5


def test_transfer_uses_b_forward_only_and_a_never_enters():
    k = 7
    scores = torch.zeros(10)
    scores[k] = 5.0
    b = models.wrap(_Constant(scores), name="always_k")
    a = models.wrap(_Refuses(), name="a")  # would raise if transfer evaluated it
    out = transfer(torch.rand(4, 3, 8, 8), [k] * 4, [b], source=a, resize=False)
    assert transfer_rates(out)["always_k"]["top1"] == 1.0
    other = transfer(torch.rand(4, 3, 8, 8), [3] * 4, [b], source=a, resize=False)["always_k"]
    assert all(not r["top1"] and r["rank"] == 2 for r in other)  # 9 classes tie at 0 below k: none beats 3


def test_deliberate_leak_is_refused():
    a = models.wrap(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10)), name="a")
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(RepscopeError, match="made the images"):
        transfer(images, [1, 2], {"a_again": a}, source=a)
    same_module = models.wrap(a.module, name="alias", mean=(0.5, 0.5, 0.5))
    with pytest.raises(RepscopeError, match="made the images"):
        transfer(images, [1, 2], [same_module], source=a)
    weights_copy = models.wrap(copy.deepcopy(a.module), name="copy")
    with pytest.raises(RepscopeError, match="made the images"):
        transfer(images, [1, 2], [weights_copy], source=a)
    other = copy.deepcopy(a.module)
    with torch.no_grad():
        other[1].bias.add_(1e-3)
    assert not same_network(a, models.wrap(other)) and same_network(a, weights_copy)
    assert set(transfer(images, [1, 2], {"other": models.wrap(other)}, source=a, resize=False)) == {"other"}


def test_each_network_sees_its_own_input_size():
    net = _Constant(torch.arange(10.0))
    b = models.wrap(net, input_size=32, name="b32")
    transfer(torch.rand(2, 3, 16, 16), [1, 2], [b])
    assert net.seen[-1] == (2, 3, 32, 32)
    transfer(torch.rand(2, 3, 16, 16), [1, 2], [b], resize=False)
    assert net.seen[-1] == (2, 3, 16, 16)


def test_transfer_argument_errors():
    b = models.wrap(_Constant(torch.arange(10.0)))
    with pytest.raises(ShapeError, match="one class per image"):
        transfer(torch.rand(2, 3, 8, 8), [1], [b])
    with pytest.raises(RepscopeError, match="ImageNet classifier"):
        transfer(torch.rand(1, 3, 8, 8), [10], [b])
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        transfer(torch.rand(3, 8, 8), [1], [b])


def test_real_photo_transfers_between_lite_networks(lite0, photos):
    """Chelsea (a tabby cat) at 224²: lite0's top class is within lite1's top 5 at lite1's own 240²."""
    lite1 = models.load("efficientnet_lite1")
    with torch.no_grad():
        k = int(lite0(photos[:1]).argmax())
    out = transfer(photos[:1], [k], [lite1], source=lite0)["efficientnet_lite1"][0]
    assert 281 <= k <= 285 and out["top5"] and out["rank"] <= 5
    with pytest.raises(RepscopeError, match="made the images"):
        transfer(photos[:1], [k], [lite0], source=lite0)


def test_tv_per_pixel_by_hand():
    assert tv_per_pixel(torch.full((1, 3, 6, 6), 0.3)).tolist() == [0.0]
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    board = ((i + j) % 2).float().expand(1, 3, 6, 6)
    assert tv_per_pixel(board).item() == pytest.approx(1.0)
    ramp = (j.float() / 5).expand(1, 3, 6, 6)  # Δh = 1/5 everywhere, Δv = 0
    assert tv_per_pixel(ramp).item() == pytest.approx(0.1)


def test_saturation_by_hand():
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 0.8
    grey = torch.full((1, 3, 4, 4), 0.5)
    black = torch.zeros(1, 3, 4, 4)
    half = torch.tensor([1.0, 0.5, 0.5]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert saturation(torch.cat([red, grey, black, half])).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.5])


def _power_law(n: int, size: int, exponent: float, seed: int = 0) -> torch.Tensor:
    """Grey images (n, 3, size, size) in [0, 1] with power ∝ |f|^-exponent (random phases)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size, dtype=torch.float64)
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    amplitude = torch.where(radius > 0, radius.clamp_min(1e-12) ** (-exponent / 2), torch.zeros(()))
    phase = torch.rand(n, size, size, generator=g, dtype=torch.float64) * 2 * math.pi
    img = torch.fft.ifft2(amplitude * torch.exp(1j * phase)).real
    lo, hi = img.amin((1, 2), keepdim=True), img.amax((1, 2), keepdim=True)
    return ((img - lo) / (hi - lo))[:, None].expand(n, 3, size, size).float()


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0, 3.0])
def test_spectral_slope_recovers_power_law(exponent):
    images = (torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(1)) if exponent == 0
              else _power_law(3, 128, exponent))
    slopes = spectral_slope(images)
    assert slopes.shape == (3,)
    assert slopes.mean().item() == pytest.approx(-exponent, abs=0.12)


def test_spectral_slope_ignores_scale_and_offset():
    x = _power_law(2, 64, 2.0)
    assert torch.allclose(spectral_slope(x), spectral_slope(0.5 * x + 0.25), atol=1e-5)


def test_radial_power_parseval_without_window():
    """Summed over the full 2-D spectrum, power/S² equals the variance (Parseval); the radial bins average it."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    freqs, power = radial_power(x, window=False)
    assert freqs[0].item() == pytest.approx(1 / 32) and freqs.shape == (15,) and power.shape == (1, 15)
    grey = x.double().mean(1)
    spectrum = torch.fft.fft2(grey - grey.mean()).abs().pow(2) / 32**2
    assert spectrum.mean().item() == pytest.approx(grey.var(unbiased=False).item(), rel=1e-9)
    with pytest.raises(ShapeError, match="at least 8x8"):
        radial_power(torch.rand(1, 3, 4, 4))


def test_transfer_to_loads_by_name_and_refuses_the_source(lite0, photos):
    from repscope.naturalness import transfer_to

    with torch.no_grad():
        k = int(lite0(photos[:1]).argmax())
    rows = transfer_to(photos[:1], [k], ["efficientnet_lite1"], source=lite0)
    assert list(rows[0]) == ["efficientnet_lite1"] and rows[0]["efficientnet_lite1"]["top5"]
    with pytest.raises(RepscopeError, match="made the images"):
        transfer_to(photos[:1], [k], ["efficientnet_lite0"], source=lite0)  # same weights, loaded anew


def test_cli_maximize_transfer_to_records_rank_of_the_saved_image(tmp_path, capsys):
    """``--transfer-to``: per item, lite1's rank of the class on the PNG written, recomputed here by hand."""
    import json

    from repscope.cli import main
    from repscope.images import load_images

    out = tmp_path / "out"
    code = main(["maximize", "--layer", "logits", "--unit", "207", "--iters", "2", "--transfer-to",
                 "efficientnet_lite1", "--out", str(out), "--quiet"])
    assert code == 0
    item = json.loads((out / "result.json").read_text())["items"]["207"]
    got = item["transfer"]["efficientnet_lite1"]
    image, _ = load_images([str(out / item["file"])])
    lite1 = models.load("efficientnet_lite1")
    with torch.no_grad():
        logits = lite1(torch.nn.functional.interpolate(image, size=(240, 240), mode="bilinear", align_corners=False))
    assert got["rank"] == 1 + int((logits[0] > logits[0, 207]).sum())
    assert got["top5"] == (got["rank"] <= 5) and got["top1"] == (got["rank"] == 1)
    code = main(["maximize", "--layer", "blocks.4", "--unit", "1", "--transfer-to", "efficientnet_lite1",
                 "--out", str(tmp_path / "other")])
    assert code == 2 and "--layer logits" in capsys.readouterr().err and not (tmp_path / "other").exists()
