"""The losses of one training iteration of MECCA and its baselines (mecca.txt Algorithm 1, §5.1):
the A2C rollout of the RL methods (:func:`rl_loss`), the CNNs' losses (:func:`cnn_loss`,
:func:`seg_loss`) and the batch helpers the loop in :mod:`clinloop.training.mecca` uses
(class-balanced weights, flips, random sub-crops). Re-exported by that module."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def balanced_weights(y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-agent weights giving foreground and background agents of each image equal
    total weight (each class sums to 1/2 of the image's agents), restricted to ``mask``.

    Deviation (CPU-sized training): nodules cover ~2-5 % of a crop, and with a few
    hundred iterations an unweighted mean over agents lets the policy collapse to
    "always decrease" before it learns the foreground; balancing the agents'
    losses by class avoids that. ``y`` ``(B, 1, *spatial)`` float {0, 1}."""
    m = torch.ones_like(y) if mask is None else mask.float()
    fg, bg = y * m, (1 - y) * m
    dims = tuple(range(1, y.ndim))
    n = m.sum(dims, keepdim=True).clamp_min(1.0)
    w_fg = 0.5 * n / fg.sum(dims, keepdim=True).clamp_min(1.0)
    w_bg = 0.5 * n / bg.sum(dims, keepdim=True).clamp_min(1.0)
    return fg * w_fg + bg * w_bg


