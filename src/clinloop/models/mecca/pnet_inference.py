"""Inference-time refinements of the P-Net's prediction (not in mecca.txt; both off by default).

The P-Net is MECCA's non-interactive segmenter: evaluated alone (``mecca-unet`` models, the
protocol's ``pnet``) and as the start ``p^(0)`` of the interactive models (``cfg.init``). Two
standard refinements of a segmenter's output, switched on per model in its ``config.json``:

* ``MECCAConfig.flip_average`` (test-time augmentation): the probability is the mean over the
  image and its flips along each spatial axis (:func:`flip_average`), 1 + ndim forward passes;
  the volume models were trained with random in-plane flips (``--augment``), not along the slice
  axis, which is averaged too (what that gives is measured in the docs, not assumed);
* ``MECCAConfig.one_component``: the mask keeps its largest connected component
  (:func:`keep_largest_component`; face connectivity), for structures that are one object, such
  as the left atrium; not for BraTS whole tumour, which can have several foci.

Figures (held-back atrium volumes): docs/methods/mecca.md, "A better start without training".
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def flip_average(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """Mean of ``fn(image)`` and of ``fn`` on ``image`` ``(B, C, *spatial)`` flipped along each
    spatial axis (each output flipped back)."""
    dims = range(2, image.ndim)
    out = fn(image)
    for d in dims:
        out = out + torch.flip(fn(torch.flip(image, (d,))), (d,))
    return out / (1 + len(dims))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of the bool array ``mask`` (all False when empty)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def keep_largest_component(prob: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``prob`` ``(B, 1, *spatial)`` with every voxel above ``threshold`` outside the largest
    component of its image's mask set to 0 (islands removed)."""
    mask = (prob > threshold).cpu().numpy()
    keep = np.stack([largest_component(m[0])[None] for m in mask])
    drop = torch.from_numpy(mask & ~keep).to(prob.device)
    return prob.masked_fill(drop, 0.0)


def pnet_probability(net: torch.nn.Module, image: torch.Tensor, flips: bool = False,
                     one_component: bool = False) -> torch.Tensor:
    """The P-Net's probability ``sigmoid(net(image))`` for ``image`` ``(B, 1, *spatial)``, with the
    refinements the flags switch on (module docstring)."""
    def prob(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(net(x))

    p = flip_average(prob, image) if flips else prob(image)
    return keep_largest_component(p) if one_component else p
