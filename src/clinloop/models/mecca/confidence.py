"""Action-based confidence network C(s, a) and its loss (mecca.txt §4.1, Eq. 2–3).

``C(s, a)_i`` estimates the probability that agent ``i``'s action ``a`` moves its
probability toward its label. Design choice: instead of feeding ``a`` as an
input, :class:`ConfidenceNet` outputs ``C(s, a)`` for *every* ``a ∈ A`` at once
(``(B, |A|, *spatial)``, sigmoid), like a Q-network; ``C(s, a)`` is the channel of
``a`` and the symmetric term ``C(s, -a)`` is the mirrored channel, so Eq. 2 costs
one forward pass. Backbone: P-Net blocks (dilated 3×3 convolutions).

Eq. 3: ``g = 0 if a ⊕ y == 1 else 1`` where ``a ⊕ y`` is true when exactly one of
``a > 0``, ``y > 0`` holds — i.e. ``g = 1`` iff the action points toward the label.
Eq. 2: ``L = BCE(C(s, a), g) + BCE(C(s, -a), 1 - g)`` (the symmetric pair balances
the samples). We average over agents (the paper sums; a mean keeps the scale
independent of the image size).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clinloop.models.mecca.environment import N_ACTIONS, opposite_action
from clinloop.models.mecca.pnet import _Grid, _check_input, _conv_cls, _stack


class ConfidenceNet(nn.Module):
    """C: state ``(B, 3, *spatial)`` → logits of ``C(s, a)`` for all actions, ``(B, |A|, *spatial)``.

    Apply ``torch.sigmoid`` (or use :meth:`confidence`) for values in [0, 1]."""

    def __init__(self, ndim: int = 2, in_channels: int = 3, n_actions: int = N_ACTIONS, width: int = 16,
                 dilations: Sequence[int] = (1, 2, 4, 8), downsample: int = 1):
        super().__init__()
        self.ndim, self.in_channels = ndim, in_channels
        self.grid = _Grid(ndim, downsample)
        self.body = nn.Sequential(_stack(ndim, in_channels, width, dilations), _conv_cls(ndim)(width, n_actions, 1))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        _check_input(state, self.ndim, self.in_channels)
        return self.grid.up(self.body(self.grid.down(state)), state.shape[2:])

    def confidence(self, state: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``C(s, a)`` for action indices ``idx`` ``(B, 1, *spatial)`` → ``(B, 1, *spatial)`` in [0, 1]."""
        return torch.sigmoid(self(state).gather(1, idx))


def alignment_target(action_value: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``g = 0`` if exactly one of (a > 0, y > 0) holds, else 1 (float)."""
    xor = (action_value > 0) ^ (y > 0.5)
    return (~xor).float()


def symmetric_bce_from_logits(logit_a: torch.Tensor, logit_neg_a: torch.Tensor, g: torch.Tensor,
                              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2 with logits: ``BCE(σ(ℓ_a), g) + BCE(σ(ℓ_-a), 1 - g)``, mean over agents
    (optionally weighted by a 0/1 ``weight`` mask, e.g. labeled agents only)."""
    per = F.binary_cross_entropy_with_logits(logit_a, g, reduction="none") + \
        F.binary_cross_entropy_with_logits(logit_neg_a, 1.0 - g, reduction="none")
    if weight is None:
        return per.mean()
    return (per * weight).sum() / weight.sum().clamp_min(1.0)


def symmetric_bce(c_a: torch.Tensor, c_neg_a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Eq. 2 on confidences in (0, 1): ``BCE(c_a, g) + BCE(c_-a, 1 - g)``, mean over agents."""
    return F.binary_cross_entropy(c_a, g) + F.binary_cross_entropy(c_neg_a, 1.0 - g)


def confidence_loss(conf_logits: torch.Tensor, idx: torch.Tensor, action_value: torch.Tensor,
                    y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L_C (Eq. 2) for the actions ``idx`` taken in the states that gave ``conf_logits``
    ``(B, |A|, *spatial)``; ``idx``, ``action_value``, ``y``: ``(B, 1, *spatial)``.

    ``weight`` (optional, ``(B, 1, *spatial)``): per-agent weights of the mean, e.g.
    class-balanced ones (``clinloop.training.mecca.balanced_weights``). Without them
    the mean is dominated by the background agents; in 3-D nodule crops (~1 %
    foreground) C then learns "decreasing is aligned" for every voxel."""
    g = alignment_target(action_value, y)
    return symmetric_bce_from_logits(conf_logits.gather(1, idx), conf_logits.gather(1, opposite_action(idx)), g,
                                     weight)
