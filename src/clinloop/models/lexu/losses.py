"""LEXU's losses (§2.2, Eq. 1) and the baselines' segmentation losses.

Symbols (LEXU §2.1–2.2):

* ``M = {M_j}_{j=1..N_m}``: the rater masks of an image, here ``masks (B, R, H, W)``
  with ``valid (B, R)`` marking raters whose mask exists (RIGA's unrecoverable
  outlines are skipped, not treated as empty).
* ``M̂ = {M̂_j}_{j=1..N_p}``: the head predictions, here ``logits (B, N_p, H, W)``
  in decoder order; ``logits[:, -1]`` is the last head ``M̂_1``.
* ``S(M)``: soft majority vote (mean of the valid rater masks).
* ``RS(M)``: one rater mask sampled uniformly among the valid raters, drawn
  independently for every image and every head ``j >= 2``.
* ``H``: rater variance heatmap, pixel-wise variance of the valid masks;
  ``Ĥ``: head variance heatmap, pixel-wise variance of ``sigmoid(M̂_j)``.
  Both are population variances (ddof 0).

Eq. 1:  ``L = α·(L_BCE(S(M), M̂_1) + Σ_{j=2..N_p} L_BCE(RS(M), M̂_j)) + β·L_RMSE(H, Ĥ)``.

``L_BCE`` is the mean binary cross-entropy over pixels and batch;
``L_RMSE`` is the root of the mean squared difference over all pixels of the
batch (the paper does not say whether the root is taken per image; we take it
over the batch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from clinloop.models.lexu.heads import head_variance

_EPS = 1e-12  # inside the square root: keeps the RMSE gradient finite at H == Ĥ


def _check(logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, N_p, H, W), got {tuple(logits.shape)}")
    if masks.ndim != 4 or masks.shape[0] != logits.shape[0] or masks.shape[2:] != logits.shape[2:]:
        raise ValueError(f"masks must be (B, R, H, W) matching logits {tuple(logits.shape)}, got {tuple(masks.shape)}")
    if valid is None:
        valid = torch.ones(masks.shape[:2], dtype=torch.bool, device=masks.device)
    valid = valid.bool()
    if valid.shape != masks.shape[:2]:
        raise ValueError(f"valid must be (B, R) = {tuple(masks.shape[:2])}, got {tuple(valid.shape)}")
    if not valid.any(1).all():
        raise ValueError("every image needs at least one valid rater mask")
    return valid


def _valid(masks: torch.Tensor, valid: torch.Tensor | None, where: str) -> torch.Tensor:
    """``valid (B, R)`` as bool (all True for ``None``). An image with **zero valid
    raters** is a ``ValueError`` -- the one rule shared with the numpy fusions in
    :mod:`clinloop.data.fusion` (there is no target to learn from; an all-zero label
    would silently teach "background")."""
    if masks.ndim < 3:
        raise ValueError(f"{where}: masks must be (B, R, *spatial), got {tuple(masks.shape)}")
    valid = torch.ones(masks.shape[:2], dtype=torch.bool, device=masks.device) if valid is None else valid.bool()
    if valid.shape != masks.shape[:2]:
        raise ValueError(f"{where}: valid must be (B, R) = {tuple(masks.shape[:2])}, got {tuple(valid.shape)}")
    if not bool(valid.any(1).all()):
        bad = [int(i) for i in torch.nonzero(~valid.any(1)).flatten()]
        raise ValueError(f"{where}: zero valid raters for image(s) {bad} of the batch")
    return valid


def soft_label(masks: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``S(M)``: mean of the valid rater masks. ``(B, R, H, W) -> (B, H, W)``.

    The batched torch twin of :func:`clinloop.data.fusion.soft_label` (equal per
    image, tested); zero valid raters for an image -> ``ValueError``."""
    valid = _valid(masks, valid, "soft_label")
    w = valid.float()[..., None, None]
    return (masks.float() * w).sum(1) / w.sum(1).clamp_min(1)


