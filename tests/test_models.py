"""The model zoo: real weights offline, preprocessing, safe checkpoints, clear errors."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torchvision

from repscope import images, models
from repscope.errors import CheckpointError, ModelError


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_lite_models_classify_sample_photos(name):
    model = models.load(name)
    size = model.preprocessing.input_size
    assert size == {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    batch, _ = images.load_images(["sample:chelsea", "sample:coffee"], size=size)
    with torch.no_grad():
        top1 = model(batch).argmax(dim=1).tolist()
    assert top1 == [285, 967]
    assert model.class_names[285] == "Egyptian cat" and model.class_names[967] == "espresso"


def test_lite_preprocessing_maps_unit_range_to_plus_minus_one(lite0):
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(lite0.preprocessing.normalize(x).flatten(), torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(lite0.preprocessing.denormalize(lite0.preprocessing.normalize(x)), x)
    assert not lite0.module.training


def test_wrap_user_module_uses_given_preprocessing():
    net = torch.nn.Conv2d(3, 2, 1)
    model = models.wrap(net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model(x), net((x - 0.5) / 0.25))
    assert models.as_model(net).preprocessing.mean == (0.0, 0.0, 0.0)


def test_unknown_model_names_closest():
    with pytest.raises(ModelError, match="closest: efficientnet_lite"):
        models.load("efficientnet_lite9")
    with pytest.raises(ModelError, match="closest: resnet"):
        models.load("torchvision:resnet19")


def test_torchvision_without_offline_weights_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ModelError) as err:
        models.load("torchvision:resnet18")
    message = str(err.value)
    assert "--weights" in message and str(tmp_path) in message and "\n" not in message


def test_torchvision_weights_from_cache_and_file(monkeypatch, tmp_path):
    reference = torchvision.models.resnet18()
    cache = tmp_path / "checkpoints"
    cache.mkdir()
    url_name = os.path.basename(torchvision.models.ResNet18_Weights.DEFAULT.url)
    torch.save(reference.state_dict(), cache / url_name)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    x = torch.rand(1, 3, 64, 64)
    reference.eval()
    from_cache = models.load("torchvision:resnet18")
    from_file = models.load("torchvision:resnet18", weights=cache / url_name)
    with torch.no_grad():
        expected = reference(from_cache.preprocessing.normalize(x))
        assert torch.allclose(from_cache(x), expected, atol=1e-6)
        assert torch.allclose(from_file(x), expected, atol=1e-6)
    assert from_cache.class_names is not None and len(from_cache.class_names) == 1000


def test_random_init_is_explicit():
    model = models.load("torchvision:alexnet", random_init=True)
    assert isinstance(model.module, torchvision.models.AlexNet)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/repscope-pwned",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = "/tmp/repscope-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv.weight": _Exploit()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        models.load("torchvision:alexnet", weights=path)
    assert not os.path.exists(marker)


def test_state_dict_with_missing_and_extra_keys_is_named(tmp_path):
    state = torchvision.models.alexnet().state_dict()
    state.pop("features.0.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        models.load("torchvision:alexnet", weights=path)
    assert "features.0.bias" in str(err.value) and "extra.weight" in str(err.value)


def test_wrapped_and_prefixed_checkpoints_load(tmp_path):
    reference = torchvision.models.alexnet().eval()
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}, "epoch": 3}, path)
    model = models.load("torchvision:alexnet", weights=path)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model.module(x), reference(x))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(torchvision.models.alexnet().state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        models.load("torchvision:alexnet", weights=path)


def _small_state():
    """SqueezeNet 1.1's state dict: 1.2M values, so checkpoint tests stay fast."""
    return torchvision.models.squeezenet1_1().state_dict()


def test_safetensors_is_detected_by_content_not_suffix(tmp_path):
    from safetensors.torch import save_file

    from repscope.checkpoints import checkpoint_format
    reference = torchvision.models.squeezenet1_1().eval()
    save_file(reference.state_dict(), tmp_path / "weights.pth")  # safetensors under a .pth name
    torch.save(reference.state_dict(), tmp_path / "zip.safetensors")
    torch.save(reference.state_dict(), tmp_path / "legacy.safetensors", _use_new_zipfile_serialization=False)
    assert [checkpoint_format(tmp_path / n) for n in ("weights.pth", "zip.safetensors", "legacy.safetensors")] == \
        ["safetensors", "zip", "pickle"]
    model = models.load("torchvision:squeezenet1_1", weights=tmp_path / "weights.pth")
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model.module(x), reference(x))
    for name in ("zip.safetensors", "legacy.safetensors"):
        with pytest.raises(CheckpointError, match="is named .safetensors but is not a safetensors file"):
            models.load("torchvision:squeezenet1_1", weights=tmp_path / name)


