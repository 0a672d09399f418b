"""SAM's mask decoder (Kirillov et al. 2023, §3), as used by LiteMedSAM.

Learned output tokens (one IoU token, ``num_multimask_outputs + 1`` mask tokens)
are concatenated with the sparse prompt tokens and run through the two-way
transformer together with the image embedding (+ dense prompt). The image
features are upscaled 4x by two transposed convs; each mask token, through its
own 3-layer hypernetwork MLP, gives the weights of a per-pixel dot product with
the upscaled features -> one mask logit map per token. Token 0 is the
single-mask output; tokens 1..3 are the three ambiguity-aware outputs. The IoU
head predicts each mask's IoU with the target.

Batching beyond SAM: ``image_embeddings`` may have batch 1 and be shared by B
prompt sets (broadcast, never copied B times), and the B prompt sets are
processed in chunks of ``chunk_size`` so the per-prompt 64x64x256 working set
stays small (on CPU one huge batch is slower than a loop; see
benchmarks/bench_litemedsam.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(self, *, transformer_dim: int = 256, transformer: nn.Module | None = None,
                 num_multimask_outputs: int = 3, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256,
                 chunk_size: int = 8) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer if transformer is not None else TwoWayTransformer(2, transformer_dim, 8, 2048)
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.chunk_size = chunk_size
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict masks for B prompt sets.

        Arguments (C = 256, h = w = 64):
          image_embeddings: ``(1 or B, C, h, w)``; batch 1 is shared by all B prompt sets.
          image_pe: ``(1, C, h, w)`` (``PromptEncoder.get_dense_pe()``).
          sparse_prompt_embeddings: ``(B, N, C)``.
          dense_prompt_embeddings: ``(1 or B, C, h, w)``.
          multimask_output: True -> the 3 multimask outputs, False -> the single one.

        Returns ``low_res_logits (B, M, 4h, 4w)`` (M = 3 or 1; 256x256, the model
        input frame) and ``iou_pred (B, M)``.
        """
        b = sparse_prompt_embeddings.shape[0]
        if image_embeddings.ndim != 4 or image_embeddings.shape[0] not in (1, b):
            raise ValueError(f"image_embeddings must be (1 or {b}, C, h, w) for {b} prompt sets; got {tuple(image_embeddings.shape)}")
        if dense_prompt_embeddings.shape[0] not in (1, b) or dense_prompt_embeddings.shape[1:] != image_embeddings.shape[1:]:
            raise ValueError(f"dense_prompt_embeddings must be (1 or {b}, {', '.join(map(str, image_embeddings.shape[1:]))}); "
                             f"got {tuple(dense_prompt_embeddings.shape)}")
        step = max(1, self.chunk_size)
        masks, ious = [], []
        for s in range(0, b, step):
            sl = slice(s, s + step)
            img = image_embeddings if image_embeddings.shape[0] == 1 else image_embeddings[sl]
            dense = dense_prompt_embeddings if dense_prompt_embeddings.shape[0] == 1 else dense_prompt_embeddings[sl]
            m, i = self.predict_masks(img, image_pe, sparse_prompt_embeddings[sl], dense)
            masks.append(m)
            ious.append(i)
        masks, iou = (masks[0], ious[0]) if len(masks) == 1 else (torch.cat(masks), torch.cat(ious))
        sel = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sel], iou[:, sel]

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` outputs: ``(B, 4, 4h, 4w)`` logits and ``(B, 4)`` IoU."""
        b = sparse_prompt_embeddings.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], dim=1)
        # broadcasting adds give (B, C, h, w) without first copying the shared embedding
        src = image_embeddings + dense_prompt_embeddings
        if src.shape[0] != b:
            src = src.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, keys = self.transformer(src, image_pe, tokens)
        iou_token_out = hs[:, 0]
        mask_tokens_out = hs[:, 1:1 + self.num_mask_tokens]
        hyper = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        masks = self.upscaled_logits(keys, (h, w), hyper)
        return masks, self.iou_prediction_head(iou_token_out)

    def upscaled_logits(self, keys: torch.Tensor, size: tuple[int, int], hyper: torch.Tensor) -> torch.Tensor:
        """Mask logits ``(B, M, 4h, 4w)`` from the decoded image tokens ``keys (B, h*w, C)`` and the
        hypernetwork outputs ``hyper (B, M, C/8)``: ``hyper · output_upscaling(keys as (B, C, h, w))``.

        Same arithmetic as running ``output_upscaling`` (ConvT k2 s2, LayerNorm2d, GELU, ConvT k2 s2,
        GELU) on the NCHW map, equal to float rounding (tests), evaluated channels-last: a 2x2
        stride-2 transposed conv maps each input pixel to its own 2x2 output block, so it is one
        matrix product ``(pixels, C_in) @ (C_in, 2*2*C_out)``; the layer norm is over the last axis;
        the pixels stay in block order until the final ``(B, M, 4h, 4w)`` map is rearranged. About
        2x faster on a CPU core than the convolution form (no layout conversions)."""
        ct1, ln, act1, ct2, act2 = self.output_upscaling
        b, hw, c = keys.shape
        h, w = size
        if hw != h * w:
            raise ValueError(f"keys hold {hw} positions, not {h}x{w}")
        c4, c8 = ct1.weight.shape[1], ct2.weight.shape[1]
        # ConvTranspose2d weight (C_in, C_out, 2, 2) -> (C_in, [a, b, C_out])
        y = torch.addmm(ct1.bias.repeat(4), keys.reshape(b * hw, c), ct1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c4))
        y = act1(F.layer_norm(y.view(-1, c4), (c4,), ln.weight, ln.bias, ln.eps))  # rows: (B, i, j, a, b)
        y = torch.addmm(ct2.bias.repeat(4), y, ct2.weight.permute(0, 2, 3, 1).reshape(c4, 4 * c8))
        y = act2(y).view(b, hw * 16, c8)  # rows: (B, i, j, a, b, c, d)
        m = hyper.shape[1]
        out = (y @ hyper.transpose(1, 2)).view(b, h, w, 2, 2, 2, 2, m)
        # output pixel (4i + 2a + c, 4j + 2b + d)
        return out.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, m, 4 * h, 4 * w)
