"""Orthogonal refinement of a volume proposal (not in the papers; issue 13).

A volume session follows the structure along one axis (:mod:`.volume`): each slice is
prompted by the box of the previous slice's own mask, so errors compound away from the click
(the mask drifts smaller inside the structure and past or short of its ends). The two other
axes see the same structure across those slices: a sagittal plane shows where an axial
propagation ran past the structure's end as an edge inside one image.

After the propagation along the session's axis a, for each other axis b and each plane t along
b that the propagated y_app touches, the decoder is prompted with the **box** of y_app's plane t
(each side moved outwards by ``VolumeConfig.orthogonal_margin`` of its side,
:func:`clinloop.interaction.propagation.propagated_box`) under the **same N latents** z_n, so
sample n gives one mask per plane along every axis. Sample n's fused 3-D mask is the **majority
of its three** (a voxel is foreground in y_n when at least two of the three axes put it there;
an axis whose planes were not prompted votes background), and the proposal follows from the N
fused samples exactly as from the N propagated ones: y_app = 1_{0.5}(mean_n y_n), the K
candidates are K-means over the fused 3-D samples (:func:`fused_candidates`), so each candidate
stays one latent style across all three axes.

Measured on the held-back volumes of ``spa-general`` (docs/methods/spa.md "Orthogonal
refinement"). The planes are prompted by a box only (no user points, no chosen candidate: the
corrective-click constraint and the next step's propagation carry those). Voxels outside the
box around the propagated samples (grown by a tenth of its side + 4 voxels per side) are
background in every fused sample. Skipped for short structures: when the propagated slices
span less than ``orthogonal_min_extent`` (16) in-plane pixels (:func:`propagated_extent`), the
structure is a thin band of the orthogonal planes (a 5-slice LIDC nodule: 5 rows of a 128-wide
plane, 10 rows of the 256² model frame, under 3 rows of the decoder's 64² embedding grid); on
LIDC nodule volumes (1-13 slices, no spacing in the crops) the refinement lost ``spa-lidc``
0.011 3-D Dice on 30 of its training volumes and 0.041 on 20 held-back ones
(docs/methods/spa.md "Orthogonal refinement"). A one-slice volume stays exactly a 2-D session.
"""
from __future__ import annotations

import numpy as np
import torch

from clinloop.interaction import planes as pl
from clinloop.interaction.propagation import SliceResult, propagated_box

__all__ = ["fused_candidates", "fused_proposal", "orthogonal_samples", "plane_samples", "pooled_counts",
           "propagated_extent", "refine_region", "report_fused"]


def plane_samples(out, s) -> torch.Tensor:
    """The N samples of one decoded plane (``_Out``: ``ys`` cropped to ``box`` in the 256² model
    frame) in the plane's own grid: ``(N, rows, cols)`` bool, each sample resized as the
    session resizes its probability (crop the padding, bilinear, then the plane grid)."""
    from clinloop.models.litemedsam.preprocess import postprocess_logits

    n = out.ys.shape[0]
    full = torch.zeros(n, 256, 256)
    r0, r1, c0, c1 = out.box
    if r1 > r0 and c1 > c0:
        full[:, r0:r1, c0:c1] = out.ys.float()
    return s.grid.from_model(postprocess_logits(full, s.info)) > 0.5


def refine_region(prob: np.ndarray, grow: float = 0.1, pad: int = 4) -> tuple[slice, slice, slice] | None:
    """The region fused samples may occupy: the box of ``prob > 0`` (any propagated sample),
    each side grown by ``grow`` of its length + ``pad`` voxels, clipped; None when empty."""
    nz = np.nonzero(prob > 0)
    if not len(nz[0]):
        return None
    out = []
    for ax, n in zip(nz, prob.shape):
        lo, hi = int(ax.min()), int(ax.max()) + 1
        g = int(np.ceil(grow * (hi - lo))) + pad
        out.append(slice(max(0, lo - g), min(n, hi + g)))
    return tuple(out)


def _add_plane(votes: np.ndarray, region, axis: int, t: int, samples: torch.Tensor) -> None:
    """votes (N, *region) += one plane's samples (N, rows, cols) at index t along ``axis``."""
    rows, cols = [r for i, r in enumerate(region) if i != axis]
    if not region[axis].start <= t < region[axis].stop:
        return
    view = pl.take(votes, axis, t - region[axis].start)
    view += samples[:, rows, cols].numpy()