def soft_dice_loss(prob: torch.Tensor, y: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - (2 Σ p y + eps) / (Σ p + Σ y + eps)`` per image, averaged over the batch;
    ``prob``, ``y`` ``(B, 1, *spatial)``. Used with a plain BCE by ``seg_loss="bce-dice"``."""
    dims = tuple(range(1, y.ndim))
    inter = (prob * y).sum(dims)
    return (1.0 - (2.0 * inter + eps) / (prob.sum(dims) + y.sum(dims) + eps)).mean()


def flip_batch(x: np.ndarray, y: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Training augmentation (not in the paper): each case of ``x`` ``(B, 1, *spatial)``
    and its label ``y`` ``(B, *spatial)`` flipped, each with probability 1/2, along
    each of the last two (in-plane) axes; the slice axis of a volume is kept. With
    5 (BraTS) or 24 (atrium) training volumes the fixed crops alone are memorised."""
    x, y = x.copy(), y.copy()
    for b in range(len(x)):
        for ax in (-1, -2):
            if rng.random() < 0.5:
                x[b] = np.flip(x[b], ax)
                y[b] = np.flip(y[b], ax)
    return x, y


def random_subcrop(x: np.ndarray, y: np.ndarray, crop: tuple[int, ...], rng) -> tuple[np.ndarray, np.ndarray]:
    """Training augmentation (not in the paper) for ``--crop-jitter J``: the cases are
    prepared as ``crop + 2J`` regions centred on the label; each case of ``x``
    ``(B, 1, *big)`` / ``y`` ``(B, *big)`` is cut to ``crop`` at an offset drawn
    uniformly in ``0..2J`` per axis, so the structure sits up to ±J voxels off the
    centre. Measured reason: a P-Net trained only on label-centred BraTS crops (Dice
    0.85–0.99 on them) finds the tumour by its distance to the crop border, and on
    the whole volume it gets Dice 0.00–0.90 (docs/methods/mecca.md)."""
    big = x.shape[2:]
    xs, ys = [], []
    for b in range(len(x)):
        o = [int(rng.integers(0, n - c + 1)) for n, c in zip(big, crop)]
        sl = tuple(slice(a, a + c) for a, c in zip(o, crop))
        xs.append(x[b][(slice(None),) + sl])
        ys.append(y[b][sl])
    return np.stack(xs), np.stack(ys)


def _hints(p: torch.Tensor, y: np.ndarray, clicks: list, n: int, sigma: float, rng) -> torch.Tensor:
    from clinloop.models.mecca.hints import hint_map, simulate_clicks

    pred = p[:, 0].numpy() > 0.5
    maps = []
    for b in range(len(clicks)):
        clicks[b] += simulate_clicks(pred[b], y[b], n, rng)
        maps.append(hint_map(clicks[b], y.shape[1:], sigma))
    return torch.from_numpy(np.stack(maps))[:, None]


def _plain(fn, *xs):
    return fn(*xs)


def rl_loss(cfg, policy, confnet, x, y_np, rng, labeled: bool, run=_plain, p0: torch.Tensor | None = None,
            reach: float = 0.0, reach_balance: str = "crop"):
    """One A2C rollout of T steps on a batch; returns (loss, stats). ``run(fn, *batch)``
    applies a network (:meth:`clinloop.training.distributed.Dist.run_rows` splits it over ranks).
    ``p0`` ``(B, 1, *spatial)``: the initial probabilities (default 0.5, Algorithm 1 line 3).
    ``reach`` > 0 (not in the paper; ``--reach-rollouts``): as at inference with
    ``MECCAConfig.click_reach``, only agents within ``reach`` voxels of the episode's clicks
    move, and only they enter the policy and value losses (the others' reward would be 0);
    ``reach_balance`` "crop" keeps the foreground/background weights of the whole crop
    (:func:`balanced_weights`), "reach" balances the two classes among the agents in reach.
    Measured (docs/methods/mecca.md): on BraTS "crop" held the start with the gate and "reach"
    lost 0.01; on the atrium from the P-Net's probability "reach" gave the one rising curve."""
    if reach_balance not in ("crop", "reach"):
        raise ValueError(f"reach_balance must be 'crop' or 'reach', got {reach_balance!r}")
    from clinloop.models.mecca.hints import click_reach
    from clinloop.models.mecca.confidence import confidence_loss
    from clinloop.models.mecca.environment import action_values, initial_probability, make_state, transition
    from clinloop.models.mecca.label_generation import generate_labels
    from clinloop.models.mecca.reward import gain, plain_reward, shaped_reward

    y = torch.from_numpy(y_np.astype(np.float32))[:, None]
    p = initial_probability(x.shape) if p0 is None else p0
    clicks = [[] for _ in range(x.shape[0])]
    logps, values, ents, rewards, weights = [], [], [], [], []
    lc = torch.zeros(())
    for _ in range(cfg.steps):
        h = _hints(p, y_np, clicks, cfg.hint_points, cfg.hint_sigma, rng)
        near = None if reach <= 0 else torch.from_numpy(np.stack([click_reach(c, y_np.shape[1:], reach)
                                                                  for c in clicks]))[:, None]
        s = make_state(x, p, h)
        logits, v = run(policy, s)
        logp_all = F.log_softmax(logits, 1)
        with torch.no_grad():
            idx = torch.distributions.Categorical(logits=logits.movedim(1, -1)).sample().unsqueeze(1)
        a = action_values(idx)
        p_next = transition(p, idx) if near is None else torch.where(near, transition(p, idx), p)
        conf_logits = run(confnet, s) if labeled else run(confnet, s).detach()
        c = torch.sigmoid(conf_logits.gather(1, idx)).detach()
        if labeled:
            w = balanced_weights(y, near if reach_balance == "reach" else None)
            lc = lc + confidence_loss(conf_logits, idx, a, y, w if cfg.balance_confidence else None)
            r = shaped_reward(p, p_next, y, c, cfg.alpha, cfg.beta) if cfg.shaping else plain_reward(p, p_next, y)
        else:
            y_hat, m = generate_labels(a, c, cfg.delta)
            g = gain(p, p_next, y_hat)
            r = (cfg.alpha * (2.0 - c) ** cfg.beta * g if cfg.shaping else g) * m
            w = balanced_weights(y_hat, m * near if near is not None and reach_balance == "reach" else m)
        w = w if near is None else w * near
        logps.append(logp_all.gather(1, idx))
        ents.append(-(logp_all.exp() * logp_all).sum(1, keepdim=True))
        values.append(v)
        rewards.append(r.detach())
        weights.append(w)
        p = p_next.detach()
    R = torch.zeros_like(rewards[0])
    pl = vl = el = torch.zeros(())
    for t in reversed(range(cfg.steps)):
        R = rewards[t] + cfg.gamma * R
        adv = R - values[t]
        wsum = weights[t].sum().clamp_min(1e-6)
        pl = pl - (logps[t] * adv.detach() * weights[t]).sum() / wsum
        vl = vl + 0.5 * (adv.pow(2) * weights[t]).sum() / wsum
        el = el + (ents[t] * weights[t]).sum() / wsum
    loss = (pl + cfg.value_coef * vl - cfg.entropy_coef * el) / cfg.steps + lc / cfg.steps
    return loss, {"policy": float(pl.detach()) / cfg.steps, "value": float(vl.detach()) / cfg.steps,
                  "conf": float(lc.detach()) / cfg.steps,
                  "reward": float(sum(r.sum() for r in rewards)) / x.shape[0]}


def seg_loss(cfg, logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The CNNs' loss on logits ``(B, 1, *spatial)``: ``cfg.seg_loss`` = ``"balanced-bce"``
    (BCE weighted by :func:`balanced_weights`, the LIDC models) or ``"bce-dice"`` (plain
    BCE + :func:`soft_dice_loss`; the class-balanced weights over-segment small
    structures, see docs/methods/mecca.md "Why Dice was low")."""
    if cfg.seg_loss == "bce-dice":
        return F.binary_cross_entropy_with_logits(logit, y) + soft_dice_loss(torch.sigmoid(logit), y)
    return F.binary_cross_entropy_with_logits(logit, y, weight=balanced_weights(y))


def cnn_loss(cfg, net, x, y_np, rng, run=_plain, p0: torch.Tensor | None = None):
    """InterCNN: T unrolled steps, loss at each step; non-interactive CNN: one loss
    (:func:`seg_loss`). ``p0``: the initial probabilities (default 0.5)."""
    from clinloop.models.mecca.environment import initial_probability
    from clinloop.models.mecca.interactive_cnn import cnn_step

    y = torch.from_numpy(y_np.astype(np.float32))[:, None]
    if cfg.method == "mecca-unet":
        return seg_loss(cfg, run(net, x), y), {}
    p = initial_probability(x.shape) if p0 is None else p0
    clicks = [[] for _ in range(x.shape[0])]
    loss = torch.zeros(())
    for _ in range(cfg.steps):
        h = _hints(p, y_np, clicks, cfg.hint_points, cfg.hint_sigma, rng)
        logit = run(lambda *a: cnn_step(net, *a), x, p, h)
        loss = loss + seg_loss(cfg, logit, y)
        p = torch.sigmoid(logit).detach()
    return loss / cfg.steps, {}


def _initial(init_net, x: torch.Tensor, binary: bool = False) -> torch.Tensor | None:
    """p^(0) from the frozen P-Net ``init`` (``cfg.init`` "pnet" or, ``binary``, "pnet-mask":
    :func:`clinloop.models.mecca.model.pnet_initial`), else None (0.5)."""
    from clinloop.models.mecca.model import pnet_initial

    return None if init_net is None else pnet_initial(init_net, x, binary)
