"""SPA configuration (saved as ``config.json`` beside ``weights.pt``)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinloop.atomic import atomic_write_text


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
    backbone: str = "litemedsam"
    seed: int = 0

    def __post_init__(self) -> None:
        from .variants import VARIANTS

        if self.method not in VARIANTS:
            raise ValueError(f"unknown SPA method {self.method!r}; choose from {', '.join(VARIANTS)}")
        if self.path not in ("tail", "embedding"):
            raise ValueError(f"path must be 'tail' or 'embedding', got {self.path!r}")
        for f in ("n_components", "latent_dim", "n_samples", "n_candidates", "cond_width"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SPAConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "SPAConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"{path}: cannot read SPA config ({e})") from e
