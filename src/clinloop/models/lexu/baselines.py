"""LEXU's baselines (§3 "Comparison"), built on the same backbone as LEXU.

Named variants, one class per method (chosen by name in :data:`VARIANTS`):

* :class:`PlainUNet` (``unet``): one head, majority-vote BCE. Its only
  uncertainty is the Bernoulli variance ``p(1-p)`` of its output (our choice: a
  plain U-Net has no sample set).
* :class:`DeepEnsemble` (``ensemble``): ``n_members`` plain U-Nets (paper: 5)
  with different initialisations; prediction = member mean, uncertainty =
  variance across members; ``n_members`` forward passes. Deviation: members are
  trained jointly on the same batch order (independent parameters and Adam
  states, so each member's updates are those of separate training). With the
  frozen TinyViT encoder the members share the encoder (it is identical in
  all of them), so only the decoders run ``n_members`` times.
* :class:`LayerEnsemble` (``layer-ensemble``, Kushibar et al. 2022): LEXU's
  multi-head network with every head trained on the majority vote, no DGM or
  MRO; prediction = head mean, uncertainty = head variance. Deviation: our
  encoder has no encoder-side heads, so there is nothing to skip (the paper
  skips the first five of ResNet50's).
* :class:`MCDropout` (``mc-dropout``, Gal & Ghahramani 2016): plain U-Net with
  ``Dropout2d(p)`` in the deepest blocks, kept active at test time for
  ``mc_samples`` passes (BatchNorm stays in eval mode).
"""
from __future__ import annotations

import torch
from torch import nn

from clinloop.models.lexu.network import LEXU, UncertaintySegmenter, make_unet


def _bce(logits, masks, valid):
    from clinloop.models.lexu.losses import majority_bce_loss

    loss = majority_bce_loss(logits, masks, valid)
    return loss, {"bce": float(loss.detach())}


class PlainUNet(UncertaintySegmenter):
    method = "unet"

    def __init__(self, in_channels=3, widths=(16, 24, 32, 48, 64, 96), encoder="cnn"):
        super().__init__()
        self.net = make_unet(in_channels, widths, 1, encoder)

    def train_logits(self, x, flip_dims=()):
        return self.net(x, flip_dims)

    def loss(self, logits, masks, valid=None, generator=None):
        return _bce(logits, masks, valid)

    def uncertainty(self, probs):
        p = probs[:, 0]
        return p * (1 - p)


class DeepEnsemble(UncertaintySegmenter):
    method = "ensemble"

    def __init__(self, in_channels=3, widths=(16, 24, 32, 48, 64, 96), encoder="cnn", n_members=5):
        super().__init__()
        if n_members < 2:
            raise ValueError(f"an ensemble needs >= 2 members, got {n_members}")
        self.members = nn.ModuleList(make_unet(in_channels, widths, 1, encoder) for _ in range(n_members))
        self.forward_passes = n_members

    def train_logits(self, x, flip_dims=()):
        return torch.cat([m(x, flip_dims) for m in self.members], dim=1)

    def loss(self, logits, masks, valid=None, generator=None):
        return _bce(logits, masks, valid)


class LayerEnsemble(UncertaintySegmenter):
    method = "layer-ensemble"

    def __init__(self, in_channels=3, widths=(16, 24, 32, 48, 64, 96), encoder="cnn"):
        super().__init__()
        self.net = make_unet(in_channels, widths, None, encoder)

    def train_logits(self, x, flip_dims=()):
        return self.net(x, flip_dims)

    def loss(self, logits, masks, valid=None, generator=None):
        return _bce(logits, masks, valid)


class MCDropout(UncertaintySegmenter):
    method = "mc-dropout"

    def __init__(self, in_channels=3, widths=(16, 24, 32, 48, 64, 96), encoder="cnn", dropout=0.2, mc_samples=8):
        super().__init__()
        if not 0 < dropout < 1:
            raise ValueError(f"mc-dropout needs dropout in (0, 1), got {dropout}")
        if mc_samples < 2:
            raise ValueError(f"mc-dropout needs >= 2 samples, got {mc_samples}")
        self.net = make_unet(in_channels, widths, 1, encoder, dropout)
        self.forward_passes = int(mc_samples)

    def train_logits(self, x, flip_dims=()):
        return self.net(x, flip_dims)

    def loss(self, logits, masks, valid=None, generator=None):
        return _bce(logits, masks, valid)

    @torch.no_grad()
    def sample_probs(self, x):
        drops = [m for m in self.modules() if isinstance(m, nn.Dropout2d)]
        was = [m.training for m in drops]
        for m in drops:
            m.train()  # dropout on, BatchNorm untouched
        try:
            return torch.cat([torch.sigmoid(self.net(x)) for _ in range(self.forward_passes)], dim=1)
        finally:
            for m, w in zip(drops, was):
                m.train(w)


VARIANTS: dict[str, type[UncertaintySegmenter]] = {
    "lexu": LEXU,
    "unet": PlainUNet,
    "ensemble": DeepEnsemble,
    "layer-ensemble": LayerEnsemble,
    "mc-dropout": MCDropout,
}
