"""A tiny synthetic multi-rater dataset in RIGA's npz layout (so the real
reader, CLI and protocol run end to end in a few seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_riga(path: Path, n: int = 10, size: int = 32, raters: int = 3, seed: int = 0) -> Path:
    """Bright discs on noise; rater radii spread more on blurrier cases.
    Case 1 has one missing rater (rater_ok False, mask all zero)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((n, size, size, 3), np.uint8)
    cup = np.zeros((n, raters, size, size), np.uint8)
    for i in range(n):
        cy, cx, r = size / 2 + rng.normal(0, 2), size / 2 + rng.normal(0, 2), size / 4 + rng.normal(0, 1)
        d = np.hypot(yy - cy, xx - cx)
        spread = 0.5 + 3.0 * i / n  # later cases: more disagreement
        img = 200 / (1 + np.exp((d - r) / (0.5 + spread))) + rng.normal(0, 10, d.shape) + 30
        image[i] = np.clip(img, 0, 255)[..., None].astype(np.uint8)
        for k in range(raters):
            cup[i, k] = d < r + rng.normal(0, spread)
    ok = np.ones((n, raters), bool)
    ok[1, -1] = False
    cup[1, -1] = 0
    disc = np.maximum(cup, np.roll(cup, 1, axis=-1))
    np.savez_compressed(path, image=image, disc=disc, cup=cup, rater_ok=ok, case_id=np.arange(1, n + 1))
    return path
