"""What the viewer draws besides the proposal: the image's intensity range and
display presets, the click markers, the slices that hold a mask, the crop
around the structure, the worklist's status column, the experts' (raters')
masks beside the proposal, and preference profiles kept per structure.

Everything here reads state the routes already hold (a :class:`~clinloop.server.live.Live`
session, the store, the worklist); the routes are :mod:`.routes.viewer` and
:mod:`.routes.raters`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from clinloop import metrics
from clinloop.server import encoding

# rater contours: colours distinct from the proposal (cyan), the candidates'
# green/magenta and MECCA's amber advice
RATER_RGB = [(255, 99, 71), (186, 104, 255), (255, 235, 59), (64, 224, 208), (255, 160, 122), (144, 238, 144),
             (135, 206, 250), (255, 182, 193)]
HU_MIN = -300.0  # CT whose 1st percentile lies below this is in Hounsfield units (air ~ -1000 HU)


def intensity(lv: Any) -> dict[str, Any]:
    """The grey image's intensity range for window/level (whole image or volume,
    computed once per live session): ``{kind, min, max, p1, p99, modality, hu}``.
    ``hu``: CT in Hounsfield units (modality CT or not stated, and 1st percentile
    < ``HU_MIN``: air is present; MRI and 0..255 crops never go that low),
    so HU presets (lung, soft tissue, bone, brain) make sense; otherwise the
    viewer's "auto" window is the 1..99 % percentile range."""
    cached = getattr(lv, "_intensity", None)
    if cached is not None:
        return cached
    modality = str(lv.meta.get("modality", "") or "")
    if lv.image.shape[0] != 1:
        out: dict[str, Any] = {"kind": "rgb", "modality": modality, "hu": False}
    else:
        a = lv.image[0].ravel()
        step = max(1, a.size // 2_000_000)  # percentiles of a strided sample: ~0.1 s on any volume
        p1, p99 = (float(v) for v in np.percentile(a[::step], [1, 99]))
        mn, mx = float(a.min()), float(a.max())
        out = {"kind": "grey", "min": mn, "max": mx, "p1": p1, "p99": p99, "modality": modality,
               "hu": modality.upper() in ("CT", "") and p1 < HU_MIN}
    lv._intensity = out
    return out


def clicks(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The clicks (and hint points) of a history, numbered from 1 in order:
    ``[{n, x, y, z, positive}]`` (``z`` ``None`` in 2-D)."""
    out: list[dict[str, Any]] = []
    for h in history:
        pts = [(h["point"], h["positive"])] if h["action"] == "click" else (
            [(p, pos) for p, pos in h["points"]] if h["action"] == "hint" else [])
        for p, pos in pts:
            out.append({"n": len(out) + 1, "x": float(p[0]), "y": float(p[1]),
                        "z": int(round(p[2])) if len(p) > 2 else None, "positive": bool(pos)})
    return out


def _bbox(m: np.ndarray) -> list[int] | None:
    rows, cols = np.nonzero(m)
    if rows.size == 0:
        return None
    return [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]


def view_state(lv: Any, z: int | None) -> dict[str, Any]:
    """``GET /api/sessions/{sid}/view``: intensity, clicks, and for the proposal
    on slice ``z`` its area there, the bounding box ``[x0, y0, x1, y1]`` (pixels,
    inclusive) of proposal ∪ candidates (the candidate cards' crop), and for
    volumes ``slice_areas`` (mask pixels per slice: the slice strip)."""
    s = lv.session
    p = s.proposal
    out: dict[str, Any] = {"intensity": intensity(lv), "clicks": clicks(s.history), "z": z,
                           "slice_area": None, "bbox": None, "slice_areas": None}
    if p is None:
        return out
    m = np.asarray(p.mask, dtype=bool)
    cands = None if p.candidates is None else np.asarray(p.candidates, dtype=bool)
    if m.ndim == 3:
        out["slice_areas"] = [int(v) for v in m.reshape(m.shape[0], -1).sum(axis=1)]
        m, cands = m[z], None if cands is None else cands[:, z]
    union = m if cands is None else m | cands.any(axis=0)
    out["slice_area"] = int(m.sum())
    out["bbox"] = _bbox(union)
    return out


# ------------------------------------------------------------------ worklist
def case_rows(ctx: Any, user: str) -> list[dict[str, Any]]:
    """The worklist rows with their status: ``status`` new / in progress /
    accepted (any user), ``by`` the users concerned, ``my_session``: this user's
    latest session on the case (the page resumes it instead of opening a duplicate)."""
    per: dict[str, list[dict[str, Any]]] = {}
    for r in ctx.store.case_sessions():
        per.setdefault(r["case_id"], []).append(r)
    out = []
    for row in ctx.worklist.rows:
        ss = per.get(row["case_id"], [])
        acc = sorted({r["owner"] for r in ss if r["status"] == "accepted"})
        opened = sorted({r["owner"] for r in ss if r["status"] != "accepted"} - set(acc))
        mine = [r for r in ss if r["owner"] == user]
        status = "accepted" if acc else "in progress" if opened else "new"
        out.append({**row, "status": status, "by": acc if acc else opened,
                    "my_session": mine[-1]["session_id"] if mine else None,
                    "my_status": mine[-1]["status"] if mine else None})
    return out


# ----------------------------------------------------------------- profiles
def profile_key(model: str, structure: str | None) -> str:
    """The store's profile key for a (model, structure): ``model`` alone for an
    image of unknown structure, ``"<model>::<structure>"`` otherwise, the structure
    matched as the models match it ("Nodule" = "nodule ": ``normalise_structure``)."""
    from clinloop.models.spa.structure import normalise_structure

    key = normalise_structure(structure)
    return f"{model}::{key}" if key else model


def profile_for(ctx: Any, user: str, meta: dict[str, Any], use_profile: bool | str,
                model: str | None = None) -> dict | None:
    """The profile a new session of ``model`` (default: the server's) starts with:
    ``use_profile`` False -> none; True -> the one learnt on this structure (uploads:
    the latest of any when it names no structure); ``"any"`` -> this structure's, else the latest learnt on
    any structure."""
    if not use_profile:
        return None
    model = model or ctx.model_name
    structure = meta.get("structure") or None
    own = stored_profile(ctx, user, model, structure)
    if own is None and use_profile == "any":
        return stored_profile(ctx, user, model)
    return own


def stored_profile(ctx: Any, user: str, model: str, structure: str | None = None) -> dict | None:
    """``user``'s stored profile for the served ``model`` (and ``structure``); one stored under the model's
    method name ("spa": before served models were named by their folder) when there is none under its name."""
    try:
        method = str(ctx.serving(model)[0].name)
    except KeyError:
        method = model
    for name in dict.fromkeys((model, method)):
        # (and the key as stored before structures were matched without regard to case)
        for key in dict.fromkeys((profile_key(name, structure), f"{name}::{structure}" if structure else name)):
            got = ctx.store.profile(user, key)
            if got is not None:
                return got
    return None


def save_structure_profile(ctx: Any, user: str, lv: Any, profile: dict[str, Any]) -> None:
    """Keep the profile under (user, the session's model, structure) too (the model-wide row keeps the latest)."""
    structure = lv.meta.get("structure") or None
    if structure:
        ctx.store.save_profile(user, profile_key(str(lv.row.get("model") or ctx.model_name), structure), profile)


# ------------------------------------------------------------------- raters
_CACHE_LOCK = threading.Lock()


def rater_masks(ctx: Any, case_id: str | None) -> tuple[np.ndarray, list[str]] | None:
    """The valid raters' masks ``(R, *spatial)`` bool and their ids for a
    worklist case (``None``: an upload or a case without raters); the last 4
    cases are cached in ``ctx.extra``."""
    if case_id is None or ctx.worklist.dataset is None or case_id not in ctx.worklist.index:
        return None
    with _CACHE_LOCK:
        cache = ctx.extra.setdefault("raters", OrderedDict())
        if case_id in cache:
            cache.move_to_end(case_id)
            return cache[case_id]
    s = ctx.worklist.dataset[ctx.worklist.index[case_id]]
    valid = np.asarray(s.rater_valid, dtype=bool)
    got = (np.asarray(s.masks, dtype=bool)[valid], [str(r) for r, v in zip(s.rater_ids, valid) if v]) \
        if s.n_raters else None
    with _CACHE_LOCK:
        cache[case_id] = got
        while len(cache) > 4:
            cache.popitem(last=False)
    return got


def raters_view(ctx: Any, lv: Any, z: int | None) -> dict[str, Any]:
    """``GET /api/sessions/{sid}/raters``: per rater its contour on slice ``z``
    (base64 PNG, its own colour), its Dice to the current proposal
    (:func:`clinloop.metrics.dice` over the whole image/volume; ``dice_slice``
    on slice ``z`` for volumes; ``null`` before the first proposal), and the
    rater-agreement heatmap: the fraction of raters marking each pixel (0..1)."""
    got = rater_masks(ctx, lv.row.get("case_id"))
    if got is None or got[0].shape[0] == 0:
        return {"n_raters": 0, "raters": [], "agreement": None, "z": z}
    masks, ids = got
    p = lv.session.proposal
    pm = None if p is None else np.asarray(p.mask, dtype=bool)
    vol = masks.ndim == 4
    out = []
    for k, (m, rid) in enumerate(zip(masks, ids)):
        sl = m[z] if vol else m
        out.append({"id": rid, "colour": "#%02x%02x%02x" % RATER_RGB[k % len(RATER_RGB)],
                    "contour": encoding.mask_png(sl, rgb=RATER_RGB[k % len(RATER_RGB)], fill_alpha=0),
                    "area": int(m.sum()),
                    "dice": None if pm is None else round(metrics.dice(pm, m), 4),
                    "dice_slice": None if pm is None or not vol else round(metrics.dice(pm[z], sl), 4)})
    frac = masks[:, z].mean(axis=0) if vol else masks.mean(axis=0)
    return {"n_raters": len(ids), "raters": out, "z": z, "agreement": encoding.heatmap_png(frac, vmax=1.0)}
