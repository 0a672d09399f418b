"""Simulated labels for unlabeled data (mecca.txt §4.3, Eq. 6, Fig. 4).

The confidence ``c = C(s, a)`` says how likely the action ``a`` moves toward the
label. Fig. 4 describes the simulated label as *the direction of the
confidence-calibrated action*: a confident action keeps its direction, an
unconfident one is reversed. So::

    ŷ = 1  if (a > 0) == (c > 0.5)      (confident increase, or unconfident decrease)
    ŷ = 0  otherwise

Eq. 6 prints this as ``ŷ = 1 if a ⊕ c == 1``; taken literally (``c > 0`` always)
it would reduce to ``ŷ = 1[a ≤ 0]``, contradicting Fig. 4 and Eq. 3, so we
implement the calibrated-direction reading above (the inverse of Eq. 3's
``g = 1 iff sign(a) == sign(y)``).

Only decisive agents train the policy: the text backpropagates unlabeled
gradients "only when the action confidence exceeds the threshold δ". We apply
δ to the calibrated confidence ``max(c, 1 - c)`` — an action that is confidently
*wrong* also fixes ŷ (reversed); with ``δ ≥ 0.5`` this is the literal rule plus
its mirror image.
"""
from __future__ import annotations

import torch


def generate_labels(action_value: torch.Tensor, confidence: torch.Tensor, delta: float = 0.8):
    """Eq. 6 with threshold δ.

    ``action_value`` (any shape, the increments ``a``), ``confidence`` (same shape,
    in [0, 1]). Returns ``(y_hat, mask)``: float {0, 1} labels and a bool mask of
    the agents whose calibrated confidence ``max(c, 1 - c) >= δ``."""
    if action_value.shape != confidence.shape:
        raise ValueError(f"actions {tuple(action_value.shape)} and confidence {tuple(confidence.shape)} differ in shape")
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must lie in [0, 1], got {delta}")
    y_hat = ((action_value > 0) == (confidence > 0.5)).float()
    mask = torch.maximum(confidence, 1.0 - confidence) >= delta
    return y_hat, mask
