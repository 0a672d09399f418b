"""The multi-agent refinement environment (mecca.txt §3, Eq. 1, Definition 1).

Every pixel (2-D) or voxel (3-D) ``i`` is an agent. Its state is
``s_i = (b_i, p_i, h_i)``: intensity, current foreground probability and the
hint-map value; probabilities start at ``p^(0) = 0.5``. An action
``a_i ∈ A = {-0.4, -0.2, -0.1, +0.1, +0.2, +0.4}`` moves the probability:
``p^(t+1) = clip(p^(t) + a^(t), 0, 1)`` (Eq. 1).

Actions are handled as *indices* into :data:`ACTIONS`; the table is symmetric, so
the opposite action ``-a`` of index ``k`` is ``len(A) - 1 - k`` (used by the
symmetric confidence loss, Eq. 2).

Tensors: batches of states are ``(B, 3, *spatial)`` float32 (channel order b, p,
h); probabilities and hints ``(B, 1, *spatial)``; action indices ``(B, 1, *spatial)``
int64; labels ``(B, 1, *spatial)`` float {0, 1}.
"""
from __future__ import annotations

import torch

ACTIONS: tuple[float, ...] = (-0.4, -0.2, -0.1, 0.1, 0.2, 0.4)
N_ACTIONS = len(ACTIONS)
P0 = 0.5  # initial segmentation probability of every agent


def action_table(device=None) -> torch.Tensor:
    """A as a float tensor ``(len(A),)``."""
    return torch.tensor(ACTIONS, dtype=torch.float32, device=device)


def action_values(idx: torch.Tensor) -> torch.Tensor:
    """The increments ``a`` for action indices ``idx`` (any shape, int64) → float32."""
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= N_ACTIONS):
        raise ValueError(f"action indices must lie in 0..{N_ACTIONS - 1}, got {int(idx.min())}..{int(idx.max())}")
    return action_table(idx.device)[idx]


def opposite_action(idx: torch.Tensor) -> torch.Tensor:
    """Index of ``-a`` for each index of ``a`` (A is symmetric and sorted)."""
    return (N_ACTIONS - 1) - idx


def initial_probability(shape, device=None) -> torch.Tensor:
    """``p^(0)``: every agent starts at 0.5. ``shape`` = ``(B, 1, *spatial)``."""
    return torch.full(tuple(shape), P0, dtype=torch.float32, device=device)


def transition(p: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``clip(p + A[idx], 0, 1)``; ``p`` and ``idx`` have the same shape."""
    if p.shape != idx.shape:
        raise ValueError(f"probability {tuple(p.shape)} and actions {tuple(idx.shape)} differ in shape")
    return (p + action_values(idx)).clamp(0.0, 1.0)


def make_state(image: torch.Tensor, p: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """``s = (b, p, h)`` stacked on the channel axis → ``(B, 3, *spatial)``.

    ``image`` is the normalised intensity ``(B, 1, *spatial)``."""
    if not (image.shape == p.shape == hint.shape):
        raise ValueError(f"image {tuple(image.shape)}, probability {tuple(p.shape)} and hint {tuple(hint.shape)} must match")
    return torch.cat([image, p, hint], dim=1)


def misunderstanding(p_prev: torch.Tensor, p_next: torch.Tensor, label: torch.Tensor, tol: float = 1e-3) -> torch.Tensor:
    """Definition 1 (interactive misunderstanding): agents whose probability moves
    *against* their label between two consecutive steps, i.e. ``Δp < -tol`` where
    ``y = 1`` or ``Δp > tol`` where ``y = 0``. Returns a bool tensor shaped like ``p``.

    Deviation: the definition compares ``sign(Δp)`` with ``sign(y)``, which read
    literally would also flag every agent that does not move (``Δp = 0``, e.g. a
    probability already clipped at its label). We count only movements against
    the label larger than ``tol`` (default 1e-3, so float noise in a CNN's
    sigmoid does not count)."""
    d = p_next - p_prev
    y = label > 0.5
    return (y & (d < -tol)) | (~y & (d > tol))


def count_misunderstanding(p_prev, p_next, label, tol: float = 1e-3) -> int:
    """Number of agents in :func:`misunderstanding` (all batch items together)."""
    return int(misunderstanding(p_prev, p_next, label, tol).sum())


def count_harmful_flips(p_prev, p_next, label, threshold: float = 0.5) -> int:
    """Agents whose *thresholded* prediction turns from correct to wrong between two
    steps (``1[p > 0.5] == y`` before, ``!=`` after). Not in the paper: a stricter
    companion of Definition 1 that ignores moves which stay on the correct side
    (a CNN's sigmoid drifts a little everywhere at every step, MECCA's clipped
    probabilities cannot), so the two kinds of model can be compared fairly."""
    y = label > 0.5
    ok_before = (p_prev > threshold) == y
    ok_after = (p_next > threshold) == y
    return int((ok_before & ~ok_after).sum())
