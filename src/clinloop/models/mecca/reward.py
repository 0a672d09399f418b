"""Confidence-based reward shaping (mecca.txt §4.2, Eq. 4–5).

Per agent ``i`` at step ``t``::

    X_i^(t)    = -y_i log p_i^(t) - (1 - y_i) log(1 - p_i^(t))          (Eq. 5)
    gain_i^(t) = X_i^(t-1) - X_i^(t)
    r_i^(t)    = α (2 - c_i)^β gain_i^(t)                               (Eq. 4 summand)

``c_i = C(s^(t-1), a^(t-1))_i`` is the confidence of the action the agent took.
Eq. 4 writes the reward as the sum over agents; with independent learners
(one agent per voxel, §3) each agent is trained on its own summand, which is
what :func:`shaped_reward` returns; :func:`total_reward` is the sum.
The ``mecca-no-confidence`` ablation uses ``r_i = gain_i`` (:func:`plain_reward`).

Probabilities are clamped to ``[eps, 1 - eps]`` (eps = 0.01) inside the log,
since Eq. 1 clips them onto 0 and 1 exactly (with a tiny eps one agent saturated at
the wrong end, X = 13.8, would outweigh hundreds of agents and make the returns
very noisy; 0.01 bounds X by 4.6).
"""
from __future__ import annotations

import torch

EPS = 1e-2


def cross_entropy(p: torch.Tensor, y: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``X`` of Eq. 5, elementwise (same shape as ``p``)."""
    q = p.clamp(eps, 1.0 - eps)
    return -(y * torch.log(q) + (1.0 - y) * torch.log(1.0 - q))


def gain(p_prev: torch.Tensor, p_next: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``gain = X(p_prev) - X(p_next)`` (Eq. 5): positive when the step moved toward ``y``."""
    return cross_entropy(p_prev, y) - cross_entropy(p_next, y)


def shaped_reward(p_prev, p_next, y, confidence, alpha: float = 0.8, beta: float = 1.0) -> torch.Tensor:
    """Per-agent ``α (2 - c)^β gain`` (Eq. 4); all arguments share one shape."""
    if not (p_prev.shape == p_next.shape == y.shape == confidence.shape):
        raise ValueError(
            f"shapes differ: p_prev {tuple(p_prev.shape)}, p_next {tuple(p_next.shape)}, "
            f"y {tuple(y.shape)}, confidence {tuple(confidence.shape)}"
        )
    return alpha * (2.0 - confidence) ** beta * gain(p_prev, p_next, y)


def plain_reward(p_prev, p_next, y) -> torch.Tensor:
    """The ablation without confidence shaping: ``r = gain``."""
    return gain(p_prev, p_next, y)


def total_reward(per_agent: torch.Tensor) -> torch.Tensor:
    """Eq. 4's ``Σ_i`` over the agents of each batch item → ``(B,)``."""
    return per_agent.flatten(1).sum(1)
