"""The simulated user of SPA training beyond Alg. 1: corrective clicks and a box
as the first interaction (issue: clicks that are honoured).

Not in spa.txt (deviation). Algorithm 1 trains SPA on one first click followed
by candidate choices only, so a model trained that way ignores a later click:
with the chosen candidate as the mask prompt, spa-lidc put the clicked pixel on
the asked side for 4 % of corrective clicks on held-back LIDC slices. Following
the click-simulation practice of interactive segmentation (RITM, SAM: the next
click is drawn from the error of the current prediction), with probability
``click_prob`` a user iteration of training is a *corrective click* instead of
a candidate choice:

* the click is drawn from the current y_app's error regions (false negatives ->
  an include click, false positives -> an exclude click; region chosen with
  probability proportional to its area, then a uniform pixel:
  :func:`clinloop.training.click_litemedsam.sample_click`);
* it is appended to the point prompt and y_app itself (as ±4 logits) becomes
  the mask prompt -- exactly what :class:`clinloop.models.spa.model.SPAState`
  feeds at inference after a click;
* the loss gains ``click_weight`` times :func:`click_term`, the BCE of every
  sample's probability at each clicked pixel against the click's label, so
  every one of the N samples (and hence every candidate) honours the clicks.

With probability ``box_prob`` the first interaction is a box around y
(:func:`jittered_box`) instead of a point: LiteMedSAM was trained on boxes, the
workstation offers a box first, and the volume session prompts each next slice
with the box of the previous slice's mask.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def jittered_box(target: np.ndarray, rng: np.random.Generator, max_shift: float = 0.1, pad: int = 4,
                 shrink: float = 0.0) -> list[float]:
    """A box ``[x0, y0, x1, y1]`` around the foreground of ``target (H, W)`` bool, each side
    moved by a uniform integer in ``[-(shrink * side + pad), max_shift * side + pad]`` outwards
    (MedSAM's training boxes, ``shrink`` 0: the bounding box with a few pixels of random slack),
    clipped to the frame."""
    ys, xs = np.nonzero(target)
    if len(ys) == 0:
        raise ValueError("jittered_box: the target is empty")
    h, w = target.shape
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    sx, sy = max(1, int(max_shift * (x1 - x0 + 1)) + pad), max(1, int(max_shift * (y1 - y0 + 1)) + pad)
    ix, iy = int(shrink * (x1 - x0 + 1)) + pad, int(shrink * (y1 - y0 + 1)) + pad
    j = rng.integers([-ix, -iy, -ix, -iy], [sx + 1, sy + 1, sx + 1, sy + 1])
    box = [x0 - j[0], y0 - j[1], x1 + j[2], y1 + j[3]]
    box = [float(np.clip(box[0], 0, w - 1)), float(np.clip(box[1], 0, h - 1)),
           float(np.clip(box[2], 0, w - 1)), float(np.clip(box[3], 0, h - 1))]
    if box[2] < box[0]:
        box[0], box[2] = box[2], box[0]
    if box[3] < box[1]:
        box[1], box[3] = box[3], box[1]
    return box


def propagation_box(guides, rng: np.random.Generator, shrink: float = 0.0) -> list[float]:
    """The first prompt of a *propagation episode*: a volume session prompts each next slice with
    the box of the previous slice's mask (:func:`clinloop.interaction.propagation.propagated_box`),
    so with probability ``propagation_prob`` (always for an end case, whose target is empty) an
    episode on a 3-D source's slice starts from the box of one of its neighbours' masks
    (``guides``, non-empty ``(256, 256)`` bool, drawn uniformly), each side moved by a uniform
    integer in ``[-3, 0.05 * side + 3]`` outwards: the slack of a session's own (imperfect)
    previous mask. Not in spa.txt (deviation): it teaches the model to follow the structure into
    the next slice, where it grows, shrinks or ends (target empty), instead of reading the box as
    the outline of what it must segment. Measured (docs/methods/spa.md, 2026-12-04): with
    ``propagation_prob`` 0.5 volume sessions stop early (atrium 0.716 -> 0.398 after the click),
    so no shipped model uses it. ``shrink`` > 0 lets each side also move inwards by up to that share
    of the side: a session's previous mask is often smaller than the structure (the atrium's held-back
    sessions lose 0.11 Dice to boxes that shrink from slice to slice: ``benchmarks/volume_oracle.py``)."""
    g = guides[int(rng.integers(len(guides)))]
    return jittered_box(np.asarray(g, bool), rng, max_shift=0.05, pad=3, shrink=shrink)


def add_corrective_click(points, target: np.ndarray, current: np.ndarray, rng: np.random.Generator,
                         device=None):
    """Append a click drawn from the error of ``current`` against ``target`` (both ``(256, 256)``
    bool, model frame) to ``points`` (``((1, P, 2), (1, P))`` or None); returns the new prompt, or
    None when ``current`` has no error (nothing to correct)."""
    from clinloop.training.click_litemedsam import sample_click

    x, y, label = sample_click(np.asarray(target, bool), np.asarray(current, bool), rng)
    if label < 0:
        return None
    dev = device if device is not None else (points[0].device if points is not None else "cpu")
    xy = torch.tensor([[[x, y]]], dtype=torch.float32, device=dev)
    lab = torch.tensor([[label]], dtype=torch.long, device=dev)
    if points is None:
        return xy, lab
    return torch.cat([points[0], xy], 1), torch.cat([points[1], lab], 1)


def click_term(logits: torch.Tensor, points) -> torch.Tensor:
    """BCE of ``sigmoid(logits (N, H, W))`` at each clicked pixel against its label (1 include,
    0 exclude), averaged over the N samples and the clicks; padding points (label < 0) are skipped.
    ``points``: ``((1, P, 2) xy, (1, P) labels)`` in the frame of ``logits``."""
    xy, lab = points[0][0], points[1][0]
    keep = lab >= 0
    if not bool(keep.any()):
        return logits.new_zeros(())
    h, w = logits.shape[-2:]
    xs = xy[keep, 0].round().long().clamp(0, w - 1)
    ys = xy[keep, 1].round().long().clamp(0, h - 1)
    at = logits[:, ys, xs]  # (N, P)
    return F.binary_cross_entropy_with_logits(at, lab[keep].float().expand_as(at))
