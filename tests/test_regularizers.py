"""The natural-image priors: closed forms, an independent numpy reference, gradcheck, function == module."""

import numpy as np
import pytest
import torch

from repscope.errors import ShapeError
from repscope.preimage.regularizers import AlphaNorm, TotalVariation, alpha_norm, total_variation


def test_tv_of_a_horizontal_ramp_is_closed_form():
    h, w, a = 5, 7, 3.0
    x = (a * torch.arange(w, dtype=torch.float64)).expand(1, 3, h, w)
    # Δh = a except in the replicated last column, Δv = 0: per channel (W-1)/W · |a|^β
    assert total_variation(x, beta=2).item() == pytest.approx(3 * a**2 * (w - 1) / w)
    assert total_variation(x, beta=1).item() == pytest.approx(3 * a * (w - 1) / w, rel=1e-6)


def test_tv_matches_numpy_reference():
    x = torch.randn(2, 3, 6, 9, dtype=torch.float64)
    for beta in (1.0, 2.0, 1.5):
        ref = []
        for img in x.numpy():
            dh = np.diff(img, axis=2, append=img[:, :, -1:])
            dv = np.diff(img, axis=1, append=img[:, -1:, :])
            ref.append(((dh**2 + dv**2) ** (beta / 2)).sum(0).mean())
        np.testing.assert_allclose(total_variation(x, beta=beta).numpy(), ref, rtol=1e-6)


def test_alpha_norm_uses_the_colour_vector_norm():
    v = torch.tensor([3.0, 4.0, 12.0], dtype=torch.float64)  # ‖v‖ = 13
    x = v.view(1, 3, 1, 1).expand(2, 3, 4, 5)
    for alpha in (1.0, 2.0, 6.0):
        assert alpha_norm(x, alpha).tolist() == pytest.approx([13.0**alpha] * 2)


def test_constant_image_has_zero_tv_and_values_are_per_image():
    x = torch.stack([torch.full((3, 4, 4), 2.0), torch.randn(3, 4, 4)])
    tv = total_variation(x)
    assert tv[0] == 0 and tv[1] > 0
    assert total_variation(x[1:]).item() == pytest.approx(tv[1].item())


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_gradcheck(beta):
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: total_variation(t, beta), (x,))
    assert torch.autograd.gradcheck(lambda t: alpha_norm(t, 6.0), (x,))


def test_function_and_module_agree():
    x = torch.randn(3, 3, 8, 8)
    assert torch.equal(TotalVariation(1.0)(x), total_variation(x, 1.0))
    assert torch.equal(AlphaNorm(6.0)(x), alpha_norm(x, 6.0))


def test_natural_photo_is_about_one_under_the_paper_weights():
    pytest.importorskip("skimage")
    from skimage import data

    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1).double()[None]
    x = img - img.mean(dim=(2, 3), keepdim=True)
    sigma = 80.0
    # λ_α R_α and λ_TV R_TV are O(1) on a natural image (the papers' normalisation)
    assert 0.05 < (alpha_norm(x, 6) / sigma**6).item() < 20
    assert 0.05 < ((6.5 / sigma) ** 2 * total_variation(x, 2)).item() < 20


def test_bad_shapes_raise_repscope_errors():
    with pytest.raises(ShapeError):
        total_variation(torch.zeros(3, 4, 4))
    with pytest.raises(ShapeError):
        alpha_norm(torch.zeros(1, 3, 4, 4), alpha=0)
