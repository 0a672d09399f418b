"""Aggregation and representative candidates (spa.txt §3.3-3.4).

    y_app = 1_{0.5}( (1/N) sum_n y_n )                     (majority of the N masks)
    {r_k}_{k=1}^K = centroids of K-means over {y_n},  K = 4, binarised at 0.5
    Delta_{r_k} = (+: r_k & ~y_app,  -: ~r_k & y_app)       shown in two colours

Masks are compared as flattened binary vectors (squared Euclidean distance =
number of differing pixels). K-means is our own small seeded torch
implementation (k-means++ seeding, Lloyd iterations): on 48 masks of 256² it is
several times faster than scikit-learn's KMeans with its per-call overhead
(benchmarks/bench_spa.py measures both) and deterministic for a seed. When
there are fewer distinct masks than K, duplicates of the nearest distinct
centroid fill the remaining slots so the UI always shows K candidates.
"""
from __future__ import annotations

import numpy as np
import torch


def aggregate(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``masks (N, *spatial)`` in {0,1} -> (probability = mean ``(*spatial)`` float, y_app bool)."""
    p = masks.float().mean(0)
    return p, p > 0.5


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means on rows of ``x (N, P)`` float. Returns centroids ``(k, P)`` and labels ``(N,)``.

    k-means++ initialisation from a ``torch.Generator`` seeded with ``seed``;
    Lloyd iterations until labels stop changing. Raises ValueError if ``k`` < 1.
    Requires N >= k (callers pad, see :func:`representative_candidates`)."""
    n = x.shape[0]
    if k < 1 or n < k:
        raise ValueError(f"k-means needs 1 <= k <= N; got k={k}, N={n}")
    g = torch.Generator().manual_seed(int(seed))
    x = x.float()
    sq = (x * x).sum(1)
    idx = [int(torch.randint(n, (1,), generator=g))]
    d2 = (sq - 2 * x @ x[idx[0]] + sq[idx[0]]).clamp_min(0)
    for _ in range(1, k):
        tot = float(d2.sum())
        nxt = int(torch.multinomial(d2 / tot, 1, generator=g)) if tot > 0 else int(torch.randint(n, (1,), generator=g))
        idx.append(nxt)
        d2 = torch.minimum(d2, (sq - 2 * x @ x[nxt] + sq[nxt]).clamp_min(0))
    c = x[idx].clone()
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        dist = sq[:, None] - 2 * x @ c.T + (c * c).sum(1)[None]
        new = dist.argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
        onehot = torch.nn.functional.one_hot(labels, k).T.float()  # (k, N): one matmul, no row copies
        counts = onehot.sum(1)
        nonempty = counts > 0
        c[nonempty] = (onehot @ x)[nonempty] / counts[nonempty, None]
    return c, labels


def representative_candidates(masks: torch.Tensor, k: int = 4, seed: int = 0, pool: int = 1) -> torch.Tensor:
    """r_k: ``masks (N, *spatial)`` -> ``(K, *spatial)`` bool, K-means centroids binarised at 0.5,
    ordered by cluster size (largest first) so the order is stable.

    ``pool`` > 1 (2-D masks only) clusters ``pool x pool`` average-pooled masks (pool² fewer
    features; speed) and then takes each centroid as the full-resolution mean of its members."""
    n = masks.shape[0]
    spatial = masks.shape[1:]
    flat = masks.reshape(n, -1).float()
    # distinct masks via hashes of their packed bits (torch.unique(dim=0) sorts 48 x 65k rows: slow)
    packed = np.packbits(masks.reshape(n, -1).numpy().astype(bool), axis=1)
    kk = min(k, len({row.tobytes() for row in packed}))
    feats = flat
    if pool > 1 and len(spatial) == 2:
        feats = pooled_fraction(masks, pool)
    c, labels = kmeans(feats, kk, seed=seed)
    if feats is not flat:
        if torch.unique(labels).numel() < kk:  # pooling merged distinct masks: cluster at full resolution
            c, labels = kmeans(flat, kk, seed=seed)
        else:
            onehot = torch.nn.functional.one_hot(labels, kk).T.float()
            c = (onehot @ flat) / onehot.sum(1, keepdim=True)
    sizes = torch.bincount(labels, minlength=kk)
    order = torch.argsort(sizes, descending=True, stable=True)
    cands = (c[order] > 0.5)
    if kk < k:  # too few distinct masks: repeat the largest clusters
        cands = torch.cat([cands, cands[torch.arange(k - kk) % kk]])
    return cands.view(k, *spatial)


def pooled_fraction(masks: torch.Tensor, pool: int) -> torch.Tensor:
    """Fraction of foreground in each ``pool x pool`` block: ``masks (N, H, W)`` {0,1} -> ``(N, ceil(H/pool) *
    ceil(W/pool))`` float, equal to ``avg_pool2d(masks, pool, ceil_mode=True)``. When the blocks tile the
    image and pool² < 256 the counts are summed as uint8 strided slices (exact; ~9x faster than
    ``avg_pool2d`` on float copies of 48 masks of 256²)."""
    n, h, w = masks.shape
    if h % pool or w % pool or pool * pool > 255:
        return torch.nn.functional.avg_pool2d(masks.float().view(n, 1, h, w), pool, ceil_mode=True).flatten(1)
    u = (masks if masks.dtype == torch.bool else masks != 0).view(torch.uint8).view(n, h // pool, pool, w // pool, pool)
    rows = u[:, :, 0]
    for i in range(1, pool):
        rows = rows + u[:, :, i]  # (N, H/p, W/p, p) uint8
    counts = rows[..., 0]
    for j in range(1, pool):
        counts = counts + rows[..., j]
    return counts.reshape(n, -1).float() / (pool * pool)


def volume_candidates(ys: list[torch.Tensor], boxes: list[tuple[int, int, int, int]], k: int, n: int, seed: int,
                      size: tuple[int, int] = (256, 256)) -> list[torch.Tensor]:
    """{r_k} of a volume (§3.4 over 3-D samples): K-means (seeded with ``seed``) over the N 3-D samples
    y_n, given per slice as ``ys[i] (N, bh, bw)`` bool cropped to ``boxes[i]`` (r0, r1, c0, c1, exclusive
    ends, in a ``size`` frame) and 2x2-pooled (exact: the all-zero columns outside the boxes add nothing
    to distances); candidate k is, on every slice, the 0.5-binarised mean of cluster k's members, ordered
    by cluster size, duplicates filling the slots when fewer than K samples are distinct. Returns one
    ``(K, *size)`` bool per slice."""
    feats = [pooled_fraction(y, 2) for y in ys if y.numel()]
    x = torch.cat(feats, 1) if feats else torch.zeros(n, 1)
    kk = min(k, len({row.numpy().tobytes() for row in x}))
    _, labels = kmeans(x, kk, seed=seed)
    onehot = torch.nn.functional.one_hot(labels, kk).T.float()  # (kk, N)
    sizes = onehot.sum(1)
    rank = torch.argsort(sizes, descending=True, stable=True)
    rank = torch.cat([rank, rank[torch.arange(k - kk) % kk]]) if kk < k else rank
    out = []
    for y, (r0, r1, c0, c1) in zip(ys, boxes):
        cm = torch.zeros(k, *size, dtype=torch.bool)
        if y.numel():
            mean = (onehot @ y.reshape(n, -1).float()) / sizes[:, None]
            cm[:, r0:r1, c0:c1] = (mean[rank] > 0.5).view(k, r1 - r0, c1 - c0)
        out.append(cm)
    return out


def differences(candidates: torch.Tensor, y_app: torch.Tensor) -> torch.Tensor:
    """Delta_{r_k}: ``(K, 2, *spatial)`` bool; channel 0 = added (+), 1 = removed (-)."""
    return torch.stack([candidates & ~y_app[None], ~candidates & y_app[None]], dim=1)
