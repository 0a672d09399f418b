"""MECCA configuration (a dataclass saved as ``config.json`` beside the weights).

Paper values (mecca.txt §5.1): lr 1e-4, T = 5, γ = 0.95, α = 0.8, β = 1; SLIC with
spacing (2, 2, 2), compactness 0.1, 100 initial supervoxels, 5 advice regions.
CPU-sized deviations (documented here, see also :mod:`.pnet`): the P-Net width
is 16 (paper: 64) and 3-D networks may run their convolutions on a 2×
down-sampled grid (``downsample``) so that one 128³ step fits in about a second
on two CPU threads; agents are still the full-resolution voxels.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinloop.config_io import config_from_dict, config_to_dict, load_config, save_config

METHODS = ("mecca", "mecca-no-confidence", "interactive-cnn", "mecca-unet")
PNET_ARCHS = ("dilated", "unet")


@dataclass
class MECCAConfig:
    method: str = "mecca"  # one of METHODS
    ndim: int = 2  # spatial dimensions (2 or 3)
    width: int = 16  # P-Net channels (paper: 64)
    conf_width: int = 16  # confidence-network channels
    trunk_dilations: tuple[int, ...] = (1, 2, 4)  # shared trunk: three blocks
    head_dilations: tuple[int, ...] = (8, 16)  # each head: two blocks
    conf_dilations: tuple[int, ...] = (1, 2, 4, 8)  # confidence network blocks
    downsample: int = 1  # convolutions on a grid this much coarser (3-D: 2)
    # reinforcement learning (§5.1)
    steps: int = 5  # T
    gamma: float = 0.95
    lr: float = 1e-4
    alpha: float = 0.8
    beta: float = 1.0
    shaping: bool = True  # False: the mecca-no-confidence ablation (reward = gain)
    # False (the 2-D models): L_C is a plain mean over agents (dominated by background).
    # True: class-balanced L_C, needed in 3-D, where the unbalanced C says "decrease" is
    # aligned even on nodule voxels, and the Eq. 4 reward, scaled by the wrong (2 - c),
    # then pays more for "lower the nodule, then raise it" than for raising it at once.
    balance_confidence: bool = False
    entropy_coef: float = 0.05  # A3C's entropy bonus; higher than the usual 0.01 against early collapse
    value_coef: float = 0.5
    # inference only, not in the paper (0 = off): an agent whose chosen action has confidence
    # C(s, a) < confidence_gate keeps its probability (MECCAModel.refine; docs/methods/mecca.md)
    confidence_gate: float = 0.0
    # inference only, not in the paper (0 = off): agents farther than click_reach working-grid voxels
    # from every click keep their probability (clinloop.models.mecca.hints.click_reach; docs/methods/mecca.md)
    click_reach: float = 0.0
    delta: float = 0.8  # label-generation confidence threshold δ (Eq. 6)
    unlabeled_warmup: int = 30  # iterations on labeled data only before Eq. 6 labels are used
    unlabeled_weight: float = 0.5  # weight of the unlabeled rollout's loss
    # simulated user
    hint_points: int = 5  # clicks per step on wrongly predicted boundary points
    hint_sigma: float = 2.0  # Gaussian radius (pixels) of a click in the hint map
    # advice (§4.3)
    slic_segments: int = 100
    slic_decay: float = 0.85  # segments at step t = max(min_segments, slic_segments * decay**t)
    slic_min_segments: int = 20
    slic_compactness: float = 0.1
    slic_spacing: tuple[float, ...] = (2.0, 2.0, 2.0)
    advice_regions: int = 5
    # data
    size: int = 64  # training crop size (pixels per axis); 0: whole image
    fusion: str = "majority"
    # volumes (clinloop.models.mecca.volumes); the defaults are the LIDC models' behaviour
    zoom: int = 1  # agents, hints and networks work on a grid this much coarser; output upsampled
    norm: str = "image"  # "image": z-score over all voxels; "nonzero": over the non-zero (brain) voxels
    crop: tuple[int, ...] = ()  # training crop on the coarse grid, one size per axis (() = size, or whole)
    seg_loss: str = "balanced-bce"  # CNN losses: "balanced-bce" (LIDC models) or "bce-dice"
    # p^(0): "constant" (0.5 everywhere, mecca.txt Algorithm 1), "pnet" (the probability of
    # the folder's non-interactive P-Net `init`, trained first) or "pnet-mask" (its mask,
    # p^(0) in {0, 1}); both deviations, see docs/methods/mecca.md
    init: str = "constant"
    init_width: int = 16  # channels of the `init` P-Net
    # the non-interactive segmenter's network (mecca-unet's `net`, and `init` of models trained from one):
    # "dilated", mecca.txt's P-Net (pnet.SegmentationNet), or "unet", an encoder-decoder with instance
    # normalisation (unet.UNetSegNet; a deviation, see that module) with `unet_levels` resolutions
    pnet_arch: str = "dilated"
    init_arch: str = "dilated"
    unet_levels: int = 4
    # inference only, not in the paper: refinements of the P-Net's prediction (mecca-unet's output and
    # p^(0)): the mean over the flips of each axis, and keeping the mask's largest component (pnet_inference)
    flip_average: bool = False
    one_component: bool = False
    # inference only, not in the paper, with init "pnet-mask": agents still at p^(0) show the P-Net's
    # probability that their mask came from, so the proposal keeps the P-Net's boundary where no agent moved
    # (the mask alone, upsampled from the coarse grid, loses up to 0.005 Dice; MECCAModel.shown)
    pnet_boundary: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown MECCA method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {self.ndim}")
        if self.width < 1 or self.conf_width < 1 or self.downsample < 1:
            raise ValueError(f"width/conf_width/downsample must be >= 1, got {self.width}/{self.conf_width}/{self.downsample}")
        if self.steps < 1:
            raise ValueError(f"steps (T) must be >= 1, got {self.steps}")
        if not 0.0 <= self.delta <= 1.0:
            raise ValueError(f"delta must lie in [0, 1], got {self.delta}")
        if not 0.0 <= self.confidence_gate <= 1.0:
            raise ValueError(f"confidence_gate must lie in [0, 1], got {self.confidence_gate}")
        if self.pnet_boundary and self.init != "pnet-mask":
            raise ValueError(f"pnet_boundary shows the P-Net's probability behind a p^(0) mask: it needs init "
                             f"'pnet-mask', not {self.init!r}")
        if self.click_reach < 0:
            raise ValueError(f"click_reach must be >= 0 (0 = off), got {self.click_reach}")
        if self.click_reach and self.method == "mecca-unet":
            raise ValueError("click_reach limits what hints change: the P-Net (mecca-unet) takes no hints")
        if self.confidence_gate and not self.is_rl:
            raise ValueError(f"confidence_gate needs an RL method (mecca, mecca-no-confidence), not {self.method!r}")
        if self.zoom < 1:
            raise ValueError(f"zoom must be >= 1, got {self.zoom}")
        if self.norm not in ("image", "nonzero"):
            raise ValueError(f"norm must be 'image' or 'nonzero', got {self.norm!r}")
        if self.seg_loss not in ("balanced-bce", "bce-dice"):
            raise ValueError(f"seg_loss must be 'balanced-bce' or 'bce-dice', got {self.seg_loss!r}")
        for key in ("pnet_arch", "init_arch"):
            if getattr(self, key) not in PNET_ARCHS:
                raise ValueError(f"{key} must be one of {', '.join(PNET_ARCHS)}, got {getattr(self, key)!r}")
        if self.pnet_arch != "dilated" and self.method != "mecca-unet":
            raise ValueError(f"pnet_arch is the P-Net's (mecca-unet) network; a {self.method!r} model's P-Net start "
                             f"is init_arch")
        if self.unet_levels < 1:
            raise ValueError(f"unet_levels must be >= 1, got {self.unet_levels}")
        if self.init not in ("constant", "pnet", "pnet-mask"):
            raise ValueError(f"init must be 'constant', 'pnet' or 'pnet-mask', got {self.init!r}")
        if self.init != "constant" and self.method == "mecca-unet":
            raise ValueError(f"the non-interactive P-Net (mecca-unet) has no initial segmentation (init={self.init!r})")
        if (self.flip_average or self.one_component) and self.method != "mecca-unet" and self.init == "constant":
            raise ValueError("flip_average / one_component refine a P-Net's prediction: they need a mecca-unet "
                             "model or a P-Net start (init 'pnet' or 'pnet-mask')")
        self.crop = tuple(int(v) for v in self.crop)
        if self.crop and len(self.crop) != self.ndim:
            raise ValueError(f"crop {self.crop} needs {self.ndim} sizes")
        self.trunk_dilations = tuple(int(d) for d in self.trunk_dilations)
        self.head_dilations = tuple(int(d) for d in self.head_dilations)
        self.conf_dilations = tuple(int(d) for d in self.conf_dilations)
        self.slic_spacing = tuple(float(s) for s in self.slic_spacing)

    @property
    def is_rl(self) -> bool:
        return self.method in ("mecca", "mecca-no-confidence")

    def to_json(self) -> str:
        return json.dumps(config_to_dict(self), indent=2)

    def save(self, path: str | Path) -> None:
        """Write ``config.json`` (atomic; :func:`clinloop.config_io.save_config`)."""
        save_config(self, path)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str | Path = "MECCA config") -> "MECCAConfig":
        """Unknown keys are an error naming them (:func:`clinloop.config_io.config_from_dict`)."""
        return config_from_dict(cls, d, source)

    @classmethod
    def load(cls, path: str | Path) -> "MECCAConfig":
        return load_config(cls, path)
