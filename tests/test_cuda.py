"""CUDA paths agree with the CPU: model, pre-images, backprop rules, HOG, equivariance, the CLI.

Skipped where CUDA is not available (CI). Convolutions on CUDA use TF32 by default, so logits are
compared with a 1e-2 relative tolerance; optimisations are compared by their final numbers, not iterates.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import repscope.backprop as bp
from repscope import models, preimage
from repscope.cli import main
from repscope.crops import crop_data
from repscope.equivariance import equivariance
from repscope.hog import HOG
from repscope.layers import Representation

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def lite0_cuda() -> models.Model:
    return models.load("efficientnet_lite0", device="cuda")


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().norm())


def test_logits_and_classes_agree(lite0, lite0_cuda, photos):
    with torch.no_grad():
        cpu, gpu = lite0(photos), lite0_cuda(photos.cuda())
    assert gpu.device.type == "cuda"
    assert gpu.argmax(1).tolist() == cpu.argmax(1).tolist()
    assert cpu.argmax(1)[0] == 285
    assert _relative(gpu, cpu) < 1e-2


@pytest.mark.parametrize("layer", ["blocks.1", "blocks.4"])
def test_inversion_on_cuda_matches_cpu_numbers(lite0, lite0_cuda, photos, layer):
    x = photos[:2]
    cpu = preimage.invert(Representation(lite0, layer), x, iters=40)
    gpu = preimage.invert(Representation(lite0_cuda, layer), x.cuda(), iters=40)
    assert gpu.images01.device.type == "cuda" and gpu.images01.shape == (2, 3, 224, 224)
    assert 0 <= float(gpu.images01.min()) and float(gpu.images01.max()) <= 1
    err_cpu, err_gpu = cpu.metrics["error"], gpu.metrics["error"].cpu()
    assert torch.all(gpu.losses[-1] < 0.5 * gpu.losses[0])
    assert torch.allclose(err_gpu, err_cpu, rtol=0.15), (err_gpu, err_cpu)
    json.dumps(gpu.records())  # plain data, no CUDA tensors left in the records


def test_same_seed_same_preimage_on_cuda(lite0_cuda, photos):
    phi = Representation(lite0_cuda, "blocks.2")
    a = preimage.invert(phi, photos[:1].cuda(), iters=20).images01
    b = preimage.invert(phi, photos[:1].cuda(), iters=20).images01
    assert float((a - b).abs().max()) < 1e-3


def test_maximize_and_caricature_on_cuda(lite0_cuda, photos):
    phi = Representation(lite0_cuda, "blocks.4")
    res = preimage.maximize(phi, [3, 17], reference01=photos.cuda(), iters=60)
    assert torch.all(res.metrics["ratio"] > 1), res.metrics["ratio"]
    car = preimage.caricature(Representation(lite0_cuda, "blocks.2"), photos[:1].cuda(), iters=30)
    assert float(car.metrics["gain"][0]) > 1


@pytest.mark.parametrize("method", ["gradient", "deconvnet", "guided"])
def test_backprop_rules_agree_on_cuda(method):
    """AlexNet (ReLU and max-pooling) with random weights: the modified backward maps, CPU vs CUDA."""
    torch.manual_seed(0)
    net = models.load("torchvision:alexnet", random_init=True)
    x = torch.rand(2, 3, 224, 224)
    cpu = bp.saliency(net, x, [1, 7], method=method)
    gpu = bp.saliency(net.to("cuda"), x.cuda(), [1, 7], method=method)
    cos = F.cosine_similarity(gpu.cpu().flatten(1), cpu.flatten(1), dim=1)
    assert torch.all(cos > 0.99), cos


def test_backprop_on_the_real_model_agrees(lite0, lite0_cuda, photos):
    cpu = bp.saliency(lite0, photos[:2], method="guided")
    gpu = bp.saliency(lite0_cuda, photos[:2].cuda(), method="guided")
    cos = F.cosine_similarity(gpu.cpu().flatten(1), cpu.flatten(1), dim=1)
    assert torch.all(cos > 0.99), cos


@pytest.mark.parametrize("variant", ["uoctti", "dalal-triggs"])
@pytest.mark.parametrize("compiled", [False, True])
def test_hog_and_its_gradient_agree_on_cuda(photos, variant, compiled):
    x = photos[:2].double()
    phi_cpu, phi_gpu = HOG(variant), HOG(variant, compiled=compiled)
    xc, xg = x.clone().requires_grad_(True), x.cuda().requires_grad_(True)
    fc, fg = phi_cpu(xc), phi_gpu(xg)
    assert fg.device.type == "cuda" and fg.shape == fc.shape
    assert torch.allclose(fg.cpu(), fc, atol=1e-9 if not compiled else 1e-6)
    (gc,) = torch.autograd.grad(fc.pow(2).sum(), xc)
    (gg,) = torch.autograd.grad(fg.pow(2).sum(), xg)
    # float64, yet ~6e-7 for Dalal-Triggs: its gradient rests on hard choices (bin, channel) at near-ties
    assert _relative(gg, gc) < 1e-5


def test_hog_inversion_on_cuda(photos):
    cpu = preimage.invert(HOG("uoctti"), photos[:1], iters=40)
    gpu = preimage.invert(HOG("uoctti"), photos[:1].cuda(), iters=40)
    assert gpu.images01.device.type == "cuda"
    assert abs(float(gpu.metrics["error"][0]) - float(cpu.metrics["error"][0])) < 0.03


def test_equivariance_on_cuda_matches_cpu(lite0, lite0_cuda):
    fit, test = crop_data(n_fit=32, n_test=16, size=65)
    cpu = equivariance(Representation(lite0, "blocks.2"), "hflip", fit=fit, test=test)
    gpu = equivariance(Representation(lite0_cuda, "blocks.2"), "hflip", fit=fit, test=test)
    assert gpu.error.keys() == cpu.error.keys()
    for k in cpu.error:
        assert abs(gpu.error[k] - cpu.error[k]) < 0.02, (k, gpu.error[k], cpu.error[k])
    assert abs(gpu.agreement["learned"] - cpu.agreement["learned"]) <= 0.07


def test_cli_invert_on_cuda_writes_results(tmp_path, capsys):
    out = tmp_path / "inv"
    code = main(["invert", "sample:chelsea", "--layer", "blocks.1", "--iters", "20", "--device", "cuda",
                 "--out", str(out), "--json", "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    (item,) = result["items"].values()
    assert 0 < item["error"] < 0.9 and item["loss_curve"][-1] < item["loss_curve"][0]
    assert json.loads((out / "config.json").read_text())["device_resolved"].startswith("cuda")
