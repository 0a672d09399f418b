"""The mask prompt of SPA's later iterations: a chosen binary candidate fed back
to LiteMedSAM's mask branch (used by the 2-D session, the volumetric session
and the trainer alike)."""
from __future__ import annotations

import torch

MASK_PROMPT_SCALE = 4.0  # a binary candidate r_u enters the mask branch as logits ±4 (SAM feeds logits)


def mask_prompt(mask: torch.Tensor) -> torch.Tensor:
    """Binary ``(256, 256)`` (or ``(B, 256, 256)``) -> mask-prompt logits ``(B, 1, 256, 256)``."""
    m = mask.float().reshape(-1, 1, *mask.shape[-2:])
    return (2 * m - 1) * MASK_PROMPT_SCALE
