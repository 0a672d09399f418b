"""The preference distribution (spa.txt §3.1, Eq. 1).

    p_theta(z) = sum_{m=1}^{M} pi_m N(z | mu_m, sigma_m^2),   M = 16

Our reading of z's dimensionality (spa.txt §3.3 says z_n has the shape of the
image embedding, L x H/P x W/P; the text never says how a GMM over a 256x64x64
tensor is parameterised): z is a *low-dimensional vector* z in R^D (D = 8 by
default) with a diagonal-covariance GMM over it, broadcast over all embedding
positions when it conditions the image embedding (see :mod:`.conditioning`).
This keeps the GMM identifiable from a few clicks, makes the profile a few
hundred numbers, and makes the latent half of the conditioning conv a per-sample
bias (cheap).

All functions are pure; shapes:
  pi    (M,)      mixture weights, > 0, sum 1
  mu    (M, D)    component means
  sigma (M, D)    component standard deviations, > 0
  z     (N, D)    latents
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

M_COMPONENTS = 16  # M in spa.txt Eq. 1


@dataclass
class GMM:
    """theta = {(pi_m, mu_m, sigma_m)}_{m=1}^M (tensors, possibly carrying gradients)."""

    pi: torch.Tensor  # (M,)
    mu: torch.Tensor  # (M, D)
    sigma: torch.Tensor  # (M, D)

    def __post_init__(self) -> None:
        if self.pi.ndim != 1 or self.mu.ndim != 2 or self.mu.shape != self.sigma.shape or self.mu.shape[0] != self.pi.shape[0]:
            raise ValueError(f"GMM needs pi (M,), mu (M,D), sigma (M,D); got {tuple(self.pi.shape)}, "
                             f"{tuple(self.mu.shape)}, {tuple(self.sigma.shape)}")

    @property
    def n_components(self) -> int:
        return int(self.pi.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mu.shape[1])

    def detach(self) -> "GMM":
        return GMM(self.pi.detach(), self.mu.detach(), self.sigma.detach())

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (the user's profile)."""
        return {"kind": "gmm", "pi": self.pi.detach().cpu().tolist(), "mu": self.mu.detach().cpu().tolist(),
                "sigma": self.sigma.detach().cpu().tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any], dim: int | None = None) -> "GMM":
        """Inverse of :meth:`to_json`; raises ValueError on malformed input.

        Weights pi_m = 0 are accepted (a trained pi head's softmax underflows to
        exactly 0 in float32 for unlikely components); negative weights are not."""
        try:
            g = cls(torch.tensor(d["pi"], dtype=torch.float32), torch.tensor(d["mu"], dtype=torch.float32),
                    torch.tensor(d["sigma"], dtype=torch.float32))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"profile is not a GMM (needs pi, mu, sigma lists): {e}") from e
        if dim is not None and g.dim != dim:
            raise ValueError(f"profile GMM has latent dimension {g.dim}; this model uses {dim}")
        if (g.pi < 0).any() or abs(float(g.pi.sum()) - 1) > 1e-3 or (g.sigma <= 0).any():
            raise ValueError("profile GMM needs pi >= 0 summing to 1 and sigma > 0")
        if not (torch.isfinite(g.mu).all() and torch.isfinite(g.sigma).all()):
            raise ValueError("profile GMM has NaN/Inf values")
        return g


def sample(gmm: GMM, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` latents z_n ~ p_theta(z).

    Component indices c_n ~ Categorical(pi) and eps ~ N(0, I) come from
    ``generator`` (so a recorded seed replays them); z_n = mu_{c_n} + sigma_{c_n}
    eps_n is reparameterised, so gradients reach mu and sigma (the segmentation
    loss trains them, spa.txt Alg. 1). Returns ``z (n, D)`` and ``c (n,)`` long.
    """
    if n < 1:
        raise ValueError(f"need at least one sample, got n={n}")
    c = torch.multinomial(gmm.pi.detach().float().cpu(), n, replacement=True, generator=generator)
    eps = torch.randn(n, gmm.dim, generator=generator)
    c = c.to(gmm.mu.device)
    return gmm.mu[c] + gmm.sigma[c] * eps.to(gmm.mu.device), c


def component_log_density(z: torch.Tensor, gmm: GMM) -> torch.Tensor:
    """log N(z_n | mu_m, diag sigma_m^2) for every pair: ``(N, M)``."""
    diff = (z[:, None, :] - gmm.mu[None]) / gmm.sigma[None]  # (N, M, D)
    return -0.5 * (diff ** 2).sum(-1) - torch.log(gmm.sigma).sum(-1)[None] - 0.5 * gmm.dim * math.log(2 * math.pi)


def log_prob(z: torch.Tensor, gmm: GMM) -> torch.Tensor:
    """log p_theta(z_n): ``(N,)``."""
    return torch.logsumexp(component_log_density(z, gmm) + torch.log(gmm.pi)[None], dim=1)


def responsibilities(z: torch.Tensor, gmm: GMM) -> torch.Tensor:
    """GMM E-step: gamma_nm = pi_m N(z_n|mu_m,sigma_m^2) / sum_m' pi_m' N(z_n|mu_m',sigma_m'^2), ``(N, M)``,
    rows sum to 1 (computed in log space)."""
    a = component_log_density(z, gmm) + torch.log(gmm.pi)[None]
    return torch.softmax(a, dim=1)


def estep_target(z: torch.Tensor, gmm: GMM, agreement: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """pi^gt (Alg. 1, "Compute GMM responsibilities (E-step)"), ``(M,)``.

    The paper writes pi_m^gt = pi_m p(y|mu_m,sigma_m^2) / sum_m' ... but y is a
    mask, not a latent. Our reading: the latents z_n explain y to the degree
    their masks y_n agree with y; pi^gt = sum_n w_n gamma_nm with
    w = softmax(agreement / temperature) (agreement: ``(N,)``, e.g. Dice(y_n, y)),
    i.e. the E-step responsibilities of the latents that reproduce y.
    """
    w = torch.softmax(agreement.float() / temperature, dim=0)
    return (w[:, None] * responsibilities(z, gmm)).sum(0)


def random_gmm(n_components: int, dim: int, generator: torch.Generator, spread: float = 1.0) -> GMM:
    """A fixed random GMM (Table 3's "Random Gaussian"): uniform pi, mu ~ N(0, spread^2), sigma = 1."""
    mu = torch.randn(n_components, dim, generator=generator) * spread
    return GMM(torch.full((n_components,), 1.0 / n_components), mu, torch.ones(n_components, dim))