@torch.inference_mode()
def orthogonal_samples(state, outs: dict, z: torch.Tensor) -> tuple[np.ndarray, tuple, int]:
    """The fused samples of one step (module docstring): ``(N, *region)`` bool, the region (a
    tuple of slices of the volume) and the number of orthogonal planes decoded. ``outs`` maps
    slice index -> ``_Out`` along ``state.axis``; their probability planes and y_app define the
    prompts; ``z`` are the step's N latents."""
    a, shape, vcfg = state.axis, state.shape, state.vcfg
    prob = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    for t, o in outs.items():
        pl.put(prob, a, t, o.prob.numpy())
        pl.put(mask, a, t, o.mask)
    region = refine_region(prob)
    n = z.shape[0]
    if region is None or np.prod([r.stop - r.start for r in region]) > vcfg.orthogonal_max_voxels:
        return np.zeros((n, 0, 0, 0), bool), (slice(0, 0),) * 3, 0
    votes = np.zeros((n, *[r.stop - r.start for r in region]), np.uint8)
    for t, o in outs.items():
        _add_plane(votes, region, a, t, plane_samples(o, state.cache[(a, t)]))
    decoded = 0
    for b in (x for x in range(3) if x != a):
        for t in np.flatnonzero(mask.any(tuple(i for i in range(3) if i != b))):
            plane = pl.take(mask, b, int(t))
            s = state._slice(int(t), b)
            m = s.plane_to_model(plane)
            if not m.any():
                continue
            o = state._run(int(t), s, (None, propagated_box(m, vcfg.orthogonal_margin), None), z)
            _add_plane(votes, region, b, int(t), plane_samples(o, s))
            decoded += 1
    return votes >= 2, region, decoded


def pooled_counts(samples: np.ndarray, pool: int = 2) -> torch.Tensor:
    """Foreground count of each ``pool``³ block of 3-D samples ``(N, d, h, w)`` bool (zero-padded to
    whole blocks) as ``(N, blocks)`` float: the K-means features of :func:`fused_candidates`."""
    n, *dims = samples.shape
    padded = np.zeros((n, *[-(-d // pool) * pool for d in dims]), np.uint8)
    padded[:, :dims[0], :dims[1], :dims[2]] = samples
    d, h, w = (x // pool for x in padded.shape[1:])
    counts = padded.reshape(n, d, pool, h, pool, w, pool).sum((2, 4, 6), dtype=np.uint16)
    return torch.from_numpy(counts.reshape(n, -1).astype(np.float32))


def fused_candidates(samples: np.ndarray, k: int, seed: int, pool: int = 2) -> np.ndarray:
    """{r_k} over 3-D samples ``(N, d, h, w)`` bool (spa.txt §3.4): K-means (seeded) over the
    samples' ``pool``³ block counts (:func:`pooled_counts`), candidate k = the 0.5-binarised
    full-resolution mean of cluster k's members, ordered by cluster size; duplicates fill the
    slots when fewer than K samples are distinct. Returns ``(K, d, h, w)`` bool."""
    from clinloop.models.spa.candidates import kmeans

    n = samples.shape[0]
    kk = min(k, len({row.tobytes() for row in np.packbits(samples.reshape(n, -1), axis=1)}))
    feats = pooled_counts(samples, pool) if samples[0].size else torch.zeros(n, 1)
    _, labels = kmeans(feats, kk, seed=seed)
    labels = labels.numpy()
    sizes = np.bincount(labels, minlength=kk)
    rank = list(np.argsort(-sizes, kind="stable"))
    rank += [rank[i % kk] for i in range(k - kk)]
    out = np.zeros((k, *samples.shape[1:]), bool)
    for j, c in enumerate(rank):
        out[j] = 2 * samples[labels == c].sum(0, dtype=np.uint16) > sizes[c]
    return out


def propagated_extent(state, outs: dict) -> float:
    """How far the propagated slices reach along the session's axis, in in-plane pixels: their
    count x the slice spacing / the finest spacing of the two other axes (the height of the
    structure in the orthogonal planes' square-pixel grid, :func:`clinloop.interaction.planes.plane_grid`)."""
    sp = state.spacing
    return len(outs) * sp[state.axis] / min(v for i, v in enumerate(sp) if i != state.axis)


def fused_proposal(state, outs: dict, z: torch.Tensor, step_seed: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The step's probability ``(D, H, W)`` (mean of the N fused samples) and K candidates
    ``(K, D, H, W)`` after orthogonal refinement, and the planes decoded for it; None when the
    refinement does not apply (off, a :func:`propagated_extent` below ``orthogonal_min_extent``, or
    a region of more than ``orthogonal_max_voxels``)."""
    vcfg = state.vcfg
    if not vcfg.orthogonal or propagated_extent(state, outs) < vcfg.orthogonal_min_extent:
        return None
    samples, region, decoded = orthogonal_samples(state, outs, z)
    if not samples[0].size:
        return None
    prob = np.zeros(state.shape, np.float32)
    prob[region] = samples.mean(0, dtype=np.float32)
    cands = np.zeros((state.model.config.n_candidates, *state.shape), bool)
    cands[(slice(None), *region)] = fused_candidates(samples, len(cands), step_seed)
    return prob, cands, decoded


def report_fused(state, outs: dict, mask: np.ndarray, prob: np.ndarray) -> None:
    """After refinement, tell ``state.progress`` the fused result along the session's axis: every
    slice the propagation reported or the fused mask holds, in order, ``done`` counting the slices
    with a mask, so a progress display ends on the proposal the step returns."""
    if state.progress is None:
        return
    a = state.axis
    held = np.flatnonzero(mask.any(tuple(i for i in range(3) if i != a)))
    done = 0
    for t in sorted(set(outs) | {int(i) for i in held}):
        m = pl.take(mask, a, t)
        done += bool(m.any())
        state.progress(SliceResult(a, t, m.copy(), pl.take(prob, a, t).copy(), done))
