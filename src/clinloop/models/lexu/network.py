"""LEXU's U-Net-like encoder/decoder with one segmentation head per decoder stage
(LEXU §2.1, Fig. 1).

The encoder has ``N_E`` blocks; block 0 keeps full resolution and block ``k``
works at stride ``2**k``. The decoder has ``N_D = N_E - 1`` blocks (upsample ×2,
concatenate the encoder skip, two conv–BN–ReLU). A segmentation head
(:mod:`clinloop.models.lexu.heads`) sits on every decoder output, so the network
emits ``N_p = N_D`` predictions ``F(X) = {M̂_j}`` in one forward pass.

Deviation from the paper: the paper's encoder is an ImageNet-pretrained
ResNet50 (``N_E = 6, N_D = 5``). We cannot download it, so the default encoder is
a from-scratch CNN (:class:`CNNEncoder`) with six blocks by default, which keeps
``N_E = 6, N_D = 5`` and runs on a CPU at 96²–128² input. The pretrained
LiteMedSAM TinyViT encoder (``clinloop.models.litemedsam.image_encoder``) was
the second choice and is not offered: measured on this project's shared 2-core
CPU (1 thread, load ≈ 15) its forward pass alone took 13.4 s per 256² image,
against 0.06–0.08 s for the whole CNN LEXU at 96², and it yields one stride-16
feature map (a U-Net needs a pyramid), so training it here was out of reach.

Head order: ``forward`` returns heads in decoder order, coarse to fine, so
``logits[:, -1]`` is the last (full-resolution) head, the paper's ``M̂_1``.
Only 2-D inputs are supported.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from clinloop.models.lexu.heads import SegmentationHead

ENCODERS = ("cnn",)


class ConvBlock(nn.Sequential):
    """Two (3×3 conv → BatchNorm → ReLU) layers, optional dropout at the end
    (used by the MC-dropout baseline). ``(B, c_in, H, W) -> (B, c_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class CNNEncoder(nn.Module):
    """From-scratch CNN encoder with ``N_E = len(widths)`` blocks.

    ``forward(x (B, C, H, W)) -> list`` of ``N_E`` feature maps; map ``k`` has
    ``widths[k]`` channels and spatial size ``(H / 2**k, W / 2**k)``.
    """

    def __init__(self, in_channels: int, widths: Sequence[int], dropout: float = 0.0):
        super().__init__()
        widths = list(widths)
        self.widths = widths
        blocks = [ConvBlock(in_channels, widths[0])]
        for k in range(1, len(widths)):
            # dropout only in the deepest encoder blocks, where MC-dropout is usually placed
            blocks.append(ConvBlock(widths[k - 1], widths[k], dropout if k >= len(widths) - 2 else 0.0))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for k, block in enumerate(self.blocks):
            if k:
                x = F.max_pool2d(x, 2)
            x = block(x)
            feats.append(x)
        return feats


class DecoderBlock(nn.Module):
    """Upsample ×2, concatenate the encoder skip, ConvBlock (LEXU §2.1)."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, dropout: float = 0.0):
        super().__init__()
        self.conv = ConvBlock(c_in + c_skip, c_out, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class MultiHeadUNet(nn.Module):
    """U-Net with a segmentation head on the last ``n_heads`` decoder stages.

    Args:
        in_channels: image channels ``C``.
        widths: encoder widths, one per block (``N_E = len(widths) >= 2``).
        n_heads: heads on the last ``n_heads`` decoder stages; ``None`` = all
            ``N_D = N_E - 1`` stages (LEXU, layer ensembles); ``1`` = plain U-Net.
        encoder: ``"cnn"`` (from scratch).
        dropout: dropout probability in the deepest blocks (MC-dropout baseline).

    ``forward(x (B, C, H, W)) -> logits (B, N_p, H, W)``; ``H, W`` must be
    divisible by ``2**(N_E-1)`` for exact skips (other sizes still work through
    interpolation). ``logits[:, -1]`` is the final head ``M̂_1``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 24, 32, 48, 64, 96),
        n_heads: int | None = None,
        encoder: str = "cnn",
        dropout: float = 0.0,
    ):
        super().__init__()
        widths = [int(w) for w in widths]
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths must list >= 2 positive channel counts, got {widths}")
        n_dec = len(widths) - 1
        if n_heads is None:
            n_heads = n_dec
        if not 1 <= n_heads <= n_dec:
            raise ValueError(f"n_heads must be in 1..{n_dec} (decoder stages) for widths {widths}, got {n_heads}")
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; choose from {', '.join(ENCODERS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.widths, self.n_heads = in_channels, widths, n_heads
        self.encoder = CNNEncoder(in_channels, widths, dropout)
        dec, c = [], widths[-1]
        for k in range(n_dec - 1, -1, -1):  # decoder from coarse to fine
            dec.append(DecoderBlock(c, widths[k], widths[k], dropout if k >= n_dec - 1 else 0.0))
            c = widths[k]
        self.decoder = nn.ModuleList(dec)
        # heads on the last n_heads decoder outputs (decoder stage widths, coarse -> fine)
        dec_widths = [widths[k] for k in range(n_dec - 1, -1, -1)]
        self.heads = nn.ModuleList(SegmentationHead(w) for w in dec_widths[n_dec - n_heads:])

    @property
    def n_decoder(self) -> int:
        """``N_D``: number of decoder stages."""
        return len(self.decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        size = x.shape[-2:]
        feats = self.encoder(x)
        y, outs = feats[-1], []
        for k, block in enumerate(self.decoder):
            y = block(y, feats[-2 - k])
            outs.append(y)
        outs = outs[self.n_decoder - self.n_heads:]
        return torch.cat([h(o, size) for h, o in zip(self.heads, outs)], dim=1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class UncertaintySegmenter(nn.Module):
    """Common interface of LEXU and its baselines (named subclasses, one per method).

    * ``train_logits(x (B,C,H,W)) -> (B, S, H, W)``: what the training loss sees.
    * ``loss(logits, masks (B,R,H,W), valid (B,R), generator) -> (scalar, parts)``.
    * ``sample_probs(x) -> (B, S, H, W)``: the sample set at test time (heads,
      ensemble members or dropout passes), ``forward_passes`` network passes.
    * ``prediction(probs) -> (B, H, W)`` and ``uncertainty(probs) -> (B, H, W)``.
    """

    method = "?"
    forward_passes = 1

    def train_logits(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, logits, masks, valid=None, generator=None):  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def sample_probs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.train_logits(x))

    def prediction(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.mean(1)

    def uncertainty(self, probs: torch.Tensor) -> torch.Tensor:
        from clinloop.models.lexu.heads import head_variance

        return head_variance(probs)


class LEXU(UncertaintySegmenter):
    """LEXU (§2): multi-head U-Net trained with Eq. 1 (MRO + α, β-weighted DGM).

    Prediction: the last head ``M̂_1`` (trained on the soft majority label);
    uncertainty: ``Ĥ``, the variance across all ``N_p`` heads; one forward pass.
    """

    method = "lexu"

    def __init__(self, in_channels=3, widths=(16, 24, 32, 48, 64, 96), encoder="cnn", alpha=1.0, beta=5.0):
        super().__init__()
        for name, v in (("alpha", alpha), ("beta", beta)):
            if not (float(v) >= 0 and float(v) < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        self.net = MultiHeadUNet(in_channels, widths, None, encoder)
        if self.net.n_heads < 2:
            raise ValueError(f"LEXU needs >= 2 heads (>= 3 encoder widths), got widths {list(widths)}")
        self.alpha, self.beta = float(alpha), float(beta)

    def train_logits(self, x):
        return self.net(x)

    def loss(self, logits, masks, valid=None, generator=None):
        from clinloop.models.lexu.losses import lexu_loss

        return lexu_loss(logits, masks, valid, self.alpha, self.beta, generator)

    def prediction(self, probs):
        return probs[:, -1]
