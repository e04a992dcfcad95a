"""Equivariance: exact constructed cases, invariants, data splits, ψ hygiene, and EfficientNet-Lite0 vflip."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repscope import equivariance as eq
from repscope.crops import Crops, crop_data
from repscope.equivariance import equivariance, equivariance_layers
from repscope.layers import rest_of_network
from repscope.errors import ImageError, ShapeError
from repscope.layers import Representation
from repscope.models import wrap


def _sources(k, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [F.interpolate(torch.rand(1, 3, size // 4, size // 4, generator=g), size=(size, size), mode="bilinear",
                          align_corners=False)[0] for _ in range(k)]


@pytest.fixture(scope="module")
def streams():
    src = _sources(6)
    return Crops(src[:4], 24, 33, seed=1, batch_size=8), Crops(src[4:], 12, 33, seed=2, batch_size=8)


def _mirror_pair_net():
    """conv (filters mirror images of each other in pairs, equal biases) -> ReLU -> pool -> linear."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight[1::2] = conv.weight[0::2].flip(-1)
        conv.bias[1::2] = conv.bias[0::2]
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def test_mirror_pair_filters_are_exactly_hflip_equivariant_by_a_permutation(streams):
    fit, test = streams
    rows = equivariance_layers(_mirror_pair_net(), "hflip", ["0", "1"], fit=fit, test=test)
    for row in rows:
        assert row.error["permutation"] < 1e-6 and row.error["learned"] < 1e-6
        assert row.error["invariant"] > 0.1 and row.error["warp"] > 0.1  # not trivially invariant
        assert row.permutation == [1, 0, 3, 2, 5, 4, 7, 6]
        assert row.agreement["permutation"] == 1.0 and row.agreement["learned"] == 1.0
        assert row.stride == 2 and row.n_fit == 24 and row.n_test == 12
    vflip = equivariance_layers(_mirror_pair_net(), "vflip", ["0"], fit=fit, test=test, agreement=False)[0]
    assert vflip.error["permutation"] > 0.1 and vflip.agreement is None  # the pairs are left-right mirrors only


@pytest.mark.parametrize("name", ["hflip", "vflip", "rot90", "rot180"])
def test_pooled_features_are_invariant(streams, name):
    """Global average pooling (vectors, g' = identity) is exactly invariant to flips and quarter turns."""
    fit, test = streams
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    row = equivariance_layers(net, name, ["1"], fit=fit, test=test, agreement=False)[0]
    assert row.shape == (3,) and row.error["invariant"] < 1e-12 and row.error["learned"] < 1e-6


def test_identity_transform_and_identity_features(streams):
    fit, test = streams
    net = nn.Sequential(nn.Identity())
    row = equivariance_layers(net, "identity", ["0"], fit=fit, test=test, agreement=False)[0]
    assert max(row.error.values()) < 1e-6 and row.permutation == [0, 1, 2]
    # identity features under a flip: the warp is exact, invariance is not
    row = equivariance_layers(net, "vflip", ["0"], fit=fit, test=test, agreement=False)[0]
    assert row.error["warp"] < 1e-12 and row.error["invariant"] > 0.01


def test_shift_goes_through_the_stride(streams):
    """4×4 average pooling: a shift by (8, 4) px is a shift by (2, 1) cells; exact on valid cells."""
    fit, test = streams
    net = nn.Sequential(nn.AvgPool2d(4))
    fit32, test32 = (Crops(s.sources, len(s), 32, seed=s.seed, batch_size=8) for s in (fit, test))
    row = equivariance_layers(net, "shift:8,4", ["0"], fit=fit32, test=test32, agreement=False)[0]
    assert row.stride == 4 and row.error["warp"] < 1e-12 and row.error["invariant"] > 0.01


def test_offsets_are_measured_from_the_receptive_field(streams):
    """TensorFlow 'same' padding on an even input (pad right/bottom, 3×3 stride 2): cell u sees pixels 2u..2u+2."""
    fit, test = (Crops(s.sources, 8, 32, seed=s.seed, batch_size=8) for s in streams)
    net = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, stride=2))
    row = equivariance_layers(net, "hflip", ["1"], fit=fit, test=test, agreement=False)[0]
    assert row.offset == (1.5, 1.5) and row.stride == 2  # centred would be 1.0: half a pixel off
    centred = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1))
    fit33, test33 = (Crops(s.sources, 8, 33, seed=s.seed, batch_size=8) for s in streams)
    row = equivariance_layers(centred, "hflip", ["0"], fit=fit33, test=test33, agreement=False)[0]
    assert row.offset == (0.5, 0.5)  # = (33 − 2·16) / 2: centred
    wide = equivariance_layers(nn.Sequential(nn.AdaptiveAvgPool2d(3)), "hflip", ["0"], fit=fit33, test=test33,
                               agreement=False)[0]
    assert wide.offset is None and wide.stride == 11  # clipped receptive fields: centred, stride 33 / 3
    assert wide.error["warp"] < 1e-12  # a flip of the 3×3 pooled map is exact


