"""What every MECCA session state shares: a click is a one-point hint (mecca.txt: the user's
interactions are hints at mis-segmented voxels), there are no candidates to choose from and
no preference profile to carry."""
from __future__ import annotations

from typing import Any, Sequence

from clinloop.interaction.proposal import Proposal


class HintOnlyState:
    """Mixin for :class:`~clinloop.models.mecca.model.MECCAState` and
    :class:`~clinloop.models.mecca.roi.ROIState`; subclasses define ``hint(points)`` and ``cfg``."""

    def click(self, point: Sequence[float], positive: bool) -> Proposal:
        return self.hint([(point, positive)])

    def choose(self, k: int) -> Proposal:
        raise ValueError(f"{self.cfg.method} offers no candidates to choose from; use click() or hint()")

    def profile(self) -> dict[str, Any]:
        return {}
