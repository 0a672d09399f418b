"""LEXU / baseline configuration, saved as ``config.json`` beside ``weights.pt``.

Paper values (LEXU §3): α = 1, β = 5 (RIGA) / 2.5 (HECKTOR), lr 5e-5 with an
ImageNet ResNet50, 200 epochs, batch 16, 256² input. Our CPU defaults differ
(from-scratch CNN encoder, Adam lr 2e-3 with cosine decay, batch 4, 96² input, 100 epochs); the resolved
values are recorded in every model folder.

Encoders (``encoder``): ``"cnn"`` (from scratch, any ``size`` divisible by
``2**(N_E-1)``) or ``"tinyvit"`` (the frozen pretrained LiteMedSAM TinyViT,
input fixed at 256², min–max normalisation as LiteMedSAM; ``widths`` are then
the decoder widths, see :class:`clinloop.models.lexu.network.TinyViTUNet`).
``crop``: side fraction of a centred square crop taken before resizing
(RIGA's photos are 512² crops centred on the disc, every disc lies inside the
central 0.5625 = 288/512; cropping raises the cup's resolution at no cost).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from clinloop.config_io import config_to_dict, load_config, save_config

from clinloop.models.lexu.constants import DEFAULT_WIDTHS, ENCODERS, METHODS, TINYVIT_SIZE  # noqa: F401


@dataclass
class LexuConfig:
    """Everything needed to rebuild one of the five networks.

    ``widths``: encoder channels per block (``N_E = len(widths)``, ``N_D = N_p = N_E - 1``).
    ``size``: square input resolution the network was trained at (images are
    resized to it; predictions are resized back).
    ``normalisation``: ``"zscore"`` = per image, per channel ``(x - mean) / std``
    (CNN encoder); ``"minmax"`` = per image ``(x - min) / (max - min)`` over all
    channels (TinyViT, as LiteMedSAM's preprocessing).
    ``crop``: centred square crop (fraction of the shorter side) before resizing;
    1.0 = whole image.
    """

    method: str = "lexu"
    in_channels: int = 3
    widths: list[int] = field(default_factory=lambda: [16, 24, 32, 48, 64, 96])
    encoder: str = "cnn"
    alpha: float = 1.0
    beta: float = 5.0
    n_members: int = 5
    dropout: float = 0.2
    mc_samples: int = 8
    size: int = 96
    normalisation: str = "zscore"
    crop: float = 1.0
    structure: str | None = None
    epochs: int = 100
    batch_size: int = 4
    lr: float = 2e-3
    seed: int = 0
    intensity_augment: float = 0.0  # training only: P of each of noise / blur / gamma (clinloop.training.lexu_augment)
    dgm_clean_only: bool = False  # training only: DGM on the undistorted images of a batch (not in the paper)
    distortion_disagreement: float = 0.0  # training only: D of losses.distortion_disagreement_target (not in the paper)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        self.widths = [int(w) for w in self.widths]
        if len(self.widths) < 3 or min(self.widths) < 1:
            raise ValueError(f"widths must list >= 3 positive channel counts, got {self.widths}")
        for name in ("alpha", "beta", "lr"):
            v = float(getattr(self, name))
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; choose from {', '.join(ENCODERS)}")
        if self.encoder == "tinyvit":
            if self.size != TINYVIT_SIZE:
                raise ValueError(f"the TinyViT encoder takes {TINYVIT_SIZE}² input, got size {self.size}")
            if self.normalisation != "minmax":
                raise ValueError("the TinyViT encoder needs normalisation 'minmax' (LiteMedSAM's input range)")
            if len(self.widths) != 5:
                raise ValueError(f"the TinyViT U-Net needs 5 widths (full, 1/2, 1/4, 1/4, bottom), got {self.widths}")
        else:
            step = 2 ** (len(self.widths) - 1)
            if self.size < step or self.size % step:
                raise ValueError(f"size {self.size} must be a positive multiple of {step} (2**(N_E-1)) for widths {self.widths}")
        if not 0 < float(self.crop) <= 1:
            raise ValueError(f"crop must be in (0, 1], got {self.crop}")
        self.crop = float(self.crop)
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.n_members < 2:
            raise ValueError(f"n_members must be >= 2, got {self.n_members}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.mc_samples < 2:
            raise ValueError(f"mc_samples must be >= 2, got {self.mc_samples}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.normalisation not in ("zscore", "minmax"):
            raise ValueError(f"unknown normalisation {self.normalisation!r}")

    def to_json(self) -> str:
        return json.dumps(config_to_dict(self), indent=2)

    def save(self, folder: str | Path) -> None:
        """Write ``folder/config.json`` (atomic; :func:`clinloop.config_io.save_config`)."""
        save_config(self, Path(folder) / "config.json")

    @classmethod
    def load(cls, folder: str | Path) -> "LexuConfig":
        """Read ``folder/config.json``; unknown keys are an error naming them."""
        return load_config(cls, Path(folder) / "config.json")


def build_network(cfg: LexuConfig):
    """The named variant for ``cfg.method`` (see :mod:`clinloop.models.lexu.baselines`).

    Imported lazily: ``baselines`` -> ``network`` -> ``constants`` never import
    this module, so there is no import cycle."""
    from clinloop.models.lexu.baselines import VARIANTS

    common = dict(in_channels=cfg.in_channels, widths=cfg.widths, encoder=cfg.encoder)
    extra = {
        "lexu": dict(alpha=cfg.alpha, beta=cfg.beta),
        "ensemble": dict(n_members=cfg.n_members),
        "mc-dropout": dict(dropout=cfg.dropout, mc_samples=cfg.mc_samples),
    }.get(cfg.method, {})
    return VARIANTS[cfg.method](**common, **extra)