def test_spatial_kernel_recovers_a_neighbour_map(streams):
    """Φ = (x one pixel right, x one pixel left): under rot90 M_g needs diagonal taps: 3×3 is exact, 1×1 not."""
    fit, test = streams
    conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[c, c, 1, 2] = conv.weight[3 + c, c, 1, 0] = 1.0
    net = nn.Sequential(conv)
    k3 = equivariance_layers(net, "rot90", ["0"], fit=fit, test=test, kernel=3, margin=2, agreement=False)[0]
    k1 = equivariance_layers(net, "rot90", ["0"], fit=fit, test=test, kernel=1, margin=2, agreement=False)[0]
    assert k3.offset == (0.5, 0.5) and k3.error["learned"] < 1e-6 < 0.01 < k1.error["learned"]
    # one-sided: Φ(x)(p) = x(p + 1 column) has its receptive field 1 px right, and g' accounts for it
    shifted = nn.Conv2d(3, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        shifted.weight.zero_()
        for c in range(3):
            shifted.weight[c, c, 1, 2] = 1.0
    row = equivariance_layers(nn.Sequential(shifted), "hflip", ["0"], fit=fit, test=test, margin=2,
                              agreement=False)[0]
    assert row.offset == (0.5, 1.5) and row.error["warp"] < 1e-12


def test_rest_of_network_is_exact_and_leaves_no_hook():
    net = _mirror_pair_net()
    x = torch.rand(2, 3, 17, 17)
    psi = rest_of_network(net, "1")
    assert torch.allclose(psi(x, torch.relu(net[0](x))), net(x))
    assert torch.allclose(psi(x, torch.zeros(2, 8, 9, 9)), net[4](torch.zeros(2, 8)))
    with pytest.raises(RuntimeError):
        psi(x, torch.zeros(2, 5, 9, 9))  # wrong width: the linear layer fails inside the hook's forward
    assert not any(m._forward_hooks for m in net.modules())
    assert torch.equal(rest_of_network(net, "logits")(x, net(x)), net(x))


def test_single_representation_equals_the_multi_layer_engine(streams):
    fit, test = streams
    model = wrap(_mirror_pair_net(), input_size=33)
    single = equivariance(Representation(model, "0"), "rot90", fit=fit, test=test)
    multi = equivariance_layers(model, "rot90", ["0"], fit=fit, test=test)[0]
    assert single.error == pytest.approx(multi.error, abs=1e-12) and single.agreement == multi.agreement
    bare = equivariance(lambda x: F.avg_pool2d(x, 3), "hflip", fit=fit, test=test)  # any callable, no ψ
    assert bare.agreement is None and bare.stride == 3 and bare.error["warp"] < 1e-12


def test_crops_are_seeded_counted_and_split_by_photo(tmp_path):
    from repscope.images import save_image

    for i, img in enumerate(_sources(5, size=48)):
        save_image(img, tmp_path / f"p{i}.png")
    fit, test = crop_data(str(tmp_path), n_fit=10, n_test=7, size=17, seed=3, batch_size=4, held_out=0.4)
    assert not set(fit.sources) & set(test.sources) and len(fit.sources) + len(test.sources) == 5
    batches = list(fit)
    assert sum(len(b) for b, _ in batches) == 10 and batches[0][0].shape == (4, 3, 17, 17)
    again = list(fit)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert sum(len(b) for b, _ in test) == 7
    owners = torch.cat([o for _, o in batches])
    assert owners.tolist() == sorted(owners.tolist()) and 0.0 <= float(batches[0][0].min()) <= 1.0
    with pytest.raises(ImageError):
        crop_data([str(tmp_path / "p0.png")])


def test_refuses_wide_spatial_maps_and_kernel_on_vectors(streams):
    fit, test = streams
    with pytest.raises(ShapeError):
        equivariance_layers(nn.Sequential(nn.Conv2d(3, 500, 1)), "hflip", ["0"], fit=fit, test=test, kernel=3)
    with pytest.raises(ShapeError):
        equivariance_layers(nn.Sequential(nn.Flatten()), "hflip", ["0"], fit=fit, test=test, kernel=3)


LITE0_LAYERS = ["conv_stem", "blocks.0", "blocks.1"]


@pytest.fixture(scope="module")
def lite0_vflip():
    from repscope import models

    model = models.load("efficientnet_lite0")
    fit, test = crop_data(n_fit=24, n_test=12, size=129, seed=0, batch_size=12)
    return equivariance_layers(model, "vflip", LITE0_LAYERS, fit=fit, test=test)


def test_lite0_vflip_early_layers(lite0_vflip):
    """learned < warp < invariant at early layers; compensation does not lose agreement."""
    for row in lite0_vflip:
        print(row.layer, row.error, row.agreement)
        e, a = row.error, row.agreement
        assert e["learned"] < e["warp"] < e["invariant"], row.layer
        assert a["learned"] >= a["uncompensated"], row.layer
        assert a["invariant"] == a["uncompensated"]
    stem = lite0_vflip[0]
    assert stem.error["learned"] < 1e-3 and stem.agreement["learned"] == 1.0  # a linear layer of 32 > 27 filters


def test_cli_writes_table_plot_and_config(tmp_path):
    import json

    from repscope.cli import main

    out = tmp_path / "eq"
    status = main(["equivariance", "--model", "hog:dalal-triggs,orientations=8,cell=8", "--transform", "hflip",
                   "--fit-crops", "8", "--test", "4", "--size", "32", "--batch-size", "4", "--out", str(out), "--quiet"])
    assert status == 0
    result = json.loads((out / "result.json").read_text())
    assert [r["layer"] for r in result["layers"]] == ["logits"] and result["layers"][0]["agreement"] is None
    assert set(result["layers"][0]["error"]) == set(eq.VARIANTS) and result["transform"] == "hflip"
    assert result["layers"][0]["stride"] == 8 and result["size"] == 32
    assert (out / "equivariance.png").read_bytes()[:4] == b"\x89PNG" and (out / "config.json").exists()
    assert main(["equivariance", "--transform", "flip", "--out", str(tmp_path / "bad")]) == 2


def test_cli_plot_and_table_with_agreement(lite0_vflip, tmp_path):
    from repscope.cli.equivariance import plot, summary

    path = plot(lite0_vflip, tmp_path / "p.png", title="lite0 vflip")
    assert path.read_bytes()[:4] == b"\x89PNG"
    lines = summary(lite0_vflip)
    assert len(lines) == 1 + len(LITE0_LAYERS) and "agr:uncom" in lines[0] and lines[1].startswith("conv_stem")


@pytest.fixture(scope="module")
def hog_streams():
    return crop_data(n_fit=40, n_test=16, size=64, seed=0, batch_size=16)


def test_hog_dalal_triggs_8_bins_rot90_is_a_bin_permutation(hog_streams):
    """8 unsigned bins of 22.5°: a quarter turn moves every bin by 4 and the block cells by a rotation."""
    from repscope.hog import hog_from_name

    fit, test = hog_streams
    phi = hog_from_name("hog:dalal-triggs,orientations=8,cell=8")
    rot90 = equivariance(phi, "rot90", fit=fit, test=test, margin=1)
    rot45 = equivariance(phi, "rot:45", fit=fit, test=test, margin=1)
    assert rot90.stride == 8 and rot90.agreement is None
    assert rot90.error["permutation"] < 0.05 and rot90.error["learned"] < 0.05 and rot90.error["invariant"] > 0.5
    assert rot45.error["permutation"] > 5 * max(rot90.error["permutation"], 0.02)
    assert rot45.error["learned"] < 0.5 * rot45.error["invariant"]  # the learned map cuts the invariant error
    # the permutation found: orientation bin o of block cell (i, j) comes from bin (o ± 4) mod 8 of a rotated cell
    perm = torch.tensor(rot90.permutation)
    assert set(((perm % 8 - torch.arange(72) % 8) % 8).tolist()) == {4}


def test_hog_uoctti_9_bins_rot90_is_not_a_permutation(hog_streams):
    """UoCTTI's 18 directed / 9 undirected bins of 20°: 90° is 4.5 bins; the learned map beats permutations."""
    from repscope.hog import hog_from_name

    fit, test = hog_streams
    row = equivariance(hog_from_name("hog:uoctti"), "rot90", fit=fit, test=test, margin=1)
    assert row.error["permutation"] > 0.05 and row.error["learned"] < 0.6 * row.error["permutation"]
    eight = equivariance(hog_from_name("hog:uoctti,orientations=8"), "rot90", fit=fit, test=test, margin=1)
    assert eight.error["permutation"] < 0.05  # with 8 bins (16 directed) it is one again


def test_cli_default_layers_open_sequential_stages():
    from repscope.cli.equivariance import default_layers

    net = nn.Sequential()
    net.add_module("stem", nn.Conv2d(3, 4, 3))
    net.add_module("blocks", nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3)))
    net.add_module("head", nn.Flatten())
    assert default_layers(net) == ["stem", "blocks.0", "blocks.1"]
    assert default_layers(nn.Identity()) == ["logits"]  # a bare operator (HOG): its output