def test_non_finite_weights_are_refused_naming_the_keys(tmp_path):
    state = _small_state()
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    state["classifier.1.bias"][3] = float("-inf")
    torch.save(state, tmp_path / "diverged.pth")
    with pytest.raises(CheckpointError) as err:
        models.load("torchvision:squeezenet1_1", weights=tmp_path / "diverged.pth")
    message = str(err.value)
    assert "NaN or Inf in 2 tensors (features.0.weight, classifier.1.bias)" in message and "\n" not in message


@pytest.mark.parametrize("kind, fragment", [("meta", "1 meta tensors without values (features.0.bias)"),
                                            ("sparse", "1 sparse tensors (classifier.1.weight)")])
def test_meta_and_sparse_tensors_are_refused(tmp_path, kind, fragment):
    state = _small_state()
    if kind == "meta":
        state["features.0.bias"] = torch.empty(64, device="meta")
    else:
        state["classifier.1.weight"] = state["classifier.1.weight"].to_sparse()
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        models.load("torchvision:squeezenet1_1", weights=tmp_path / "odd.pth")


def test_dtype_casts_are_reported_on_one_line(tmp_path, caplog):
    reference = torchvision.models.squeezenet1_1().eval()
    torch.save({k: v.half() for k, v in reference.state_dict().items()}, tmp_path / "half.pth")
    with caplog.at_level("WARNING", logger="repscope.checkpoints"):
        model = models.load("torchvision:squeezenet1_1", weights=tmp_path / "half.pth")
    (record,) = caplog.records
    assert "52 float16 -> float32 (features.0.weight, features.0.bias, features.3.squeeze.weight (+49 more))" \
        in record.message
    assert model.module.features[0].weight.dtype == torch.float32
    assert torch.equal(model.module.features[0].weight, reference.features[0].weight.half().float())
    caplog.clear()
    torch.save(reference.state_dict(), tmp_path / "same.pth")
    with caplog.at_level("WARNING", logger="repscope.checkpoints"):
        models.load("torchvision:squeezenet1_1", weights=tmp_path / "same.pth")
    assert caplog.records == []


def test_checkpoint_that_is_not_a_regular_file(tmp_path):
    for path in ("/dev/zero", tmp_path):
        with pytest.raises(CheckpointError, match="not a regular file"):
            models.load("torchvision:squeezenet1_1", weights=path)


@pytest.fixture
def no_network(monkeypatch):
    """Every socket and every torch hub download raises: a test passes only if nothing is fetched."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: refuse())


DETECTION_AND_SEGMENTATION = ["fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large",
                              "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "retinanet_resnet50_fpn"]


@pytest.mark.parametrize("arch", DETECTION_AND_SEGMENTATION)
def test_detection_and_segmentation_build_without_any_download(no_network, arch):
    with pytest.raises(OSError, match="network blocked"):  # what torchvision itself would do
        torchvision.models.get_model(arch, weights=None)
    model = models.load(f"torchvision:{arch}", random_init=True)
    assert sum(p.numel() for p in model.module.parameters()) > 1e6 and not model.module.training


def test_every_torchvision_builder_with_a_backbone_gets_no_backbone_weights():
    import inspect
    with_backbone = [a for a in torchvision.models.list_models()
                     if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(a)).parameters]
    assert len(with_backbone) > 10
    assert all(models._no_download_kwargs(a) == {"weights_backbone": None} for a in with_backbone)


def test_timm_hf_hub_is_refused_at_once(no_network):
    import time
    start = time.perf_counter()
    for name in ("timm:hf-hub:timm/resnet18.a1_in1k", "timm:hf_hub:org/model"):
        with pytest.raises(ModelError, match="needs the network; repscope never downloads"):
            models.load(name, random_init=True)
    assert time.perf_counter() - start < 1.0
    assert models.load("timm:resnet18", random_init=True).preprocessing.input_size == 224
