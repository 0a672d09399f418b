"""What SPA's 2-D and volumetric sessions share: the mask prompt of later
iterations (a chosen binary candidate fed back to LiteMedSAM's mask branch; the
trainer uses it too) and the session behaviour that does not depend on the
image's dimension (:class:`SPAStateBase`)."""
from __future__ import annotations

from typing import Any

import torch

MASK_PROMPT_SCALE = 4.0  # a binary candidate r_u enters the mask branch as logits ±4 (SAM feeds logits)


def mask_prompt(mask: torch.Tensor) -> torch.Tensor:
    """Binary ``(256, 256)`` (or ``(B, 256, 256)``) -> mask-prompt logits ``(B, 1, 256, 256)``."""
    m = mask.float().reshape(-1, 1, *mask.shape[-2:])
    return (2 * m - 1) * MASK_PROMPT_SCALE


class SPAStateBase:
    """Shared by :class:`~clinloop.models.spa.model.SPAState` (one image) and
    :class:`~clinloop.models.spa.volume.VolumeState` (one volume); subclasses set
    ``model``, ``gmm`` (the preference mixture, or None before the first click)
    and ``iteration``."""

    @staticmethod
    def check_choice(k: int, candidates) -> None:
        """``k`` must index one of ``candidates`` (None before any proposal)."""
        if candidates is None:
            raise ValueError("choose() before any proposal")
        if not 0 <= k < len(candidates):
            raise ValueError(f"candidate {k} out of range 0..{len(candidates) - 1}")

    @staticmethod
    def carried_gmm(profile: dict[str, Any] | None, latent_dim: int):
        """The preference mixture a user's ``profile`` (from ``Session.profile()``) carries over, or None."""
        if profile is None:
            return None
        g = profile.get("gmm") if isinstance(profile, dict) else None
        if g is None:
            raise ValueError("SPA profile must be a dict with a 'gmm' entry (from Session.profile())")
        from clinloop.models.spa.preference_distribution import GMM

        return GMM.from_json(g, dim=latent_dim)

    def decoding_structure(self, config) -> int:
        """The structure index this step decodes with (``structure_id``), or 0 (the shared weights) from the
        session's first corrective click on when ``config.structure_route`` is "until-corrected"
        (:mod:`clinloop.models.spa.experts`)."""
        return 0 if config.structure_route == "until-corrected" and self.corrective else self.structure_id

    def hint(self, points):
        raise ValueError("SPA takes clicks and candidate choices, not hint maps (use click/choose)")

    def profile(self) -> dict[str, Any]:
        return {"method": self.model.name, "gmm": None if self.gmm is None else self.gmm.to_json(),
                "iteration": self.iteration}