def test_labelled_folder_gives_accuracy_against_labels(tmp_path):
    from PIL import Image

    from repscope import images, models

    for folder, sample in (("285", "chelsea"), ("285", "cat"), ("espresso", "coffee"), ("Egyptian_cat", "chelsea")):
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.fromarray(images.to_uint8(images.load_image(f"sample:{sample}"))).save(tmp_path / folder / f"{sample}.png")
    fit, test = crop_data(str(tmp_path), n_fit=6, n_test=4, size=65)
    assert sorted(fit.labels + test.labels) == [285, 285, 285, 967]
    model = models.load("efficientnet_lite0")
    (row,) = equivariance_layers(model, "hflip", ["blocks.0"], fit=fit, test=test)
    truth, predicted = [], []
    with torch.no_grad():
        for x, owners in test:
            truth += [test.labels[int(o)] for o in owners]
            predicted += model(x).argmax(1).tolist()
    expected = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
    assert row.accuracy["original"] == pytest.approx(expected)
    assert set(row.accuracy) == {"original", "uncompensated", "warp", "permutation", "learned"}
    assert all(0 <= v <= 1 for v in row.accuracy.values())


def test_unknown_class_folder_is_named(tmp_path):
    (tmp_path / "not_a_class").mkdir()
    with pytest.raises(ImageError, match="closest"):
        crop_data(str(tmp_path), n_fit=2, n_test=2)


