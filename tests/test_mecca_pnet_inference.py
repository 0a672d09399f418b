"""P-Net inference refinements: flip averaging and the largest connected component."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.mecca.model import MECCAModel, build_networks
from clinloop.models.mecca.pnet_inference import (flip_average, keep_largest_component, largest_component,
                                                  pnet_probability)


def test_largest_component_keeps_the_biggest_face_connected_object():
    m = np.zeros((6, 8, 8), bool)
    m[1:4, 1:4, 1:4] = True  # 27 voxels
    m[5, 6, 6] = True  # an island
    m[4, 4, 4] = True  # touches the cube only at a corner: another component (face connectivity)
    got = largest_component(m)
    assert got.sum() == 27 and got[2, 2, 2] and not got[5, 6, 6] and not got[4, 4, 4]
    lab, n = ndimage.label(m)  # reference: scipy's own count of components
    assert n == 3
    assert not largest_component(np.zeros((3, 3), bool)).any()


def test_keep_largest_component_zeroes_only_the_islands():
    p = torch.full((2, 1, 10, 10), 0.2)
    p[0, 0, 1:5, 1:5] = 0.9
    p[0, 0, 8, 8] = 0.7  # island of image 0
    p[1, 0, 7:9, 7:9] = 0.8  # image 1: one object only
    out = keep_largest_component(p)
    assert out[0, 0, 8, 8] == 0 and out[0, 0, 2, 2] == pytest.approx(0.9) and out[0, 0, 0, 0] == pytest.approx(0.2)
    torch.testing.assert_close(out[1], p[1])


def test_flip_average_is_the_mean_over_the_flips_of_each_axis():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)
    w = torch.linspace(0, 1, 12).reshape(1, 1, 3, 4)  # not flip-equivariant: fn(x) = x * w
    got = flip_average(lambda t: t * w, x)
    want = (x * w + x * torch.flip(w, (2,)) + x * torch.flip(w, (3,))) / 3
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(flip_average(lambda t: t * 2, x), x * 2)  # equivariant fn: unchanged


def test_the_pnet_model_and_p0_use_the_configured_refinements():
    torch.manual_seed(0)
    cfg = MECCAConfig(method="mecca-unet", ndim=2, width=4, head_dilations=(2, 4), flip_average=True,
                      one_component=True)
    m = MECCAModel(cfg, build_networks(cfg))
    x = torch.randn(1, 1, 16, 16)
    p, _ = m.refine(x, torch.full_like(x, 0.5), torch.zeros_like(x))
    torch.testing.assert_close(p, pnet_probability(m.nets["net"], x, True, True))
    plain = torch.sigmoid(m.nets["net"](x))
    assert not torch.allclose(p, plain)
    icfg = MECCAConfig(method="interactive-cnn", ndim=2, width=4, head_dilations=(2, 4), init="pnet-mask",
                       init_width=4, one_component=True)
    im = MECCAModel(icfg, build_networks(icfg))

    class TwoBlobs(torch.nn.Module):  # a P-Net whose mask has a 9-pixel object and a 1-pixel island
        def forward(self, image):
            logits = torch.full_like(image, -5.0)
            logits[..., 2:5, 2:5] = 5.0
            logits[..., 12, 12] = 5.0
            return logits

    im.nets["init"] = TwoBlobs()
    p0 = im.initial(x)
    assert p0.sum() == 9 and p0[0, 0, 3, 3] == 1 and p0[0, 0, 12, 12] == 0


def test_refinements_need_a_pnet():
    with pytest.raises(ValueError, match="P-Net start"):
        MECCAConfig(method="mecca", flip_average=True)
