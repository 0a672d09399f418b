"""Rebuild a trained LEXU (or baseline) model from its folder and predict.

A model folder (see :mod:`clinloop.models.registry`) holds ``config.json``
(:class:`~clinloop.models.lexu.config.LexuConfig`), ``weights.pt``, ``data.json``
and ``metrics.json``. :func:`load_lexu` returns a :class:`LexuPredictor`::

    pred = load_lexu("src/clinloop/assets/models/lexu-riga-cup")
    prob, unc, u = pred.predict(image)   # image (C, H, W) float32, as read

``prob (H, W)`` is the foreground probability, ``unc (H, W)`` the pixel-wise
uncertainty (variance across heads for LEXU), ``u`` the image-level
uncertainty: the sum of the uncertainty map at the network's resolution
(``cfg.size²`` pixels, so images of different sizes are comparable).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clinloop.models.lexu.config import LexuConfig, build_network


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Per image, per channel z-score. ``(B, C, H, W) -> same``."""
    m = x.mean(dim=(2, 3), keepdim=True)
    s = x.std(dim=(2, 3), keepdim=True)
    return (x - m) / s.clamp_min(1e-6)


def prepare_images(images, size: int, in_channels: int) -> torch.Tensor:
    """Images ``(C, H, W)`` (list or array) -> normalised ``(B, in_channels, size, size)``.

    A 1-channel image is repeated to 3 channels when the network expects 3;
    any other channel mismatch raises ValueError.
    """
    out = []
    for img in images:
        a = np.asarray(img, dtype=np.float32)
        if a.ndim != 3:
            raise ValueError(f"image must be 2-D channels-first (C, H, W), got shape {a.shape}")
        if a.shape[0] != in_channels:
            if a.shape[0] == 1 and in_channels == 3:
                a = np.repeat(a, 3, axis=0)
            else:
                raise ValueError(f"image has {a.shape[0]} channels; the model expects {in_channels}")
        t = torch.from_numpy(np.ascontiguousarray(a))[None]
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(t)
    return normalise(torch.cat(out))


def prepare_masks(masks, size: int) -> torch.Tensor:
    """Rater masks ``(R, H, W)`` bool -> ``(R, size, size)`` uint8 (area average,
    then ``> 0.5``; keeps thin cups better than nearest neighbour)."""
    t = torch.from_numpy(np.asarray(masks, dtype=np.float32))[None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="area")
    return (t[0] > 0.5).to(torch.uint8)


class LexuPredictor:
    """Inference wrapper (not an ``nn.Module``): preprocessing, one call to the
    variant's sample set, prediction / uncertainty maps."""

    def __init__(self, cfg: LexuConfig, network, folder: Path | None = None):
        self.cfg, self.network, self.folder = cfg, network.eval(), folder
        self.name = cfg.method
        self.spatial_ndims = 2

    @property
    def forward_passes(self) -> int:
        return int(self.network.forward_passes)

    @torch.no_grad()
    def run_batch(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, C, S, S)`` prepared -> ``samples (B, N, S, S)``, ``prob (B, S, S)``,
        ``uncertainty (B, S, S)``, ``image_uncertainty (B,)``."""
        self.network.eval()
        samples = self.network.sample_probs(x)
        unc = self.network.uncertainty(samples)
        return {
            "samples": samples,
            "prob": self.network.prediction(samples),
            "uncertainty": unc,
            "image_uncertainty": unc.sum(dim=(-2, -1)),
        }

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """``image (C, H, W)`` -> ``(prob (H, W), uncertainty (H, W), image-level float)``."""
        img = np.asarray(image, dtype=np.float32)
        x = prepare_images([img], self.cfg.size, self.cfg.in_channels)
        r = self.run_batch(x)
        hw = img.shape[-2:]
        maps = torch.stack([r["prob"], r["uncertainty"]], 1)
        if tuple(maps.shape[-2:]) != tuple(hw):
            maps = F.interpolate(maps, size=tuple(hw), mode="bilinear", align_corners=False)
        return maps[0, 0].numpy(), maps[0, 1].numpy(), float(r["image_uncertainty"][0])

    def time_forward(self, x: torch.Tensor) -> float:
        """Seconds for one sample-set computation on ``x (1, C, S, S)``."""
        t0 = time.perf_counter()
        self.run_batch(x)
        return time.perf_counter() - t0


def load_lexu(folder: str | Path, map_location: str = "cpu") -> LexuPredictor:
    """Rebuild the predictor stored in ``folder`` (any of the five methods)."""
    folder = Path(folder)
    cfg = LexuConfig.load(folder)
    net = build_network(cfg)
    path = folder / "weights.pt"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError) as e:
        raise ValueError(f"{path}: cannot read weights ({e})") from e
    net.load_state_dict(state, strict=True)
    return LexuPredictor(cfg, net, folder)
