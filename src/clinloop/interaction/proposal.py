"""What an interactive method returns after each user action.

SPA fills ``candidates``; MECCA fills ``advice`` and ``confidence``; both fill
``mask``, ``probability`` and ``uncertainty``. All arrays are at the *input image's*
spatial size: ``(H, W)`` in 2-D, ``(D, H, W)`` in 3-D.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Proposal:
    mask: np.ndarray  # (*spatial) bool: the proposal (SPA: y_app)
    probability: np.ndarray  # (*spatial) float in [0,1] (SPA: mean of the N sampled masks)
    uncertainty: np.ndarray  # (*spatial) float >= 0
    candidates: np.ndarray | None = None  # (K, *spatial) bool: SPA's representative candidates
    advice: list[np.ndarray] = field(default_factory=list)  # MECCA: region masks (*spatial) bool, least confident first
    # MECCA (RL methods): the action confidence C(s, a) of each agent's chosen action, in [0, 1];
    # NaN where no agent acted (outside a session's region of interest). None: the model has none.
    confidence: np.ndarray | None = None
    iteration: int = 0  # 1-based count of user interactions so far
    seconds: float = 0.0  # model time for this step
    extra: dict[str, Any] = field(default_factory=dict)

    def candidate_differences(self) -> np.ndarray | None:
        """Per candidate, the +/- pixel differences against the proposal (spa.txt §3.4):
        ``(K, 2, *spatial)`` bool, channel 0 = added (in candidate, not in proposal),
        channel 1 = removed (in proposal, not in candidate)."""
        if self.candidates is None:
            return None
        add = self.candidates & ~self.mask[None]
        rem = ~self.candidates & self.mask[None]
        return np.stack([add, rem], axis=1)
