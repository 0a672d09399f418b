"""SAM's prompt encoder (Kirillov et al. 2023, §3), as used by LiteMedSAM.

Sparse prompts (points, box corners) become tokens: a random-Fourier positional
encoding of the location plus a learned type embedding (negative point,
positive point, box top-left, box bottom-right, or "not a point" padding). A
dense prompt (a low-resolution mask logit map, e.g. the previous prediction)
is downscaled 4x by a small conv net; without one, a learned "no mask"
embedding is broadcast over the grid.

Coordinate frame of every prompt here: the model input frame, ``(x, y)`` =
(column, row) in pixels of the ``input_image_size`` (256x256) image, pixel
centres at integer coordinates (the encoder adds 0.5 before normalising).
Use :mod:`.preprocess` to map from original-image pixels.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies ``G`` (2 x F):
    ``pe(p) = [sin(2 pi (2p-1) G), cos(2 pi (2p-1) G)]`` for ``p`` in [0,1]^2."""

    def __init__(self, num_pos_feats: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _encode(self, coords01: torch.Tensor) -> torch.Tensor:
        proj = (2 * coords01 - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an ``h x w`` grid: ``(2F, h, w)``."""
        h, w = size
        dev = self.positional_encoding_gaussian_matrix.device
        # (i + 0.5) / n computed as cumsum - 0.5, as the reference does (bit-identical)
        grid = torch.ones((h, w), device=dev, dtype=torch.float32)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """``coords (B, N, 2)`` as (x, y) in pixels of an ``image_size`` = (H, W)
        image -> ``(B, N, 2F)``."""
        scale = torch.tensor([1.0 / image_size[1], 1.0 / image_size[0]], device=coords.device)
        return self._encode(coords.float() * scale)


class PromptEncoder(nn.Module):
    """Embeds prompts for the mask decoder.

    Parameters: ``embed_dim`` (C = 256), ``image_embedding_size`` (64, 64),
    ``input_image_size`` (256, 256), ``mask_in_chans`` (16).
    Parameter names match the checkpoint (``pe_layer``, ``point_embeddings.{0..3}``,
    ``not_a_point_embed``, ``mask_downscaling.{0,1,3,4,6}``, ``no_mask_embed``).
    """

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (256, 256), mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid: ``(1, C, 64, 64)``.

        It depends only on the fixed frequency buffer ``G`` and the grid size, so it is computed
        once and reused (the cache is keyed by the buffer's identity, device, dtype and version,
        so ``.to()``, ``load_state_dict`` or an in-place change recompute it)."""
        g = self.pe_layer.positional_encoding_gaussian_matrix
        key = (g.data_ptr(), g.device, g.dtype, g._version, self.image_embedding_size)
        cached = getattr(self, "_dense_pe_cache", None)
        if cached is None or cached[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor: usable in training too
                pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
            cached = (key, pe)
            self._dense_pe_cache = cached
        return cached[1]

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``points (B, N, 2)`` (x, y), ``labels (B, N)`` in {1 positive, 0 negative,
        -1 padding} -> ``(B, N[+1], C)``. With ``pad`` (no box given) a padding
        token is appended, as SAM does."""
        points = points.float() + 0.5  # to the pixel centre
        labels = labels.to(points.device)
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        pe = self.pe_layer.forward_with_coords(points, self.input_image_size)
        lab = labels[..., None]
        out = torch.where(lab == -1, self.not_a_point_embed.weight, pe)
        out = out + torch.where(lab == 0, self.point_embeddings[0].weight, 0.0)
        out = out + torch.where(lab == 1, self.point_embeddings[1].weight, 0.0)
        return out

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``boxes (B, 4)`` or ``(B, 1, 4)`` as x0, y0, x1, y1 -> ``(B, 2, C)``."""
        corners = (boxes.float() + 0.5).reshape(-1, 2, 2)
        pe = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        types = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return pe + types

    def _batch_size(self, points, boxes, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``sparse (B, N, C)`` and ``dense (B, C, 64, 64)`` embeddings.

        ``points``: ``(coords (B, N, 2), labels (B, N))``; ``boxes``: ``(B, 4)``;
        ``masks``: ``(B, 1, 256, 256)`` low-res logits (same frame as the decoder's
        output). Batch sizes of the given prompts must agree.
        """
        bs = self._batch_size(points, boxes, masks)
        for name, t in (("points", None if points is None else points[0]), ("boxes", boxes), ("masks", masks)):
            if t is not None and t.shape[0] != bs:
                raise ValueError(f"prompt batch sizes differ: {name} has {t.shape[0]}, expected {bs}")
        dev = self.no_mask_embed.weight.device
        parts = [torch.empty((bs, 0, self.embed_dim), device=dev)]
        if points is not None:
            coords, labels = points
            if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
                raise ValueError(f"points must be (B, N, 2) with labels (B, N); got {tuple(coords.shape)} and {tuple(labels.shape)}")
            parts.append(self._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            if boxes.shape[-1] != 4:
                raise ValueError(f"boxes must be (B, 4) as x0, y0, x1, y1; got {tuple(boxes.shape)}")
            parts.append(self._embed_boxes(boxes))
        sparse = torch.cat(parts, dim=1)
        if masks is not None:
            if masks.ndim != 4 or masks.shape[1:] != (1, *self.mask_input_size):
                raise ValueError(f"mask prompt must be (B, 1, {self.mask_input_size[0]}, {self.mask_input_size[1]}); got {tuple(masks.shape)}")
            dense = self.mask_downscaling(masks.float())
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return sparse, dense
