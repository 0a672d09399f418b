"""Pictures people would rather see than read: a proposal with its uncertainty
and its candidates drawn as +/- differences (spa.txt §3.4), advice regions.
matplotlib is imported lazily (Agg backend) so the library never needs a display."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clinloop.interaction.proposal import Proposal

ADD_RGB = (0.10, 0.85, 0.25)  # candidate adds these pixels to the proposal
REMOVE_RGB = (0.95, 0.20, 0.60)  # candidate removes these pixels


def _grey(image: np.ndarray) -> np.ndarray:
    """(C,H,W) or (H,W) -> (H,W,3) float in [0,1] for display (min-max)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a


def overlay(image: np.ndarray, masks_colours: list[tuple[np.ndarray, tuple[float, float, float]]], alpha: float = 0.55) -> np.ndarray:
    """Blend binary masks in the given colours over a grey/RGB image -> (H,W,3)."""
    rgb = _grey(image).copy()
    for m, colour in masks_colours:
        m = np.asarray(m, bool)
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(colour)
    return rgb


def plot_proposal(image: np.ndarray, proposal: Proposal, path: str | Path, target: np.ndarray | None = None,
                  title: str | None = None, dice_per_iteration: list[float] | None = None,
                  clicks: list[tuple[float, float, bool]] | None = None) -> Path:
    """Save a one-row figure: image (+ target outline), proposal, uncertainty,
    each candidate as its +/- difference to the proposal, advice regions, and
    optionally the Dice curve; ``clicks`` = ``(x, y, positive)`` are marked on
    the first two panels. 2-D only (pass a slice for volumes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    from clinloop.atomic import atomic_path

    diffs = proposal.candidate_differences()
    k = 0 if diffs is None else len(diffs)
    n = 3 + k + (1 if proposal.advice else 0) + (1 if dice_per_iteration else 0)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), dpi=110)
    axes = np.atleast_1d(axes)
    i = 0
    base = _grey(image)
    if target is not None:
        base = overlay(image, [(find_boundaries(target, mode="inner"), (1.0, 0.85, 0.0))], alpha=1.0)
    axes[i].imshow(base); axes[i].set_title("image" + (" + target" if target is not None else ""), fontsize=9); i += 1
    axes[i].imshow(overlay(image, [(proposal.mask, (0.2, 0.55, 1.0))])); axes[i].set_title(f"proposal (it. {proposal.iteration})", fontsize=9); i += 1
    im = axes[i].imshow(proposal.uncertainty, cmap="magma"); axes[i].set_title("uncertainty", fontsize=9)
    fig.colorbar(im, ax=axes[i], fraction=0.046, pad=0.02); i += 1
    for j in range(k):
        axes[i].imshow(overlay(image, [(proposal.mask, (0.2, 0.55, 1.0)), (diffs[j, 0], ADD_RGB), (diffs[j, 1], REMOVE_RGB)]))
        axes[i].set_title(f"candidate {j + 1}  +{int(diffs[j, 0].sum())} / -{int(diffs[j, 1].sum())}", fontsize=9); i += 1
    if proposal.advice:
        cols = [(r, c) for r, c in zip(proposal.advice, plt.cm.tab10.colors)]
        axes[i].imshow(overlay(image, cols)); axes[i].set_title(f"advice ({len(proposal.advice)} regions)", fontsize=9); i += 1
    for ax in axes[:i]:
        ax.set_xticks([]); ax.set_yticks([])
    for x, y, positive in clicks or []:
        for ax in axes[:2]:
            ax.plot([x], [y], marker="o", ms=6, mec="white", mfc=(0.1, 0.8, 0.2) if positive else (0.9, 0.1, 0.1))
    if dice_per_iteration:
        ax = axes[i]
        ax.plot(range(1, len(dice_per_iteration) + 1), dice_per_iteration, "o-")
        ax.set_xlabel("iteration", fontsize=8); ax.set_ylabel("Dice to target", fontsize=8)
        ax.set_ylim(0, 1); ax.grid(alpha=0.3); ax.set_title("Dice per iteration", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
