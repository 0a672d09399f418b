"""Synthetic multi-rater data with known rater styles (fixtures, offline demo).

Each case has a latent "true" structure ``T``: one irregular smooth blob (an
ellipse / ellipsoid whose implicit function is perturbed by low-frequency noise)
and, optionally, small satellite blobs. The image is a grey, textured
background with the structure brighter and a blurred boundary, plus pixel
noise: intensities in **[0, 255]**, float32, shape ``(C, *spatial)``.

Each rater sees ``T`` through a :class:`RaterStyle`, applied to the signed
distance ``d`` of ``T`` (pixels, positive inside, 0 on the boundary):

1. ``d + boundary_offset + jitter * n(x)`` is thresholded at 0, where ``n`` is
   a smooth unit-variance random field with correlation length
   ``jitter_length`` (fresh per case and rater): a positive offset
   over-segments, a negative one under-segments, the jitter wiggles the
   boundary;
2. ``smoothing`` > 0 blurs that mask with a Gaussian of that sigma and
   thresholds at 0.5 (rounded corners, filled notches);
3. each small connected component (not the largest one) is dropped with
   probability ``miss_small`` (a rater who overlooks small findings);
4. holes are filled and specks under 5 pixels removed.

The style parameters are fixed per rater across cases, so a method that adapts
to a rater can be checked against the known preference (the "generous" rater's
masks are always larger than the truth, the "tight" rater's always smaller).
Everything works in 2-D ``(H, W)`` and 3-D ``(D, H, W)``; the same ``seed``
gives the same sample.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from clinloop.data.registry import ListDataset
from clinloop.data.sample import MultiRaterSample

__all__ = ["RaterStyle", "DEFAULT_STYLES", "make_styles", "make_synthetic_sample", "make_synthetic_dataset"]


@dataclass(frozen=True)
class RaterStyle:
    """How one rater outlines a structure (all lengths in pixels).

    * ``boundary_offset``: signed shift of the outline along the normal,
      ``+`` over-segments, ``-`` under-segments.
    * ``smoothing``: Gaussian sigma applied to the mask before thresholding at
      0.5 (0 = off); rounds corners and fills narrow notches.
    * ``jitter``: amplitude (std) of the random boundary displacement.
    * ``jitter_length``: correlation length of that displacement.
    * ``miss_small``: probability of leaving out each small component.
    * ``small_size``: components with at most this many pixels count as
      small; ``None`` = every component but the largest. The largest component
      is never left out (the rater always outlines the main finding).
    """

    name: str
    boundary_offset: float = 0.0
    smoothing: float = 0.0
    jitter: float = 0.0
    jitter_length: float = 4.0
    miss_small: float = 0.0
    small_size: int | None = None

    def __post_init__(self):
        if self.smoothing < 0 or self.jitter < 0 or self.jitter_length <= 0:
            raise ValueError(f"rater style {self.name!r}: smoothing/jitter must be >= 0 and jitter_length > 0")
        if not 0 <= self.miss_small <= 1:
            raise ValueError(f"rater style {self.name!r}: miss_small={self.miss_small} is not a probability")


DEFAULT_STYLES: tuple[RaterStyle, ...] = (
    RaterStyle("generous", boundary_offset=2.0, jitter=0.3),
    RaterStyle("tight", boundary_offset=-2.0, jitter=0.3, miss_small=0.5),
    RaterStyle("smooth", boundary_offset=0.0, smoothing=2.5),
    RaterStyle("jittery", boundary_offset=0.0, jitter=1.5, jitter_length=3.0),
)


def make_styles(n_raters: int) -> tuple[RaterStyle, ...]:
    """``n_raters`` styles: the first of :data:`DEFAULT_STYLES`, then extra
    raters with offsets spread over [-2.5, 2.5] px and alternating smoothing /
    jitter (deterministic, so rater ``k`` is the same rater in every dataset)."""
    if n_raters < 1:
        raise ValueError(f"n_raters must be >= 1, got {n_raters}")
    styles = list(DEFAULT_STYLES[:n_raters])
    extra = n_raters - len(styles)
    offsets = np.linspace(-2.5, 2.5, extra) if extra > 1 else np.zeros(extra)
    for i, off in enumerate(offsets):
        styles.append(
            RaterStyle(
                f"rater{len(styles)}",
                boundary_offset=float(round(off, 3)),
                smoothing=1.5 if i % 2 == 0 else 0.0,
                jitter=0.5 if i % 2 == 0 else 1.0,
            )
        )
    return tuple(styles)


# ----------------------------------------------------------------- helpers
def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], length: float) -> np.ndarray:
    """A smooth random field with zero mean, unit std, correlation ~``length`` px."""
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma=length, mode="wrap")
    f -= f.mean()
    return f / (f.std() + 1e-12)


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Distance to the boundary, positive inside, with the boundary halfway
    between pixel centres (so ``sd > 0`` reproduces ``mask``)."""
    if not mask.any():
        return -np.full(mask.shape, np.inf)
    if mask.all():
        return np.full(mask.shape, np.inf)
    return np.where(mask, ndi.distance_transform_edt(mask) - 0.5, 0.5 - ndi.distance_transform_edt(~mask))


