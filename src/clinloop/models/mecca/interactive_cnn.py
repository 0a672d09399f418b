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


def build_interactive_cnn(cfg: MECCAConfig) -> SegmentationNet:
    """(b, p, h) → logit; ``(B, 3, *spatial)`` → ``(B, 1, *spatial)``."""
    return SegmentationNet(cfg.ndim, 3, cfg.width, cfg.trunk_dilations, cfg.head_dilations, cfg.downsample)


def build_unet(cfg: MECCAConfig) -> SegmentationNet:
    """b → logit; ``(B, 1, *spatial)`` → ``(B, 1, *spatial)`` (no interaction input)."""
    return SegmentationNet(cfg.ndim, 1, cfg.width, cfg.trunk_dilations, cfg.head_dilations, cfg.downsample)


def cnn_step(net: SegmentationNet, image: torch.Tensor, p: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """One interaction step of either baseline → logits ``(B, 1, *spatial)``."""
    if net.in_channels == 1:
        return net(image)
    return net(torch.cat([image, p, hint], dim=1))
