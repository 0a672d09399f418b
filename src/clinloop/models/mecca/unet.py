"""An encoder-decoder segmenter for MECCA's P-Net role (``MECCAConfig.pnet_arch`` "unet").

mecca.txt's P-Net (DeepIGeoS) keeps the full resolution and widens its receptive field by
dilation. On the atrium our CPU-sized version of it (width 16, no normalisation) stops at
whole-volume Dice 0.80 (0.82 refined) with 24 training volumes, where a U-Net/V-Net with
normalisation reaches about 0.86 from 16 labelled volumes of the same challenge (UA-MT,
Yu et al. 2019, its supervised baseline). **Deviation from the paper**, off by default: the
initial segmentation p^(0) may come from this network instead; the interactive networks
(policy, C, interactive-cnn) stay P-Nets. It is a plain 3-D U-Net (Ronneberger et al. 2015;
Çiçek et al. 2016): per level two 3^ndim convolutions, each with instance normalisation and
LeakyReLU; max-pooling down, transposed convolutions up, skip connections by concatenation.

Shapes: ``(B, C_in, *spatial)`` → ``(B, 1, *spatial)`` logits at the input size; any size works
(the input is padded by replication to a multiple of 2^(levels-1), at least twice that, and the
output cut back).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _layers(ndim: int):
    if ndim == 2:
        return nn.Conv2d, nn.InstanceNorm2d, nn.MaxPool2d, nn.ConvTranspose2d
    if ndim == 3:
        return nn.Conv3d, nn.InstanceNorm3d, nn.MaxPool3d, nn.ConvTranspose3d
    raise ValueError(f"ndim must be 2 or 3, got {ndim}")


def _double_conv(ndim: int, c_in: int, c_out: int) -> nn.Sequential:
    conv, norm, _, _ = _layers(ndim)
    return nn.Sequential(
        conv(c_in, c_out, 3, padding=1), norm(c_out, affine=True), nn.LeakyReLU(0.01, inplace=True),
        conv(c_out, c_out, 3, padding=1), norm(c_out, affine=True), nn.LeakyReLU(0.01, inplace=True),
    )


class UNetSegNet(nn.Module):
    """U-Net with ``levels`` resolutions of ``width · 2^i`` channels and one logit output.

    Same interface as :class:`clinloop.models.mecca.pnet.SegmentationNet` (``in_channels``,
    ``ndim``, ``forward``), so the P-Net's inference (:mod:`.pnet_inference`) runs either."""

    def __init__(self, ndim: int = 3, in_channels: int = 1, width: int = 16, levels: int = 4):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        _, _, pool, up = _layers(ndim)
        self.ndim, self.in_channels, self.levels = ndim, in_channels, levels
        chans = [width * 2 ** i for i in range(levels)]
        self.down = nn.ModuleList()
        c = in_channels
        for ch in chans:
            self.down.append(_double_conv(ndim, c, ch))
            c = ch
        self.pool = pool(2)
        self.up = nn.ModuleList(up(chans[i + 1], chans[i], 2, stride=2) for i in range(levels - 1))
        self.dec = nn.ModuleList(_double_conv(ndim, 2 * chans[i], chans[i]) for i in range(levels - 1))
        self.out = _layers(ndim)[0](chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, *{self.ndim} spatial), got {tuple(x.shape)}")
        size = x.shape[2:]
        m = 2 ** (self.levels - 1)
        pad = []  # to a multiple of m, and at least 2m: instance norm needs > 1 voxel at the coarsest level
        for s in reversed(size):
            pad += [0, max(s + (-s) % m, 2 * m) - s]
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.levels - 1)):
            x = self.dec[i](torch.cat([self.up[i](x), skips.pop()], dim=1))
        y = self.out(x)
        return y[(...,) + tuple(slice(0, s) for s in size)]
