"""Intensity augmentation for LEXU training (``--intensity-augment P``): Gaussian noise,
Gaussian blur and a gamma change, each applied with probability ``P`` to each image of a
batch, the masks untouched (the raters drew on the clean image).

These are three of nnU-Net's default intensity augmentations (Isensee et al., 2021). Our
ranges are wider than nnU-Net's so that they span the severities of the LEXU protocol's
example-difficulty test (:func:`clinloop.evaluation.lexu_protocol.distort`, severity up to 1):
noise σ ~ U(0, 0.15) and gamma ~ U(0.7, 2.5) on the image mapped to [0, 1], blur σ ~
U(0.3, 2.0) px at the training resolution. Training on the distortion family that the
difficulty test applies is a choice, said wherever a model trained with it is reported:
the test then measures whether uncertainty tracks difficulty the model has seen, not a
shift it has never met. Not in LEXU's paper (lexu.txt §3 uses no intensity augmentation).

Works on the normalised batch ``(B, C, S, S)``: each image is min–max mapped to [0, 1],
distorted, and z-scored per channel again, which equals distorting the raw image before
:func:`clinloop.models.lexu.model.prepare_images` (the z-score removes the affine map).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clinloop.models.lexu.model import normalise

NOISE_SIGMA = (0.0, 0.15)
GAMMA = (0.7, 2.5)
BLUR_SIGMA = (0.3, 2.0)


def _uniform(lo: float, hi: float, g: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """``img (C, H, W)`` blurred by a separable Gaussian of ``sigma`` px (reflect padding)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = img.shape[0]
    x = F.pad(img[None], (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x[0]


def distortion_strength(gamma: float | None, blur: float | None, noise: float | None) -> float:
    """``d`` in [0, 1]: how strongly one image was distorted, the largest of the drawn
    distortions' strengths, each on the scale of the difficulty test's severity
    (:func:`clinloop.evaluation.lexu_protocol.distort`): noise ``σ / 0.15``, blur
    ``σ / 2`` px, gamma ``|ln γ| / ln 2.5`` (the test's severity 1 is noise σ 0.15, blur
    σ 1.92 px at 64², gamma 2.5). ``None``: not drawn."""
    parts = [0.0]
    if gamma is not None:
        parts.append(abs(math.log(gamma)) / math.log(GAMMA[1]))
    if blur is not None:
        parts.append(blur / BLUR_SIGMA[1])
    if noise is not None:
        parts.append(noise / NOISE_SIGMA[1])
    return float(min(1.0, max(parts)))


def augment_image(img: torch.Tensor, p: float, g: torch.Generator) -> tuple[torch.Tensor, float] | None:
    """One normalised image ``(C, H, W)``: each of gamma, blur and noise with probability
    ``p`` (in that order), then the per-channel z-score of
    :func:`~clinloop.models.lexu.model.normalise`; returns ``(image, d)`` with ``d`` its
    :func:`distortion_strength`. ``None`` when nothing is drawn (the image stays as it is)."""
    draws = [float(torch.rand((), generator=g)) < p for _ in range(3)]
    if not any(draws):
        return None
    lo, hi = img.min(), img.max()
    x = (img - lo) / (hi - lo).clamp_min(1e-6)
    gamma = blur = noise = None
    if draws[0]:
        gamma = _uniform(*GAMMA, g)
        x = x.clamp(0, 1) ** gamma
    if draws[1]:
        blur = _uniform(*BLUR_SIGMA, g)
        x = gaussian_blur(x, blur)
    if draws[2]:
        noise = _uniform(*NOISE_SIGMA, g)
        x = (x + noise * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)
    return normalise(x[None], "zscore")[0], distortion_strength(gamma, blur, noise)


def augment_batch(x: torch.Tensor, p: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x (B, C, S, S)`` z-scored images -> (augmented copy, ``(B,)`` bool: which images
    were distorted, ``(B,)`` float: each image's strength ``d``, 0 where undistorted)
    (see :func:`augment_image`)."""
    if p <= 0:
        return x, torch.zeros(len(x), dtype=torch.bool), torch.zeros(len(x))
    out = [augment_image(img, p, g) for img in x]
    rows = torch.tensor([o is not None for o in out], dtype=torch.bool)
    strength = torch.tensor([0.0 if o is None else o[1] for o in out])
    return torch.stack([img if o is None else o[0] for img, o in zip(x, out)]), rows, strength
