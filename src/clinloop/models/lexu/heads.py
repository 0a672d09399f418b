"""LEXU segmentation heads (§2.1 "Segmentation Heads") and head statistics.

Each head is one convolution mapping a decoder output to the segmentation
channels, followed by upsampling to the input size, so all ``N_p`` predictions
``M̂_j`` share one shape. The uncertainty heatmap ``Ĥ`` is the pixel-wise
variance across heads (LEXU §2.2, DGM).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class SegmentationHead(nn.Module):
    """1×1 conv → bilinear upsample. ``(B, c_in, h, w) -> (B, 1, H, W)`` logits."""

    def __init__(self, c_in: int, out_channels: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, out_channels, 1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        y = self.conv(x)
        if tuple(y.shape[-2:]) != tuple(size):
            y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False)
        return y


def head_variance(probs: torch.Tensor) -> torch.Tensor:
    """``Ĥ``: pixel-wise variance across predictions (population variance, ddof 0,
    as ``numpy.var``). ``probs (B, N_p, H, W) -> (B, H, W)``."""
    if probs.ndim < 3:
        raise ValueError(f"probs must be (B, N_p, *spatial), got {tuple(probs.shape)}")
    return probs.var(dim=1, unbiased=False)


def pairwise_agreement(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Mean pairwise Dice between binarised predictions: inter-layer agreement
    (LEXU §4.3) for heads, between-model agreement for ensembles.

    ``probs (B, S, H, W) -> (B,)``; a pair where both masks are empty counts as
    agreement 1; with ``S = 1`` the agreement is 1.
    """
    b, s = probs.shape[:2]
    m = (probs > threshold).float().reshape(b, s, -1)
    if s < 2:
        return torch.ones(b)
    inter = torch.einsum("bsn,btn->bst", m, m)
    size = m.sum(-1)
    denom = size[:, :, None] + size[:, None, :]
    dice = torch.where(denom > 0, 2 * inter / denom.clamp_min(1e-9), torch.ones_like(denom))
    iu = torch.triu_indices(s, s, 1)
    return dice[:, iu[0], iu[1]].mean(-1)
