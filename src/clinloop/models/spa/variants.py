"""Named variants of the preference-distribution update (not if-flags).

Each variant maps the interaction embedding e_u ``(1, E)`` (and the image
features ``(1, C, h, w)``, used only by MedUHIP) to the GMM p_theta(z) and says
which parameters form the mean/variance group (trained by the segmentation
loss) and the weight group (trained by MSE onto the E-step pi^gt).

* ``spa``               spa.txt §3.4: Preference Distribution Generator, both heads learned (Table 3 "all").
* ``spa-random-gmm``    Table 3 row 1 ("Random Gaussian"): a fixed, seeded random GMM; nothing adapts.
* ``spa-mean-variance`` Table 3 row 2 ("+Gaussian"): learned (mu, sigma), uniform fixed pi.
* ``spa-weights``       Table 3 row 3 ("+Mixture Gaussian"): learned pi over fixed random (mu, sigma).
* ``meduhip``           meduhip.txt §3.4 Sampling Net: a *Mean-Variance Network* of conv layers + ReLU
                        over the image embedding (+ dense prompt), and a *Weight Network* of three linear
                        layers + ReLU on e_u. Training alternates (meduhip.txt Eq. 3, 6, 7): the
                        segmentation net is frozen while the Sampling Net learns, see
                        :mod:`clinloop.training.spa`.
"""
from __future__ import annotations

import torch
from torch import nn

from .distribution_generator import SIGMA_FLOOR, MeanVarianceHead, PreferenceDistributionGenerator, WeightHead, mlp
from .preference_distribution import GMM, random_gmm


class Variant(nn.Module):
    """Base class: ``forward(e_u (1,E), features (1,C,h,w)) -> GMM``."""

    name = "base"
    alternating = False  # MedUHIP: segmentation net frozen while the Sampling Net trains

    def mean_variance_parameters(self) -> list[nn.Parameter]:
        return []

    def weight_parameters(self) -> list[nn.Parameter]:
        return []


class SPAVariant(Variant):
    name = "spa"

    def __init__(self, in_dim: int, n_components: int, latent_dim: int, hidden: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.generator = PreferenceDistributionGenerator(in_dim, n_components, latent_dim, hidden, 6, seed)

    def forward(self, e_u: torch.Tensor, features: torch.Tensor | None = None) -> GMM:
        return self.generator(e_u)

    def mean_variance_parameters(self):
        return list(self.generator.mean_variance.parameters())

    def weight_parameters(self):
        return list(self.generator.weights.parameters())


class RandomGMMVariant(Variant):
    name = "spa-random-gmm"

    def __init__(self, in_dim: int, n_components: int, latent_dim: int, hidden: int = 256, seed: int = 0) -> None:
        super().__init__()
        g = random_gmm(n_components, latent_dim, torch.Generator().manual_seed(seed))
        self.register_buffer("pi", g.pi)
        self.register_buffer("mu", g.mu)
        self.register_buffer("sigma", g.sigma)

    def forward(self, e_u, features=None) -> GMM:
        return GMM(self.pi, self.mu, self.sigma)


class MeanVarianceVariant(Variant):
    name = "spa-mean-variance"

    def __init__(self, in_dim: int, n_components: int, latent_dim: int, hidden: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.head = MeanVarianceHead(in_dim, n_components, latent_dim, hidden, 6, seed)
        self.register_buffer("pi", torch.full((n_components,), 1.0 / n_components))

    def forward(self, e_u, features=None) -> GMM:
        mu, sigma = self.head(e_u.reshape(1, -1))
        return GMM(self.pi, mu[0], sigma[0])

    def mean_variance_parameters(self):
        return list(self.head.parameters())


class WeightsVariant(Variant):
    name = "spa-weights"

    def __init__(self, in_dim: int, n_components: int, latent_dim: int, hidden: int = 256, seed: int = 0) -> None:
        super().__init__()
        g = random_gmm(n_components, latent_dim, torch.Generator().manual_seed(seed))
        self.register_buffer("mu", g.mu)
        self.register_buffer("sigma", g.sigma)
        self.head = WeightHead(in_dim, n_components, hidden, 6)

    def forward(self, e_u, features=None) -> GMM:
        return GMM(self.head(e_u.reshape(1, -1))[0], self.mu, self.sigma)

    def weight_parameters(self):
        return list(self.head.parameters())


class MedUHIPVariant(Variant):
    """MedUHIP's Sampling Net. ``features`` = image embedding + dense prompt embedding ``(1, C, h, w)``."""

    name = "meduhip"
    alternating = True

    def __init__(self, in_dim: int, n_components: int, latent_dim: int, hidden: int = 256, seed: int = 0,
                 channels: int = 256) -> None:
        super().__init__()
        self.m, self.d = n_components, latent_dim
        # Mean-Variance Network: "several convolution layers and ReLU activations" (meduhip.txt §3.4)
        self.mv_convs = nn.Sequential(
            nn.Conv2d(channels, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.mv_out = nn.Linear(64, 2 * n_components * latent_dim)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.mv_out.weight.mul_(0.01)
            self.mv_out.bias.copy_(torch.cat([torch.randn(n_components * latent_dim, generator=g),
                                              torch.full((n_components * latent_dim,), 0.5413)]))
        # Weight Network: "simple linear layers and ReLU activations"
        self.weight_net = mlp(in_dim, hidden, n_components, depth=3)
        with torch.no_grad():
            self.weight_net[-1].weight.mul_(0.01)
            self.weight_net[-1].bias.zero_()

    def forward(self, e_u, features=None) -> GMM:
        if features is None:
            raise ValueError("the MedUHIP Sampling Net needs the image features")
        out = self.mv_out(self.mv_convs(features).flatten(1)).view(2, self.m, self.d)
        pi = torch.softmax(self.weight_net(e_u.reshape(1, -1))[0], dim=-1)
        return GMM(pi, out[0], torch.nn.functional.softplus(out[1]) + SIGMA_FLOOR)

    def mean_variance_parameters(self):
        return list(self.mv_convs.parameters()) + list(self.mv_out.parameters())

    def weight_parameters(self):
        return list(self.weight_net.parameters())


VARIANTS: dict[str, type[Variant]] = {
    v.name: v for v in (SPAVariant, RandomGMMVariant, MeanVarianceVariant, WeightsVariant, MedUHIPVariant)
}


def build_variant(name: str, in_dim: int, n_components: int, latent_dim: int, hidden: int = 256, seed: int = 0) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown SPA variant {name!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[name](in_dim, n_components, latent_dim, hidden, seed)
