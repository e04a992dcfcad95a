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
