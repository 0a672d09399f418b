"""LiteMedSAM's image encoder: a TinyViT-5M variant with a SAM neck.

Maps a preprocessed image ``(B, 3, 256, 256)`` (values in [0, 1], see
:mod:`.preprocess`) to the image embedding ``(B, 256, 64, 64)``.

Architecture of the pretrained checkpoint (it differs from the TinyViT paper,
and we follow the checkpoint, not the paper):

* patch embedding: two *1x1, stride-1* conv+BN layers (3 -> 32 -> 64) with GELU
  between them, so stage 0 runs at the full 256x256 resolution;
* stage 0: ``depths[0]`` MBConv blocks (expand ratio 4), then patch merging
  with stride 2 (256 -> 128);
* stages 1-3: TinyViT blocks (windowed attention with learned relative-offset
  biases, depthwise 3x3 "local conv", MLP), each followed by patch merging;
  merging strides are 2, 2 and 1 (128 -> 64 -> 64), so stages 2 and 3 both run
  at 64x64;
* neck: 1x1 conv -> LayerNorm2d -> 3x3 conv -> LayerNorm2d, to 256 channels.

Window attention pads the token grid on the bottom/right to a multiple of the
window size (128 -> 133 for window 7, 64 -> 70 for windows 14 and 7); padded
tokens take part in attention as zeros, as in the reference.

Attention biases: the checkpoint stores TinyViT's relative-offset attention
biases, but its published behaviour ignores them. The reference code caches
the bias table in a buffer when ``.eval()`` is called; the reference outputs
(litemedsam_reference.npz) were produced with that cache taken before the
weights were loaded, i.e. with all-zero biases, and the checkpoint performs
better that way (tight-box Dice on 12 random LIDC dev slices: 0.83 with zero
biases vs 0.73 with the stored ones; the README's 0.83 figure matches the
former). ``TinyViTConfig.apply_attention_biases`` therefore defaults to
``False``; the parameters are kept so the state dict loads with
``strict=True``, and ``True`` gives textbook TinyViT.

Parameter names match the checkpoint (``patch_embed.seq.0.c.weight``,
``layers.1.blocks.0.attn.attention_biases``, ``neck.0.weight``...).
Drop-path is omitted (the checkpoint was trained with rate 0 at this size and we
never fine-tune the encoder).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d


@dataclass
class TinyViTConfig:
    img_size: int = 256
    in_chans: int = 3
    embed_dims: list[int] = field(default_factory=lambda: [64, 128, 160, 320])
    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    num_heads: list[int] = field(default_factory=lambda: [2, 4, 5, 10])
    window_sizes: list[int] = field(default_factory=lambda: [7, 7, 14, 7])
    merge_strides: list[int] = field(default_factory=lambda: [2, 2, 1])  # after stages 0, 1, 2
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256  # neck output = SAM embedding channels
    apply_attention_biases: bool = False  # see the module docstring

    def validate(self) -> None:
        n = len(self.depths)
        for name in ("embed_dims", "num_heads", "window_sizes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"TinyViTConfig.{name} has {len(getattr(self, name))} entries; depths has {n}")
        if len(self.merge_strides) != n - 1:
            raise ValueError(f"TinyViTConfig.merge_strides needs {n - 1} entries, got {len(self.merge_strides)}")
        for d, h in zip(self.embed_dims[1:], self.num_heads[1:]):
            if d % h:
                raise ValueError(f"TinyViTConfig: embed dim {d} is not divisible by {h} heads")
        if self.img_size <= 0 or any(w <= 0 for w in self.window_sizes):
            raise ValueError("TinyViTConfig: img_size and window sizes must be positive")

    def resolutions(self) -> list[int]:
        """Side length of the token grid in each stage."""
        res = [self.img_size]
        for s in self.merge_strides:
            res.append((res[-1] + s - 1) // s)  # 3x3 conv, padding 1, stride s
        return res


class ConvBN(nn.Sequential):
    """Bias-free conv (``c``) followed by batch norm (``bn``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


class PatchEmbed(nn.Module):
    """``(B, 3, H, W)`` -> ``(B, C0, H, W)``: 1x1 conv-BN, GELU, 1x1 conv-BN."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, dim // 2), nn.GELU(), ConvBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU.
    ``(B, C, H, W)`` -> same."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Between stages: 1x1 conv, GELU, 3x3 depthwise conv (stride ``stride``),
    GELU, 1x1 conv. Input ``(B, C, H, W)`` or tokens ``(B, H*W, C)`` on an
    ``resolution`` x ``resolution`` grid; output tokens ``(B, H'*W', C')``."""

    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            b, _, c = x.shape
            x = x.transpose(1, 2).reshape(b, c, self.resolution, self.resolution)
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one ``w x w`` window, with a learned bias
    per head and per |offset| between the two tokens (TinyViT/LeViT).

    ``(N, w*w, C)`` -> ``(N, w*w, C)``. LayerNorm is applied first (pre-norm).
    """

    def __init__(self, dim: int, num_heads: int, window: int, apply_biases: bool = False) -> None:
        super().__init__()
        self.apply_biases = apply_biases
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # index of each (query, key) pair's |dy|,|dx| offset, in first-seen order
        cells = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        idx = []
        for (y1, x1), (y2, x2) in itertools.product(cells, cells):
            idx.append(offsets.setdefault((abs(y1 - y2), abs(x1 - x2)), len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idx).view(len(cells), len(cells)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(self.norm(x)).view(n, t, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=-1)  # each (N, heads, T, d)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if self.apply_biases:
            attn = attn + self.attention_biases[:, self.attention_bias_idxs]  # (heads, T, T)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


class TokenMLP(nn.Module):
    """Pre-norm MLP: LayerNorm, Linear, GELU, Linear. ``(..., C)`` -> same."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (residual), depthwise local conv, MLP (residual).
    Tokens ``(B, R*R, C)`` on an ``R x R`` grid -> same."""

    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, mlp_ratio: float, local_conv: int,
                 apply_biases: bool = False) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window, apply_biases)
        self.local_conv = ConvBN(dim, dim, local_conv, groups=dim)
        self.mlp = TokenMLP(dim, int(dim * mlp_ratio))

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, l, c = x.shape
        r, w = self.resolution, self.window
        if r == w:
            return self.attn(x)
        pad = (w - r % w) % w
        grid = F.pad(x.view(b, r, r, c), (0, 0, 0, pad, 0, pad))
        n = (r + pad) // w
        # (B, nH, w, nW, w, C) -> (B*nH*nW, w*w, C)
        win = grid.view(b, n, w, n, w, c).transpose(2, 3).reshape(b * n * n, w * w, c)
        win = self.attn(win)
        grid = win.view(b, n, n, w, w, c).transpose(2, 3).reshape(b, r + pad, r + pad, c)
        return grid[:, :r, :r].reshape(b, l, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l, c = x.shape
        r = self.resolution
        x = x + self._windowed_attention(x)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, r, r)).view(b, c, l).transpose(1, 2)
        return x + self.mlp(x)


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks on ``(B, C, H, W)``, then patch merging to tokens."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class AttentionStage(nn.Module):
    """Stages 1-3: TinyViT blocks on tokens, then (optionally) patch merging."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViTEncoder(nn.Module):
    """``forward(x (B, 3, S, S)) -> (B, 256, S/4, S/4)`` with S = ``config.img_size``."""

    def __init__(self, config: TinyViTConfig | None = None) -> None:
        super().__init__()
        cfg = config or TinyViTConfig()
        cfg.validate()
        self.config = cfg
        dims, res = cfg.embed_dims, cfg.resolutions()
        self.embedding_size = res[-1]
        self.patch_embed = PatchEmbed(cfg.in_chans, dims[0])
        self.layers = nn.ModuleList()
        n = len(cfg.depths)
        for i in range(n):
            down = (PatchMerging(res[i], dims[i], dims[i + 1], cfg.merge_strides[i]) if i < n - 1 else None)
            if i == 0:
                self.layers.append(ConvStage(dims[0], cfg.depths[0], cfg.mbconv_expand_ratio, down))
            else:
                blocks = [TinyViTBlock(dims[i], res[i], cfg.num_heads[i], cfg.window_sizes[i], cfg.mlp_ratio, cfg.local_conv_size,
                                       cfg.apply_attention_biases)
                          for _ in range(cfg.depths[i])]
                self.layers.append(AttentionStage(blocks, down))
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.img_size
        if x.ndim != 4 or x.shape[1] != self.config.in_chans or x.shape[2:] != (s, s):
            raise ValueError(f"image encoder expects (B, {self.config.in_chans}, {s}, {s}); got {tuple(x.shape)}")
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        r = self.embedding_size
        return self.neck(x.transpose(1, 2).reshape(b, c, r, r))
