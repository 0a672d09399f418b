"""SPA configuration (saved as ``config.json`` beside ``weights.pt``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinloop.config_io import config_from_dict, config_to_dict, load_config, save_config


@dataclass
class SPAConfig:
    method: str = "spa"  # variant name, see .variants.VARIANTS
    n_components: int = 16  # M (spa.txt Eq. 1)
    latent_dim: int = 8  # D: our reading of z (see .preference_distribution)
    n_samples: int = 48  # N at inference (spa.txt §4: 48)
    n_candidates: int = 4  # K
    cond_width: int = 32  # hidden width of the optimised conditioning (paper: L = 256)
    pdg_hidden: int = 256
    path: str = "tail"  # "tail" (optimised: condition the decoded tokens, logit offset) or "embedding" (paper: condition e_x, full decoder per sample)
    finetune_decoder: bool = True  # train the prompt encoder + mask decoder too (Alg. 1 "segmentation and interaction encoders")
    finetune_encoder: bool = False  # train the TinyViT image encoder too (no embedding cache; weights.pt then holds it)
    honour_clicks: bool = True  # corrective clicks as hard constraints (clinloop.interaction.constraints)
    click_passes: int = 1  # decoder passes per corrective click (2-D sessions): each later pass prompts with the previous pass's y_app
    zoom_in: float = 0.0  # 2-D corrective clicks also decode on a crop this many times the mask's size (0: off; .zoom)
    zoom_min: float = 0.35  # the zoom crop's least side, as a share of the image's longest side
    zoom_mode: str = "mean"  # "mean": the crop's and the full frame's logits averaged; "crop": the crop's alone
    zoom_when: str = "missed"  # "missed": only when the full frame's answer leaves the new click unhonoured; "always"
    backbone: str = "litemedsam"
    seed: int = 0
    structures: list[str] = field(default_factory=list)  # a learnt token per structure (.structure; [] = none)
    structure_rank: int = 0  # rank r of each structure's decoder adapters (.adapters; 0 = none; needs structures)
    expert_rank: int = 0  # rank r of each structure's expert, a specialist's change (.experts; 0 = none; extracted)
    # "until-corrected": the structure's token, adapters or expert decode until the session's first corrective click
    structure_route: str = "always"

    def __post_init__(self) -> None:
        from .variants import VARIANTS

        if self.method not in VARIANTS:
            raise ValueError(f"unknown SPA method {self.method!r}; choose from {', '.join(VARIANTS)}")
        if self.path not in ("tail", "embedding"):
            raise ValueError(f"path must be 'tail' or 'embedding', got {self.path!r}")
        for f in ("n_components", "latent_dim", "n_samples", "n_candidates", "cond_width", "click_passes"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")
        if self.zoom_in != 0 and self.zoom_in < 1:
            raise ValueError(f"zoom_in must be 0 (off) or >= 1, got {self.zoom_in}")
        if self.zoom_mode not in ("mean", "crop"):
            raise ValueError(f"zoom_mode must be 'mean' or 'crop', got {self.zoom_mode!r}")
        if self.zoom_when not in ("missed", "always"):
            raise ValueError(f"zoom_when must be 'missed' or 'always', got {self.zoom_when!r}")
        if self.structures:
            from .structure import check_structures

            self.structures = [str(x) for x in self.structures]
            check_structures(self.structures)
        if self.structure_rank < 0 or (self.structure_rank and not self.structures):
            raise ValueError(f"structure_rank must be 0, or >= 1 with structures; got {self.structure_rank} "
                             f"with structures {self.structures}")
        if self.expert_rank < 0 or (self.expert_rank and (not self.structures or self.structure_rank)):
            raise ValueError(f"expert_rank must be 0, or >= 1 with structures and without structure adapters; "
                             f"got {self.expert_rank} with structures {self.structures}, "
                             f"structure_rank {self.structure_rank}")
        if self.structure_route not in ("always", "until-corrected"):
            raise ValueError(f"structure_route must be 'always' or 'until-corrected', got {self.structure_route!r}")
        if not 0 < self.zoom_min <= 1:
            raise ValueError(f"zoom_min must be in (0, 1], got {self.zoom_min}")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` (atomic; :func:`clinloop.config_io.save_config`)."""
        save_config(self, path)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | Path = "SPA config") -> "SPAConfig":
        """Unknown keys are an error naming them (:func:`clinloop.config_io.config_from_dict`)."""
        return config_from_dict(cls, d, source)

    @classmethod
    def load(cls, path: str | Path) -> "SPAConfig":
        return load_config(cls, path)
