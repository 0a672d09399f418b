"""Preference conditioning (spa.txt §3.3; Alg. 1 GenMask):

    e_{x_n} = ReLU(Conv(e_x ⊕ z_n))      three conv + ReLU layers

``⊕`` is channel concatenation of the embedding ``e_x (1, C_in, h, w)`` with
the latent ``z_n`` broadcast over all positions (our reading of z, see
:mod:`.preference_distribution`: ``z (N, D)``).

The split (engineering, exact): the first conv is linear in the concatenation,

    Conv(e_x ⊕ z) = Conv_e(e_x) + Conv_z(broadcast(z)),

so the image half ``Conv_e(e_x)`` is computed once per image/iteration, and the
latent half of a broadcast vector is ``sum_d z_d G_d`` where
``G_d = Conv_z[:, d](ones(h, w))`` (``(D, C, h, w)``; it differs from a constant
only at the border, where the zero padding drops taps). :meth:`forward`
(split) equals :meth:`forward_concat` (the literal concat-conv) to float
precision; tests check it.

Layer layout (deviation, documented): conv(k1)+ReLU, conv(k2)+ReLU, conv(k2),
the last conv zero-initialised so a fresh module is the identity on the
pretrained backbone's output: ``out = e_x + conv3`` when ``residual`` (paper
form at ``C_out = C_in``), else just ``conv3`` (used for the 1-channel logit
offset of the optimised SPA path, :mod:`.model`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreferenceConditioning(nn.Module):
    """``e_x (1, C_in, h, w)``, ``z (N, D)`` -> ``(N, C_out, h, w)``.

    Arguments: ``in_channels`` C_in, ``latent_dim`` D, ``width`` of the hidden
    layers, ``out_channels`` C_out, kernel sizes ``k1`` (first conv) and ``k2``
    (second and third), ``residual`` adds ``e_x`` to the output (needs
    C_out == C_in).
    """

    def __init__(self, in_channels: int, latent_dim: int, width: int, out_channels: int, k1: int = 3, k2: int = 1,
                 residual: bool = False) -> None:
        super().__init__()
        if residual and out_channels != in_channels:
            raise ValueError(f"residual conditioning needs out_channels == in_channels ({out_channels} != {in_channels})")
        for k in (k1, k2):
            if k % 2 != 1:
                raise ValueError(f"kernel sizes must be odd, got {k}")
        self.in_channels, self.latent_dim, self.residual = in_channels, latent_dim, residual
        self.conv1 = nn.Conv2d(in_channels + latent_dim, width, k1, padding=k1 // 2)
        self.conv2 = nn.Conv2d(width, width, k2, padding=k2 // 2)
        self.conv3 = nn.Conv2d(width, out_channels, k2, padding=k2 // 2)
        nn.init.zeros_(self.conv3.weight)
        nn.init.zeros_(self.conv3.bias)

    # ------------------------------------------------------------ split form
    def image_half(self, e: torch.Tensor) -> torch.Tensor:
        """Conv_e(e_x) + bias: ``(B, width, h, w)``; compute once per image."""
        if e.ndim != 4 or e.shape[1] != self.in_channels:
            raise ValueError(f"embedding must be (B, {self.in_channels}, h, w); got {tuple(e.shape)}")
        w = self.conv1.weight[:, : self.in_channels]
        return F.conv2d(e, w, self.conv1.bias, padding=self.conv1.padding)

    def latent_basis(self, h: int, w: int) -> torch.Tensor:
        """G: ``(D, width, h, w)``, G_d = Conv_z[:, d] applied to a map of ones."""
        wz = self.conv1.weight[:, self.in_channels:]  # (width, D, k, k)
        width, d, k, _ = wz.shape
        ones = torch.ones(1, 1, h, w, dtype=wz.dtype, device=wz.device)
        g = F.conv2d(ones, wz.transpose(0, 1).reshape(d * width, 1, k, k), padding=k // 2)
        return g.view(d, width, h, w)

    def latent_half(self, z: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """Conv_z(broadcast(z)) = sum_d z_d G_d: ``(N, width, h, w)``."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be (N, {self.latent_dim}); got {tuple(z.shape)}")
        d, c, h, w = basis.shape
        return (z @ basis.reshape(d, c * h * w)).view(-1, c, h, w)

    def tail(self, h1: torch.Tensor) -> torch.Tensor:
        """Layers 2-3 after the first ReLU."""
        return self.conv3(F.relu(self.conv2(h1)))

    def forward(self, e: torch.Tensor, z: torch.Tensor, image_half: torch.Tensor | None = None,
                basis: torch.Tensor | None = None) -> torch.Tensor:
        """Split evaluation; pass a cached ``image_half``/``basis`` to skip recomputing them."""
        a = self.image_half(e) if image_half is None else image_half
        g = self.latent_basis(*a.shape[-2:]) if basis is None else basis
        if torch.is_inference_mode_enabled() and self._pointwise_tail() and a.shape[0] == 1:
            out = self._pointwise(a, g, z)
        else:
            out = self.tail(F.relu(a + self.latent_half(z, g)))
        return e + out if self.residual else out

    def _pointwise_tail(self) -> bool:
        return self.conv2.kernel_size == (1, 1) and self.conv3.kernel_size == (1, 1)

    def _pointwise(self, a: torch.Tensor, g: torch.Tensor, z: torch.Tensor, chunk: int = 4) -> torch.Tensor:
        """Inference-only evaluation of ``tail(ReLU(a + latent_half(z, g)))`` when layers 2-3 are 1x1
        convs (the optimised SPA path): the same arithmetic on channels-last ``(positions, width)``
        matrices, a few samples at a time so each chunk stays in cache, in-place ReLUs. Equal to the
        NCHW form to float rounding (tests); ~2x faster on a CPU core for N = 48 at 64 x 64."""
        _, width, h, w = a.shape
        d = g.shape[0]
        if z.ndim != 2 or z.shape[1] != d:
            raise ValueError(f"latents must be (N, {d}); got {tuple(z.shape)}")
        n, hw = z.shape[0], h * w
        a_cl = a[0].permute(1, 2, 0).reshape(hw, width)
        g_cl = g.permute(0, 2, 3, 1).reshape(d, hw * width)
        w2, b2 = self.conv2.weight[:, :, 0, 0], self.conv2.bias
        w3, b3 = self.conv3.weight[:, :, 0, 0], self.conv3.bias
        c_out = w3.shape[0]
        out = torch.empty(n, hw, c_out, dtype=a.dtype, device=a.device)
        for i in range(0, n, chunk):
            h1 = (z[i:i + chunk] @ g_cl).view(-1, hw, width)
            h1 += a_cl
            h1.relu_()
            h2 = torch.addmm(b2, h1.view(-1, width), w2.t()).relu_()
            out[i:i + chunk] = torch.addmm(b3, h2, w3.t()).view(-1, hw, c_out)
        return out.permute(0, 2, 1).reshape(n, c_out, h, w)

    # ------------------------------------------------------ literal form
    def forward_concat(self, e: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The literal ``Conv(e_x ⊕ z_n)`` on the concatenated ``(N, C_in + D, h, w)`` tensor (reference)."""
        n = z.shape[0]
        h, w = e.shape[-2:]
        x = torch.cat([e.expand(n, -1, -1, -1), z[:, :, None, None].expand(-1, -1, h, w)], dim=1)
        out = self.tail(F.relu(self.conv1(x)))
        return e + out if self.residual else out
