"""Baselines of the MECCA comparison (mecca.txt §5.1), on the same P-Net backbone.

* ``interactive-cnn`` — InterCNN-style (Bredell et al. 2018): a CNN whose input is
  the image, its previous prediction and the hint map; each interaction step
  replaces the prediction with ``p^(t+1) = σ(f(b, p^(t), h^(t)))``. Trained
  supervised (BCE) on unrolled simulated interactions (see
  :mod:`clinloop.training.mecca`).
* ``mecca-unet`` (the protocol's ``unet``) — the non-interactive CNN: input the
  image only, the same prediction at every step.

Both start, like MECCA, from ``p^(0) = 0.5`` and an empty hint map.
"""
from __future__ import annotations

import torch

from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.mecca.pnet import SegmentationNet
from clinloop.models.mecca.unet import UNetSegNet


def build_interactive_cnn(cfg: MECCAConfig) -> SegmentationNet:
    """(b, p, h) → logit; ``(B, 3, *spatial)`` → ``(B, 1, *spatial)``."""
    return SegmentationNet(cfg.ndim, 3, cfg.width, cfg.trunk_dilations, cfg.head_dilations, cfg.downsample)


def build_unet(cfg: MECCAConfig, arch: str | None = None, width: int | None = None) -> torch.nn.Module:
    """b → logit; ``(B, 1, *spatial)`` → ``(B, 1, *spatial)`` (no interaction input): the P-Net of
    ``arch`` (default ``cfg.pnet_arch``; "unet": :class:`.unet.UNetSegNet`, which ignores
    ``downsample``) with ``width`` channels (default ``cfg.width``)."""
    arch, width = arch or cfg.pnet_arch, width or cfg.width
    if arch == "unet":
        return UNetSegNet(cfg.ndim, 1, width, cfg.unet_levels)
    return SegmentationNet(cfg.ndim, 1, width, cfg.trunk_dilations, cfg.head_dilations, cfg.downsample)


def cnn_step(net: SegmentationNet, image: torch.Tensor, p: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """One interaction step of either baseline → logits ``(B, 1, *spatial)``."""
    if net.in_channels == 1:
        return net(image)
    return net(torch.cat([image, p, hint], dim=1))