def test_channel_map_as_a_convolution_equals_its_rows_form():
    """The fitted W is a k×k conv weight: applying it to a map equals the stacked-neighbour rows product."""
    from repscope.channel_maps import ChannelMap
    from repscope.regression import stack_neighbours, to_rows

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)
    rows_solution = torch.randn(3, 4 * 9, generator=g, dtype=torch.float64)
    w = ChannelMap.from_rows(rows_solution, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), kernel=3)
    assert w.weight.shape == (3, 4, 3, 3) and w.kernel == 3
    by_rows = w.on_rows(to_rows(stack_neighbours(feats, 3)))
    torch.testing.assert_close(to_rows(w(feats)), by_rows)
    vectors = torch.randn(7, 4, generator=g, dtype=torch.float64)  # vectors: a linear map
    v = ChannelMap.from_rows(rows_solution[:, :4], None, kernel=1)
    torch.testing.assert_close(v(vectors), vectors @ rows_solution[:, :4].T)


def test_a_different_fitter_plugs_into_the_two_passes(streams):
    """Swapping the fitted maps: identity W gives the learned error of the plain warp; ridge maps are the default."""
    from dataclasses import replace

    from repscope.channel_maps import ChannelMap

    fit, test = streams
    net = _mirror_pair_net()
    names = ["0"]

    def identity_fitter(name, layer):
        ridge = eq.ridge_maps(layer, 1, eq.DEFAULT_ALPHAS)
        eye = ChannelMap(torch.eye(8, dtype=torch.float64).reshape(8, 8, 1, 1), torch.zeros(8, dtype=torch.float64))
        return replace(ridge, learned=eye, learned_back=eye, lam=None)

    (swapped,) = equivariance_layers(net, "hflip", names, fit=fit, test=test, agreement=False, fitter=identity_fitter)
    (default,) = equivariance_layers(net, "hflip", names, fit=fit, test=test, agreement=False)
    assert swapped.error["learned"] == pytest.approx(swapped.error["warp"], rel=1e-12) and swapped.lam is None
    assert default.error["learned"] < 1e-6 < 0.1 < swapped.error["learned"]
    assert swapped.error["permutation"] == default.error["permutation"]
