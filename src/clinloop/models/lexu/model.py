"""Rebuild a trained LEXU (or baseline) model from its folder and predict.

A model folder (see :mod:`clinloop.models.registry`) holds ``config.json``
(:class:`~clinloop.models.lexu.config.LexuConfig`), ``weights.pt``, ``data.json``
and ``metrics.json``. :func:`load_lexu` returns a :class:`LexuPredictor`::

    pred = load_lexu("src/clinloop/assets/models/lexu-riga-cup")
    prob, unc, u = pred.predict(image)   # image (C, H, W) float32, as read

The image is centre-cropped (``cfg.crop``), resized to ``cfg.size²`` and
normalised as in training; maps are pasted back (zero outside the crop).
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


def normalise(x: torch.Tensor, kind: str = "zscore") -> torch.Tensor:
    """``"zscore"``: per image, per channel z-score; ``"minmax"``: per image
    ``(x - min) / (max - min)`` over all channels (LiteMedSAM's input range,
    a constant image -> 0). ``(B, C, H, W) -> same``."""
    if kind == "minmax":
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-6)
    if kind != "zscore":
        raise ValueError(f"unknown normalisation {kind!r}")
    m = x.mean(dim=(2, 3), keepdim=True)
    s = x.std(dim=(2, 3), keepdim=True)
    return (x - m) / s.clamp_min(1e-6)


def crop_box(hw, crop: float) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the centred square crop with side ``crop`` ×
    the shorter side (the whole image when ``crop`` is 1)."""
    h, w = int(hw[0]), int(hw[1])
    if crop >= 1:
        return 0, h, 0, w
    side = max(1, int(round(crop * min(h, w))))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return y0, y0 + side, x0, x0 + side


def prepare_images(images, size: int, in_channels: int, normalisation: str = "zscore", crop: float = 1.0) -> torch.Tensor:
    """Images ``(C, H, W)`` (list or array) -> normalised ``(B, in_channels, size, size)``
    (centre crop ``crop``, antialiased bilinear resize, then ``normalisation``).

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
        y0, y1, x0, x1 = crop_box(a.shape[-2:], crop)
        t = torch.from_numpy(np.ascontiguousarray(a[:, y0:y1, x0:x1]))[None]
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(t)
    return normalise(torch.cat(out), normalisation)


def prepare_masks(masks, size: int, crop: float = 1.0) -> torch.Tensor:
    """Rater masks ``(R, H, W)`` bool -> ``(R, size, size)`` uint8 (centre crop
    ``crop``, area average, then ``> 0.5``; keeps thin cups better than nearest
    neighbour)."""
    a = np.asarray(masks, dtype=np.float32)
    y0, y1, x0, x1 = crop_box(a.shape[-2:], crop)
    t = torch.from_numpy(np.ascontiguousarray(a[..., y0:y1, x0:x1]))[None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="area")
    return (t[0] > 0.5).to(torch.uint8)


class LexuPredictor:
    """Inference wrapper (not an ``nn.Module``): preprocessing, one call to the
    variant's sample set, prediction / uncertainty maps."""

    def __init__(self, cfg: LexuConfig, network, folder: Path | None = None):
        self.cfg, self.network, self.folder = cfg, network.eval(), folder
        self.name = cfg.method
        self.spatial_ndims = (2,)  # 2-D images (volumes slice by slice in clinloop predict); a tuple, as every model's

    def prepare(self, images) -> torch.Tensor:
        """Images ``(C, H, W)`` -> the network's input (size, crop, normalisation of the config)."""
        c = self.cfg
        return prepare_images(images, c.size, c.in_channels, c.normalisation, c.crop)

    def prepare_masks(self, masks) -> torch.Tensor:
        """Rater masks ``(R, H, W)`` -> ``(R, size, size)`` uint8 in the network's frame."""
        return prepare_masks(masks, self.cfg.size, self.cfg.crop)

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
        x = self.prepare([img])
        r = self.run_batch(x)
        hw = img.shape[-2:]
        y0, y1, x0, x1 = crop_box(hw, self.cfg.crop)
        maps = torch.stack([r["prob"], r["uncertainty"]], 1)
        if tuple(maps.shape[-2:]) != (y1 - y0, x1 - x0):
            maps = F.interpolate(maps, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
        full = torch.zeros((2, *hw), dtype=maps.dtype)  # outside the crop: background, no uncertainty
        full[:, y0:y1, x0:x1] = maps[0]
        return full[0].numpy(), full[1].numpy(), float(r["image_uncertainty"][0])

    def time_forward(self, x: torch.Tensor) -> float:
        """Seconds for one sample-set computation on ``x (1, C, S, S)``, with the
        TinyViT feature cache bypassed (the encoder's time counts)."""
        import contextlib

        from clinloop.models.lexu.tinyvit import tinyvit_features

        # bypass in this thread only: a second server worker keeps its cache
        ctx = tinyvit_features().uncached() if self.cfg.encoder == "tinyvit" else contextlib.nullcontext()
        with ctx:
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