def _clean(mask: np.ndarray, min_size: int = 5) -> np.ndarray:
    """Fill holes and drop specks smaller than ``min_size`` pixels."""
    mask = ndi.binary_fill_holes(mask)
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[lab]


def _blob(rng: np.random.Generator, shape: tuple[int, ...], radius: float, centre: np.ndarray, irregularity: float):
    """An irregular ellipse/ellipsoid: ``1 - |A (x - c)| + eps * n(x) > 0``,
    largest component kept, holes filled."""
    nd = len(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"))
    # random orientation and axis lengths (aspect up to ~1.6)
    q, _ = np.linalg.qr(rng.standard_normal((nd, nd)))
    axes = radius * rng.uniform(0.75, 1.25, nd)
    x = np.tensordot(q.T, grid - centre.reshape((nd,) + (1,) * nd), axes=1) / axes.reshape((nd,) + (1,) * nd)
    implicit = 1.0 - np.sqrt((x**2).sum(0))
    implicit += irregularity * _smooth_field(rng, shape, max(radius / 2.0, 1.5))
    mask = implicit > 0
    lab, n = ndi.label(mask)
    if n > 1:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return ndi.binary_fill_holes(mask)


def _truth(rng, shape, radius_frac, irregularity, n_small):
    size = min(shape)
    radius = size * rng.uniform(*radius_frac)
    margin = radius * 1.4 + 3
    centre = np.array([rng.uniform(min(margin, s / 2), max(s - margin, s / 2)) for s in shape])
    truth = _blob(rng, shape, radius, centre, irregularity)
    for _ in range(n_small):
        # a small satellite (radius 3-5 px) that does not touch the main blob
        r = rng.uniform(3.0, 5.0)
        free = ndi.distance_transform_edt(~truth) > 1.3 * r + 5  # gap of >= 5 px, blob axes up to 1.25 r
        inner = np.zeros(shape, bool)
        inner[tuple(slice(int(r) + 2, s - int(r) - 2) for s in shape)] = True
        cand = np.argwhere(free & inner)
        if cand.size == 0:
            continue
        c = cand[rng.integers(len(cand))].astype(np.float64)
        truth |= _blob(rng, shape, r, c, 0.1)
    return truth


def _rater_mask(truth: np.ndarray, sd: np.ndarray, style: RaterStyle, rng: np.random.Generator) -> np.ndarray:
    level = sd + style.boundary_offset
    if style.jitter > 0:
        level = level + style.jitter * _smooth_field(rng, truth.shape, style.jitter_length)
    m = level > 0
    if style.smoothing > 0:
        m = ndi.gaussian_filter(m.astype(np.float32), style.smoothing) > 0.5
    if style.miss_small > 0:
        lab, n = ndi.label(m)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        small = np.ones(n + 1, bool) if style.small_size is None else sizes <= style.small_size
        drop = small & (rng.random(n + 1) < style.miss_small)
        drop[0] = False
        if n:
            drop[np.argmax(sizes[1:]) + 1] = False  # never the main finding
        m = m & ~drop[lab]
    return _clean(m)


def _image(rng, truth: np.ndarray, channels: int, contrast: float, noise: float) -> np.ndarray:
    shape = truth.shape
    # background: slow shading + mid-frequency texture + fine texture
    bg = 90 + 15 * _smooth_field(rng, shape, min(shape) / 6) + 8 * _smooth_field(rng, shape, 2.5)
    # the structure: brighter, its own texture, a boundary blurred over ~1.5 px
    soft = ndi.gaussian_filter(truth.astype(np.float64), 1.5)
    fg = contrast * (1 + 0.15 * _smooth_field(rng, shape, 3.0))
    img = bg + soft * fg + noise * rng.standard_normal(shape)
    gains = [1.0] + list(rng.uniform(0.8, 1.1, channels - 1))  # colour-ish channels for C > 1
    return np.clip(np.stack([g * img for g in gains]), 0, 255).astype(np.float32)


# ---------------------------------------------------------------- public API
def make_synthetic_sample(
    shape: Sequence[int] = (128, 128),
    styles: Sequence[RaterStyle] = DEFAULT_STYLES,
    seed: int = 0,
    *,
    case_id: str | None = None,
    patient_id: str | None = None,
    radius_frac: tuple[float, float] | None = None,
    irregularity: float = 0.25,
    n_small: int = 0,
    channels: int = 1,
    contrast: float = 60.0,
    noise: float = 8.0,
    return_truth: bool = False,
):
    """One synthetic case.

    Args:
        shape: spatial shape, ``(H, W)`` or ``(D, H, W)``; each side >= 16.
        styles: one :class:`RaterStyle` per rater (``R = len(styles)``).
        seed: everything (structure, image, rater noise) follows from it.
        radius_frac: range of the main blob's radius as a fraction of
            ``min(shape)``; default (0.18, 0.26) in 2-D and (0.26, 0.34) in 3-D.
            The styles' offsets are in pixels, so agreement depends on size:
            measured mean pairwise Dice of :data:`DEFAULT_STYLES` is 0.91-0.93
            at 128x128 but 0.5-0.7 at (32, 48, 48) (a +-2 px shell around a
            ~10 px sphere changes its volume ~1.7x; LIDC nodules are as small).
        irregularity: amplitude of the boundary perturbation (relative to radius).
        n_small: number of small satellite blobs (radius 3-5 px) to add.
        channels: ``C``; channel 0 is the grey image, others scaled copies.
        contrast, noise: structure brightness over background and pixel noise std.
        return_truth: also return the latent truth ``(*spatial)`` bool.

    Returns:
        :class:`MultiRaterSample` with image ``(C, *spatial)`` float32 in
        [0, 255], masks ``(R, *spatial)`` bool, ``rater_ids`` = style names,
        ``structure="lesion"``, ``provenance`` holding the generator settings;
        or ``(sample, truth)`` with ``return_truth``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 16:
        raise ValueError(f"synthetic shape must be 2-D or 3-D with sides >= 16, got {shape}")
    if radius_frac is None:
        radius_frac = (0.18, 0.26) if len(shape) == 2 else (0.26, 0.34)
    styles = tuple(styles)
    if not styles:
        raise ValueError("need at least one rater style")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    # independent streams for the structure, the image and each rater, so that
    # adding a rater does not change the image or the other raters' masks
    ss = np.random.SeedSequence(int(seed))
    s_truth, s_image, *s_raters = ss.spawn(2 + len(styles))
    truth = _truth(np.random.default_rng(s_truth), shape, radius_frac, irregularity, n_small)
    sd = _signed_distance(truth)
    masks = np.stack([_rater_mask(truth, sd, st, np.random.default_rng(s)) for st, s in zip(styles, s_raters)])
    image = _image(np.random.default_rng(s_image), truth, channels, contrast, noise)
    case_id = case_id or f"synth-{seed}"
    sample = MultiRaterSample(
        image=image,
        masks=masks,
        case_id=case_id,
        patient_id=patient_id or case_id,
        rater_ids=[st.name for st in styles],
        structure="lesion",
        provenance={
            "generator": "clinloop.data.synthetic",
            "seed": int(seed),
            "shape": list(shape),
            "styles": [asdict(st) for st in styles],
            "radius_frac": list(radius_frac),
            "irregularity": irregularity,
            "n_small": n_small,
            "intensity_range": [0.0, 255.0],
        },
    )
    return (sample, truth) if return_truth else sample


def make_synthetic_dataset(
    n_cases: int,
    shape: Sequence[int] = (128, 128),
    n_raters: int | None = None,
    styles: Sequence[RaterStyle] | None = None,
    seed: int = 0,
    **options,
) -> ListDataset:
    """``n_cases`` synthetic cases with patient ids ``synth-0000`` ... (one case
    per patient). Give ``styles`` or ``n_raters`` (then :func:`make_styles`);
    neither means :data:`DEFAULT_STYLES`. Case ``i`` uses the seed
    ``SeedSequence([seed, i])``, so a dataset's first cases do not depend on
    ``n_cases``. Other ``options`` go to :func:`make_synthetic_sample`."""
    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    if styles is not None and n_raters is not None and len(styles) != n_raters:
        raise ValueError(f"{len(styles)} styles given but n_raters={n_raters}")
    if styles is None:
        styles = DEFAULT_STYLES if n_raters is None else make_styles(n_raters)
    options.pop("return_truth", None)
    samples = []
    for i in range(n_cases):
        case_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
        pid = f"synth-{i:04d}"
        samples.append(make_synthetic_sample(shape, styles, case_seed, case_id=pid, patient_id=pid, **options))
    return ListDataset(samples, name=f"synthetic-{len(styles)}raters-seed{seed}", format="synthetic")


EXAMPLE_DESCRIPTION = "synthetic lesions, 4 raters with known styles (generous, tight, smooth, jittery)"


def write_example(folder: str | Path, n_cases: int = 4, seed: int = 0, name: str = "clinloop-example") -> Path:
    """The embedded example (no network, no ``../shared``): ``n_cases`` synthetic
    128² cases with the four :data:`DEFAULT_STYLES` raters, written once in the
    canonical layout at ``folder`` (all-or-nothing) and reused afterwards. Used by
    ``clinloop demo`` and by ``clinloop serve`` without ``--data``. Returns ``folder``."""
    from .readers.canonical import write_canonical

    folder = Path(folder)
    if not folder.exists():
        write_canonical(make_synthetic_dataset(n_cases, (128, 128), seed=seed), folder, name=name,
                        description=EXAMPLE_DESCRIPTION)
    return folder
