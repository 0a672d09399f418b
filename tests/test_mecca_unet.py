"""The U-Net P-Net (MECCAConfig.pnet_arch "unet"): shapes, padding, config checks, a learning step."""
import pytest
import torch

from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.mecca.interactive_cnn import build_unet
from clinloop.models.mecca.pnet import SegmentationNet
from clinloop.models.mecca.unet import UNetSegNet


@pytest.mark.parametrize("shape", [(1, 1, 13, 17), (2, 1, 7, 9, 30), (2, 1, 3, 3, 3)])
def test_any_input_size_gives_logits_of_that_size(shape):
    net = UNetSegNet(len(shape) - 2, 1, 4, levels=3)
    assert net(torch.randn(shape)).shape == (shape[0], 1) + shape[2:]


def test_an_odd_size_is_padded_at_its_end_by_replication_and_cut_back():
    """15×13 runs as the replicate-padded 16×16 (levels 3: multiples of 4), cut to its first
    15×13 voxels; a size already a multiple runs unpadded."""
    torch.manual_seed(0)
    net = UNetSegNet(2, 1, 4, levels=3).eval()
    x = torch.randn(1, 1, 15, 13)
    with torch.no_grad():
        padded = net(torch.nn.functional.pad(x, (0, 3, 0, 1), mode="replicate"))
        torch.testing.assert_close(net(x), padded[..., :15, :13])
        assert not torch.allclose(net(x), net(torch.nn.functional.pad(x, (3, 0, 1, 0), mode="replicate"))[..., 1:, 3:])


def test_build_unet_follows_the_config():
    cfg = MECCAConfig(method="mecca-unet", ndim=3, width=4, pnet_arch="unet", unet_levels=2)
    assert isinstance(build_unet(cfg), UNetSegNet)
    assert isinstance(build_unet(MECCAConfig(method="mecca-unet", ndim=3, width=4)), SegmentationNet)
    assert build_unet(cfg).down[0][0].out_channels == 4


def test_the_config_refuses_unknown_or_misplaced_architectures():
    with pytest.raises(ValueError, match="pnet_arch must be one of"):
        MECCAConfig(method="mecca-unet", pnet_arch="vnet")
    with pytest.raises(ValueError, match="init_arch"):
        MECCAConfig(method="mecca", pnet_arch="unet")
    with pytest.raises(ValueError, match="unet_levels"):
        MECCAConfig(method="mecca-unet", pnet_arch="unet", unet_levels=0)


def test_a_few_steps_fit_a_blob():
    """The network can learn: 60 Adam steps on one image of a disc reach Dice > 0.9."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    y = (((yy - 12) ** 2 + (xx - 10) ** 2) < 36).float()[None, None]
    x = y * 2 - 1 + 0.3 * torch.randn_like(y)
    net = UNetSegNet(2, 1, 8, levels=3)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m = (net(x) > 0).float()
    assert 2 * (m * y).sum() / (m.sum() + y.sum()) > 0.9
