"""Preference Distribution Generator E_theta (spa.txt §3.4, Alg. 1).

From the interaction embedding e_u it predicts the GMM parameters
theta = {(pi_m, mu_m, sigma_m)}_{m=1}^M by amortised inference:

* six fully connected layers -> a 2·M·D vector -> (mu_m, sigma_m) (sigma via
  softplus + floor, so sigma > 0); trained through the segmentation loss;
* six more layers -> M logits -> pi = softmax (pi > 0, sum 1); trained by MSE
  onto the E-step responsibilities pi^gt (:func:`.preference_distribution.estep_target`).

e_u (our reading; SAM's prompt encoder gives sparse tokens ``(B, T, C)`` and a
dense map ``(B, C, h, w)``): ``interaction_vector`` = [mean of the sparse
tokens (zeros when there are none, e.g. a mask prompt), spatial mean of the
dense embedding] -> ``(B, 2C)``.

The mean head's last layer is initialised so mu_m starts spread out (fixed
seeded offsets), otherwise all M components would begin identical.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .preference_distribution import GMM

SIGMA_FLOOR = 1e-3


def interaction_vector(sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """e_u ``(B, 2C)`` from SAM prompt embeddings ``sparse (B, T, C)`` and ``dense (B, C, h, w)``."""
    b, c = dense.shape[:2]
    s = sparse.mean(1) if sparse.shape[1] > 0 else dense.new_zeros(b, c)
    return torch.cat([s, dense.mean((2, 3))], dim=1)


def mlp(n_in: int, hidden: int, n_out: int, depth: int = 6) -> nn.Sequential:
    """``depth`` linear layers with ReLU between them."""
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(depth - 1):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


class MeanVarianceHead(nn.Module):
    """e_u ``(B, E)`` -> mu ``(B, M, D)``, sigma ``(B, M, D)`` (six layers)."""

    def __init__(self, in_dim: int, n_components: int, latent_dim: int, hidden: int = 256, depth: int = 6,
                 seed: int = 0) -> None:
        super().__init__()
        self.m, self.d = n_components, latent_dim
        self.net = mlp(in_dim, hidden, 2 * n_components * latent_dim, depth)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            last = self.net[-1]
            last.weight.mul_(0.01)
            spread = torch.randn(n_components, latent_dim, generator=g)
            last.bias.copy_(torch.cat([spread.flatten(), torch.full((n_components * latent_dim,), 0.5413)]))  # softplus^-1(1)

    def forward(self, e_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(e_u).view(-1, 2, self.m, self.d)
        return out[:, 0], F.softplus(out[:, 1]) + SIGMA_FLOOR


class WeightHead(nn.Module):
    """e_u ``(B, E)`` -> pi ``(B, M)`` (six layers, softmax)."""

    def __init__(self, in_dim: int, n_components: int, hidden: int = 256, depth: int = 6) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, n_components, depth)
        with torch.no_grad():
            self.net[-1].weight.mul_(0.01)
            self.net[-1].bias.zero_()

    def forward(self, e_u: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(e_u), dim=-1)


class PreferenceDistributionGenerator(nn.Module):
    """E_theta: e_u ``(E,)`` or ``(1, E)`` -> :class:`GMM` (both heads learned)."""

    def __init__(self, in_dim: int, n_components: int, latent_dim: int, hidden: int = 256, depth: int = 6,
                 seed: int = 0) -> None:
        super().__init__()
        self.mean_variance = MeanVarianceHead(in_dim, n_components, latent_dim, hidden, depth, seed)
        self.weights = WeightHead(in_dim, n_components, hidden, depth)

    def forward(self, e_u: torch.Tensor) -> GMM:
        e_u = e_u.reshape(1, -1)
        mu, sigma = self.mean_variance(e_u)
        return GMM(self.weights(e_u)[0], mu[0], sigma[0])
