"""The one bootstrap of the benchmark report: a seeded percentile interval of a mean,
resampling patients (cluster bootstrap) or cases."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

N_BOOT = 2000


def bootstrap_ci(values: Sequence[float], groups: Sequence[Any] | None = None, *, n_boot: int = N_BOOT,
                 seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Mean of ``values`` (one per case) and its percentile bootstrap interval.

    With ``groups`` (one label per value, e.g. the patient) whole groups are
    resampled with replacement (the slices of one patient are correlated), else
    single cases. NaN values are dropped first. Returns ``{"mean", "lo", "hi",
    "n", "n_groups", "level", "n_boot", "seed"}``; ``lo``/``hi`` are ``None`` with
    fewer than two values (no interval), ``mean`` is ``None`` with none.
    Deterministic for a given ``seed``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {v.shape}")
    g = np.arange(v.size) if groups is None else np.asarray(list(groups), dtype=object)
    if g.shape != v.shape:
        raise ValueError(f"groups ({g.shape[0]}) and values ({v.size}) differ in length")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    keep = ~np.isnan(v)
    v, g = v[keep], g[keep]
    out: dict[str, Any] = {"mean": None, "lo": None, "hi": None, "n": int(v.size), "n_groups": 0,
                           "level": level, "n_boot": int(n_boot), "seed": int(seed)}
    if v.size == 0:
        return out
    labels, inv = np.unique(np.asarray([str(x) for x in g]), return_inverse=True)
    out["n_groups"] = int(labels.size)
    out["mean"] = float(v.mean())
    if v.size < 2:
        return out
    sums = np.bincount(inv, weights=v, minlength=labels.size)
    counts = np.bincount(inv, minlength=labels.size).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, labels.size, size=(int(n_boot), labels.size))
    w = np.stack([np.bincount(d, minlength=labels.size) for d in draws])  # times each group is drawn
    means = (w @ sums) / (w @ counts)
    a = (1 - level) / 2
    out["lo"], out["hi"] = float(np.quantile(means, a)), float(np.quantile(means, 1 - a))
    return out


def bootstrap_statistic(columns: dict[str, Sequence[float]], statistic, groups: Sequence[Any] | None = None, *,
                        n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """A statistic over cases that is not a mean (e.g. Spearman's ρ of two columns) and
    its percentile bootstrap interval, resampling groups (patients) or cases as
    :func:`bootstrap_ci`. ``statistic(**columns) -> float``; draws where it is NaN
    (e.g. a constant resample) are dropped. Same keys as :func:`bootstrap_ci`."""
    cols = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    n = len(next(iter(cols.values())))
    g = np.arange(n) if groups is None else np.asarray([str(x) for x in groups])
    out: dict[str, Any] = {"mean": None, "lo": None, "hi": None, "n": int(n), "n_groups": 0, "level": level,
                           "n_boot": int(n_boot), "seed": int(seed)}
    if n == 0:
        return out
    labels, inv = np.unique(g, return_inverse=True)
    out["n_groups"] = int(labels.size)
    out["mean"] = float(statistic(**cols))
    if n < 3:
        return out
    members = [np.flatnonzero(inv == j) for j in range(labels.size)]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(int(n_boot)):
        idx = np.concatenate([members[j] for j in rng.integers(0, labels.size, labels.size)])
        v = statistic(**{k: c[idx] for k, c in cols.items()})
        if not np.isnan(v):
            vals.append(v)
    if vals:
        a = (1 - level) / 2
        out["lo"], out["hi"] = float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))
    return out


def fmt_ci(ci: dict[str, Any] | None, digits: int = 3) -> str:
    """``0.849 (0.821–0.874)``; ``—`` when there is no value."""
    if not ci or ci.get("mean") is None:
        return "—"
    m = f"{ci['mean']:.{digits}f}"
    if ci.get("lo") is None:
        return m
    return f"{m} ({ci['lo']:.{digits}f}–{ci['hi']:.{digits}f})"


def fmt(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, ``—`` for None/NaN, strings unchanged."""
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, float) and np.isnan(x):
        return "—"
    return f"{x:.{digits}f}"


def n_label(ci: dict[str, Any] | None) -> str:
    """``67 (41 patients)``: the cases and patients behind a bootstrap."""
    if not ci:
        return "—"
    return f"{ci['n']} ({ci['n_groups']} patient{'s' if ci['n_groups'] != 1 else ''})"