def rater_variance(masks: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``H``: pixel-wise variance of the valid binary masks, ``S(M)(1 - S(M))``
    (for 0/1 masks the population variance equals ``p(1-p)``). ``(B,R,H,W) -> (B,H,W)``.
    Twin of :func:`clinloop.data.fusion.rater_variance`; zero valid raters -> ``ValueError``."""
    valid = _valid(masks, valid, "rater_variance")
    w = valid.float()[..., None, None]
    n = w.sum(1).clamp_min(1)
    mean = (masks.float() * w).sum(1) / n
    return ((masks.float() - mean[:, None]) ** 2 * w).sum(1) / n


def majority_vote(masks: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Majority vote of the valid raters: ``S(M) > 0.5`` (ties go to background),
    as float ``(B, H, W)``. Used by the plain U-Net, ensemble, layer-ensemble
    and MC-dropout baselines. Twin of :func:`clinloop.data.fusion.majority_vote` (the
    same strict majority, integer vote count, so no float rounding at a tie);
    zero valid raters -> ``ValueError``."""
    valid = _valid(masks, valid, "majority_vote")
    votes = ((masks > 0) & valid[..., None, None]).sum(1)
    return (2 * votes > valid.sum(1)[:, None, None]).float()


def disagreement_guidance_loss(H: torch.Tensor, H_hat: torch.Tensor) -> torch.Tensor:
    """DGM (LEXU §2.2): ``L_RMSE(H, Ĥ) = sqrt(mean((H - Ĥ)²))`` over all pixels
    of the batch. ``H, Ĥ``: ``(B, H, W)`` heatmaps of the same shape -> scalar."""
    if H.shape != H_hat.shape:
        raise ValueError(f"heatmaps differ in shape: H {tuple(H.shape)} vs Ĥ {tuple(H_hat.shape)}")
    return torch.sqrt(((H.float() - H_hat) ** 2).mean() + _EPS)


def mro_targets(
    masks: torch.Tensor, n_heads: int, valid: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """MRO targets (LEXU §2.2): ``S(M)`` for the last head ``M̂_1`` and an
    independently sampled rater ``RS(M)`` for every other head.

    ``masks (B, R, H, W) -> targets (B, N_p, H, W)`` float, ``targets[:, -1] = S(M)``.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")
    valid = _valid(masks, valid, "mro_targets")
    b = masks.shape[0]
    out = [None] * n_heads
    out[-1] = soft_label(masks, valid)
    if n_heads > 1:
        # uniform over valid raters: sample from the normalised validity weights
        idx = torch.multinomial(valid.float(), n_heads - 1, replacement=True, generator=generator)  # (B, N_p-1)
        picked = masks.float()[torch.arange(b)[:, None], idx]  # (B, N_p-1, H, W)
        for j in range(n_heads - 1):
            out[j] = picked[:, j]
    return torch.stack(out, dim=1)


def multi_rater_optimisation_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    valid: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MRO: ``L_BCE(S(M), M̂_1) + Σ_{j=2..N_p} L_BCE(RS(M), M̂_j)``.

    ``logits (B, N_p, H, W)``, ``masks (B, R, H, W)``, ``valid (B, R)`` -> scalar
    (a sum over heads of per-head mean BCE).
    """
    valid = _check(logits, masks, valid)
    t = mro_targets(masks, logits.shape[1], valid, generator)
    per = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean(dim=(0, 2, 3))
    return per.sum()


def boundary_band(masks: torch.Tensor, valid: torch.Tensor | None = None, radius: int = 1) -> torch.Tensor:
    """Pixels within ``radius`` pixels (chessboard distance) of the edge of the valid raters'
    union: its (2r+1)² dilation minus its (2r+1)² erosion. ``(B, R, H, W) -> (B, H, W)``
    float 0/1; empty where no rater marked anything."""
    if radius < 1:
        raise ValueError(f"radius must be >= 1 px, got {radius}")
    valid = _valid(masks, valid, "boundary_band")
    union = ((masks > 0) & valid[..., None, None]).any(1).float()[:, None]
    k = 2 * radius + 1
    dil = F.max_pool2d(union, k, stride=1, padding=radius)
    ero = 1 - F.max_pool2d(1 - union, k, stride=1, padding=radius)
    return (dil - ero)[:, 0]


def distortion_disagreement_target(H: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor | None,
                                   strength: torch.Tensor, D: float) -> torch.Tensor:
    """Not in the paper (``--distortion-disagreement D``): the DGM target of a distorted
    training image, ``H' = max(H, D · d_b · B_ρ)``, with ``d_b`` in [0, 1] the image's
    distortion strength (0 for a clean image, where ``H' = H``) and ``B_ρ`` the raters'
    :func:`boundary_band` of radius ``ρ = 1`` px, ``2`` px once ``d_b ≥ 0.5`` (a strong
    distortion hides the edge over a wider ring). It teaches the heads to disagree about
    the edge of the structure the more the image is degraded: the training signal Eq. 1
    lacks for the example-difficulty test (§4.3). The idea is Outlier Exposure's
    (Hendrycks et al., ICLR 2019: raise the uncertainty target on degraded or outlying
    inputs). ``H (B, H, W)``, ``strength (B,)``; ``D`` in [0, 0.25] (0.25: a 2–2 split
    of four raters, the largest variance of binary masks)."""
    if strength.shape != H.shape[:1]:
        raise ValueError(f"strength must be (B,) = ({H.shape[0]},), got {tuple(strength.shape)}")
    if bool((strength < 0).any()) or bool((strength > 1).any()):
        raise ValueError(f"distortion strength must lie in [0, 1], got {strength.tolist()}")
    if not 0 <= D <= 0.25:
        raise ValueError(f"D must lie in [0, 0.25] (a variance of binary masks), got {D}")
    d = strength.to(H.device, torch.float32)
    band = torch.where((d >= 0.5)[:, None, None], boundary_band(masks, valid, 2), boundary_band(masks, valid, 1))
    return torch.maximum(H.float(), (D * d)[:, None, None] * band)


def lexu_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    valid: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 5.0,
    generator: torch.Generator | None = None,
    dgm_rows: torch.Tensor | None = None,
    distortion: torch.Tensor | None = None,
    distortion_disagreement: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 1: ``L = α·MRO + β·L_RMSE(H, Ĥ)``.

    Returns the scalar loss and its parts ``{"mro", "dgm"}`` as floats.
    ``α, β`` must be finite and ``>= 0`` (ValueError otherwise).
    ``dgm_rows (B,)`` bool (not in the paper; ``--dgm-clean-only``): the DGM term over
    those images only (0 when none is), MRO over all. ``distortion (B,)``, the images'
    distortion strengths, with ``distortion_disagreement`` ``D > 0`` (not in the paper;
    ``--distortion-disagreement``): the DGM target is :func:`distortion_disagreement_target`
    instead of ``H``.
    """
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not (float(v) >= 0 and float(v) < float("inf")):
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    valid = _check(logits, masks, valid)
    mro = multi_rater_optimisation_loss(logits, masks, valid, generator)
    H = rater_variance(masks, valid)
    if distortion is not None and distortion_disagreement > 0:
        H = distortion_disagreement_target(H, masks, valid, distortion, distortion_disagreement)
    H_hat = head_variance(torch.sigmoid(logits))
    if dgm_rows is None:
        dgm = disagreement_guidance_loss(H, H_hat)
    elif bool(dgm_rows.any()):
        dgm = disagreement_guidance_loss(H[dgm_rows], H_hat[dgm_rows])
    else:
        dgm = H_hat.sum() * 0.0
    return alpha * mro + beta * dgm, {"mro": float(mro.detach()), "dgm": float(dgm.detach())}


def majority_bce_loss(logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Baselines: ``Σ_j L_BCE(majority vote, M̂_j)`` over every head / member.
    ``logits (B, S, H, W)`` -> scalar (sum over ``S`` of per-output mean BCE)."""
    valid = _check(logits, masks, valid)
    t = majority_vote(masks, valid)[:, None].expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean(dim=(0, 2, 3)).sum()
