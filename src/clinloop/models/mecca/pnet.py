"""P-Net-style networks with dilated convolutions (mecca.txt §3; DeepIGeoS's P-Net).

:class:`PolicyValueNet` is the segmentation network S: a shared trunk of three
blocks, then a policy head and a value head of two blocks each; every block is
two dilated 3×3 (3-D: 3×3×3) convolutions with ReLU. Per agent the policy head
gives logits over the |A| = 6 actions and the value head the state value V(s).

CPU-sized deviations: width 16 instead of P-Net's 64, and an optional
``downsample`` factor: the convolutions run on an average-pooled grid and their
outputs are upsampled (nearest) back to full resolution, so agents remain the
individual pixels/voxels. 2-D models use ``downsample=1``.

Shapes: input ``(B, C_in, *spatial)``; outputs ``(B, C_out, *spatial)`` at the
input size (any spatial size works: padding = dilation keeps the size).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv_cls(ndim: int):
    if ndim == 2:
        return nn.Conv2d
    if ndim == 3:
        return nn.Conv3d
    raise ValueError(f"ndim must be 2 or 3, got {ndim}")


class DilatedBlock(nn.Module):
    """Two dilated 3^ndim convolutions, each followed by ReLU."""

    def __init__(self, ndim: int, c_in: int, c_out: int, dilation: int):
        super().__init__()
        conv = _conv_cls(ndim)
        self.body = nn.Sequential(
            conv(c_in, c_out, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True),
            conv(c_out, c_out, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.body(x)


def _stack(ndim: int, c_in: int, width: int, dilations: Sequence[int]) -> nn.Sequential:
    blocks, c = [], c_in
    for d in dilations:
        blocks.append(DilatedBlock(ndim, c, width, d))
        c = width
    return nn.Sequential(*blocks)


class _Grid(nn.Module):
    """Run a body on a ``downsample``-times coarser grid; upsample outputs back."""

    def __init__(self, ndim: int, downsample: int):
        super().__init__()
        self.ndim, self.downsample = ndim, int(downsample)

    def down(self, x):
        if self.downsample == 1:
            return x
        pool = F.avg_pool2d if self.ndim == 2 else F.avg_pool3d
        return pool(x, self.downsample, ceil_mode=True)

    def up(self, y, size):
        if self.downsample == 1:
            return y
        return F.interpolate(y, size=size, mode="nearest")


def _check_input(x: torch.Tensor, ndim: int, c_in: int) -> None:
    if x.ndim != ndim + 2 or x.shape[1] != c_in:
        raise ValueError(f"expected input (B, {c_in}, {'H, W' if ndim == 2 else 'D, H, W'}), got {tuple(x.shape)}")


class PolicyValueNet(nn.Module):
    """S: state ``(B, 3, *spatial)`` → (policy logits ``(B, |A|, *spatial)``, value ``(B, 1, *spatial)``)."""

    def __init__(self, ndim: int = 2, in_channels: int = 3, n_actions: int = 6, width: int = 16,
                 trunk_dilations: Sequence[int] = (1, 2, 4), head_dilations: Sequence[int] = (8, 16),
                 downsample: int = 1):
        super().__init__()
        conv = _conv_cls(ndim)
        self.ndim, self.in_channels = ndim, in_channels
        self.grid = _Grid(ndim, downsample)
        self.trunk = _stack(ndim, in_channels, width, trunk_dilations)
        self.policy_head = nn.Sequential(_stack(ndim, width, width, head_dilations), conv(width, n_actions, 1))
        self.value_head = nn.Sequential(_stack(ndim, width, width, head_dilations), conv(width, 1, 1))

    def forward(self, state: torch.Tensor):
        _check_input(state, self.ndim, self.in_channels)
        size = state.shape[2:]
        f = self.trunk(self.grid.down(state))
        return self.grid.up(self.policy_head(f), size), self.grid.up(self.value_head(f), size)

    def greedy(self, state: torch.Tensor) -> torch.Tensor:
        """Inference: argmax action index ``(B, 1, *spatial)`` int64. Skips the value
        head and takes the argmax on the coarse grid before the (nearest) upsampling,
        which gives the same result as upsampling the logits first."""
        _check_input(state, self.ndim, self.in_channels)
        logits = self.policy_head(self.trunk(self.grid.down(state)))
        idx = logits.argmax(1, keepdim=True)
        if self.grid.downsample == 1:
            return idx
        return F.interpolate(idx.float(), size=state.shape[2:], mode="nearest").long()


class SegmentationNet(nn.Module):
    """A P-Net CNN with one output (logit map ``(B, 1, *spatial)``): the
    InterCNN-style baseline (input: image, previous probability, hint map) and the
    non-interactive CNN (input: image only). Same trunk + one two-block head."""

    def __init__(self, ndim: int = 2, in_channels: int = 3, width: int = 16,
                 trunk_dilations: Sequence[int] = (1, 2, 4), head_dilations: Sequence[int] = (8, 16),
                 downsample: int = 1):
        super().__init__()
        conv = _conv_cls(ndim)
        self.ndim, self.in_channels = ndim, in_channels
        self.grid = _Grid(ndim, downsample)
        self.trunk = _stack(ndim, in_channels, width, trunk_dilations)
        self.head = nn.Sequential(_stack(ndim, width, width, head_dilations), conv(width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.ndim, self.in_channels)
        return self.grid.up(self.head(self.trunk(self.grid.down(x))), x.shape[2:])
