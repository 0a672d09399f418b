"""Volumetric SPA/MedUHIP sessions: one click on one slice, a 3-D mask back.

``Session(model, volume)`` with a ``(D, H, W)`` volume (or a 3-D
``MultiRaterSample``, whose ``spacing`` is used) and an SPA-family model builds
a :class:`VolumeState`. Per user action (spa.txt Alg. 1, one iteration j):

1. **Anchor slice.** The slice of the latest click along the session's axis
   (:mod:`.planes`) is prompted exactly as 2-D SPA prompts an image: the user's
   points on that slice, plus the chosen candidate's slice as the mask prompt
   after a ``choose``. A **corrective click** (any click after the first
   proposal, issue 17) prompts with the *current* mask instead: the last
   proposal's y_app on that slice, in the model frame (zero outside the
   resized image; resampled from the 3-D mask when the click changes the axis)
   -- except right after a ``choose``, when the chosen candidate's slice stays
   the mask prompt; where the current mask is empty on that slice, the prompt
   is as before (the chosen candidate's slice, if any). e_u of this prompt
   gives the preference distribution p_theta (the PDG runs **once per
   action**, here), and the N latents z_n ~ p_theta are drawn **once** with
   the same seed rule as 2-D
   (``seed * 1_000_003 + iteration``). On a single-slice volume the anchor's
   mask and probability therefore equal the 2-D session's.
2. **Propagation.** From the anchor outwards, first to higher then to lower
   slice indices, each next slice is prompted by the previous slice's y_app in
   the 256² model frame (all planes along one axis share a frame): by default
   its **box** (``VolumeConfig.use_box``); optionally also a positive point at
   its interior (the pixel farthest from the boundary, ``use_point``) and the
   mask itself as the mask prompt (±4 logits, as SPA feeds a chosen candidate,
   ``use_mask``); plus any user points on that slice. After a ``choose`` the
   chosen 3-D candidate's slice is the mask prompt. The decoder runs once per
   slice and the *same* N latents give that slice's N samples (the tail path's
   per-sample offsets), so sample n is one 3-D mask y_n under one latent.
   Measured with spa-lidc on a 24x96x96 ellipsoid, 3-D Dice: box 0.78, point 0.55, box+point+mask
   0.56, mask alone 0.06 (``box_margin``, ``box_threshold``: off; docs/methods/spa.md "Volumes").
3. **Stop rule** (slice t against the last kept slice, both in plane pixels):
   stop when the new y_app is empty ("vanished"), has fewer than ``min_area``
   pixels or less than ``min_area_fraction`` of the largest slice kept so far
   in this direction ("small"; off by default: neutral on every volume
   measured; "regrow": ``regrow_below``, off), when the N samples disagree -- u, the
   sum of 4p(1-p) over the plane divided by the mask's area
   (:func:`~clinloop.interaction.propagation.slice_uncertainty`), above
   ``max_uncertainty`` or, when that is higher, above ``anchor_uncertainty``
   times the anchor slice's own u ("uncertain": a box past the structure's
   end still yields a blob, but an uncertain one; on the ellipsoid above u was
   0.98-1.0 on every slice past the ends and at most 0.48 inside; inside a
   BraTS tumour spa-general's slices reach 0.6-1.0 (its clicked slice 1.14),
   past its ends 1.0-2.8: the fixed bound alone stopped two of three
   held-back tumours after 7 and 12 slices) -- when it overlaps the previous
   mask by less than ``min_overlap`` of the smaller of the two, or its
   centroid moved more than ``max_centroid_shift`` equivalent radii
   (sqrt(area/pi)) of the previous one ("jump"). Slice t is then dropped (its
   mask stays zero) and the direction ends, unless a slice further on carries
   a positive user click: propagation resumes there (a clicked slice is
   always segmented, never stopped).
4. **3-D candidates** (:func:`clinloop.models.spa.candidates.volume_candidates`).
   K-means (seeded with the step seed) clusters the N *3-D* samples y_n (2x2-pooled,
   each slice cropped to the box where any sample is foreground: exact, since
   all-zero columns add nothing to distances); candidate k is, on every slice,
   the 0.5-binarised mean of the same member latents, so the K candidates are K
   consistent 3-D styles, ordered by cluster size. ``choose(k)`` feeds
   candidate k back (its anchor slice to the PDG, every slice as mask prompt)
   and recomputes the volume.
5. **Orthogonal refinement** (:mod:`.orthogonal`; ``VolumeConfig.orthogonal``, on): the planes along
   the two other axes, box-prompted from y_app under the same latents, vote with the propagation per
   sample (majority of three); y_app and the candidates (step 4) come from the fused samples, the
   next steps' mask prompts are resampled from them, and ``progress`` ends with the fused slices.

Image encoding is lazy: only the slices the propagation visits are encoded
(the anchor, the reached slices and the one slice where each direction
stopped), each once per session (``SliceCache``, shared with ``undo``/replay).
With ``VolumeConfig.encode_ahead = k`` a background thread
(:class:`clinloop.models.spa.ahead.EncodeAhead`) encodes up to k slices beyond
each frontier while the step decodes; a per-slice lock shares each encoding
between the two threads, so the masks are bit-identical with and without it
(``extra["encoded_ahead"]``: slices the worker encoded; ``encoded_slices``
counts the slices the step used that were not cached when it began).
``progress`` (a callable) receives a :class:`SliceResult` after each slice so a
UI can show the 3-D result as it grows; candidates exist once the volume is
done. Later clicks may use another ``axis``: user points and the chosen
candidate are kept in voxel coordinates, so they prompt whichever planes the
new axis visits.

A **box** ``(x0, y0, x1, y1, z)`` as the first action (``Session.box``) is a
box prompt on axial slice z (in place of the click's point; the PDG and the N
latents follow from it as from a click); propagation then runs along axis 0
exactly as after a click, and the user's box stays that slice's box prompt (and
marks it as a clicked slice) in later steps.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from clinloop.interaction import planes as pl
from clinloop.interaction.propagation import (
    SliceResult,
    VolumeConfig,
    check_spacing,
    interior_point,
    propagated_box,
    slice_uncertainty,
    stop_reason,
)
from clinloop.interaction.proposal import Proposal
from clinloop.models.spa import orthogonal as orth
from clinloop.models.spa.prompts import SPAStateBase

__all__ = ["VolumeConfig", "VolumeState", "SliceResult", "check_spacing", "interior_point", "stop_reason"]


@dataclass
class _Slice:
    """Per-slice model inputs, cached for the session (``e_x`` stored float16: the values are
    float16-rounded by the embedding cache, so this is exact)."""

    e_x: torch.Tensor  # (1, 256, 64, 64) float16
    info: Any  # litemedsam ResizeInfo of the square-pixel plane
    grid: pl.PlaneGrid

    def plane_to_model(self, plane: np.ndarray) -> torch.Tensor:
        """A ``(rows, cols)`` bool mask of this plane -> ``(256, 256)`` bool in its model frame."""
        from clinloop.models.litemedsam.preprocess import mask_to_model

        return mask_to_model(self.grid.to_model(plane[None].astype(np.float32))[0] > 0.5, self.info) > 0.5


@dataclass
class _Out:
    y_model: torch.Tensor  # (256, 256) bool, y_app in the model frame
    prob: torch.Tensor  # (rows, cols) float, input plane
    ys: torch.Tensor  # (N, bh, bw) bool samples inside ``box`` (model frame)
    box: tuple[int, int, int, int]  # r0, r1, c0, c1 (model frame, exclusive ends)
    y_box: torch.Tensor | None = None  # (256, 256) bool: mean of the N > VolumeConfig.box_threshold (None: y_app)
    mask: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.mask = (self.prob > 0.5).numpy()


SliceCache = dict  # (axis, index) -> _Slice


class VolumeState(SPAStateBase):
    """The ``ModelState`` of a volumetric SPA session (module docstring)."""

    def __init__(self, model, image: np.ndarray, seed: int, profile: dict[str, Any] | None,
                 config: VolumeConfig | None = None, spacing=None, cache: SliceCache | None = None,
                 progress: Callable[[SliceResult], None] | None = None, structure: str | None = None) -> None:
        self.model, self.net, self.seed = model, model.net, int(seed)
        self.structure, self.structure_id = structure, model.net.structure_index(structure)  # (.structure)
        self._sid = self.structure_id  # the index this step decodes with (decoding_structure)
        self.vcfg = config or VolumeConfig()
        if image.ndim != 4:
            raise ValueError(f"a volume must be (D, H, W); got an image of shape {image.shape[1:]}")
        if image.shape[0] not in (1, 3):
            raise ValueError(f"a volume for SPA needs 1 or 3 channels; got {image.shape[0]} (shape {image.shape})")
        n_vox = int(np.prod(image.shape[1:]))
        if n_vox > self.vcfg.max_voxels:
            raise ValueError(f"volume {image.shape[1:]} has {n_vox} voxels, more than max_voxels="
                             f"{self.vcfg.max_voxels}; crop it or raise VolumeConfig.max_voxels")
        if float(image.min()) == float(image.max()):  # a blank series (e.g. a failed read): nothing to follow
            raise ValueError(f"the 3-D volume of shape {image.shape[1:]} is constant (all {float(image.min())}): "
                             "nothing to segment")
        self.image, self.shape = image, tuple(image.shape[1:])
        self.spacing = check_spacing(self.vcfg.spacing if self.vcfg.spacing is not None else (spacing or (1, 1, 1)))
        self.cache = cache if cache is not None else {}
        self.progress = progress
        self.axis, self.anchor = self.vcfg.axis, 0
        self.clicks: list[tuple[tuple[float, float, float], int]] = []
        self.corrective: list[tuple[tuple[float, float, float], bool]] = []  # clicks after the first action
        self.user_box: tuple[int, tuple[float, float, float, float]] | None = None  # (z, inclusive x0, y0, x1, y1)
        self.chosen: np.ndarray | None = None  # (D, H, W) bool: the chosen 3-D candidate (input frame)
        self.chosen_model: dict[tuple[int, int], torch.Tensor] = {}  # same, model frame per (axis, slice)
        self.slice_cands: dict[int, torch.Tensor] = {}  # last proposal: slice -> (K, 256, 256) model frame
        self.candidates: np.ndarray | None = None
        # the current mask (last proposal's y_app): model frame per (axis, slice), and (D, H, W) input frame
        self.current: dict[tuple[int, int], torch.Tensor] = {}
        self.current_mask: np.ndarray | None = None
        self.last_action: str | None = None
        self.iteration = 0
        self._fresh: set[tuple[int, int]] = set()  # slices encoded since the step began (any thread)
        self._fresh_lock = threading.Lock()
        self._ahead = None  # the running step's EncodeAhead worker
        self.gmm = self.carried_gmm(profile, model.config.latent_dim)
        self.carried = self.gmm is not None

    # ------------------------------------------------------------------ actions
    def click(self, point, positive: bool, axis: int | None = None) -> Proposal:
        if len(point) != 3:
            raise ValueError(f"a volume takes 3-D points (x, y, z); got {tuple(point)}")
        self.axis = pl.check_axis(self.axis if axis is None else axis)
        pt = tuple(float(v) for v in point)
        self.clicks.append((pt, 1 if positive else 0))
        if self.iteration:  # a corrective click, honoured as a hard constraint on its voxel's axial slice
            self.corrective.append((pt, bool(positive)))
        self.anchor = pl.split_point(pt, self.axis)[0]
        return self._step("click")

    def box(self, box) -> Proposal:
        """A box ``(x0, y0, x1, y1, z)`` on axial slice z as the first action (module docstring)."""
        if len(box) != 5:
            raise ValueError(f"a volume takes a box (x0, y0, x1, y1, z); got {tuple(box)}")
        if self.iteration:
            raise ValueError("a box must be the first interaction")
        self.axis, t = 0, int(round(box[4]))
        self.user_box = (t, tuple(float(v) for v in box[:4]))
        self.anchor = t
        return self._step("box")

    def _box_prompt(self, t: int, s: _Slice) -> torch.Tensor | None:
        """The user's box on slice t in the model frame ``(1, 4)``, or None."""
        if self.user_box is None or self.axis != 0 or self.user_box[0] != t:
            return None
        from clinloop.models.litemedsam.preprocess import box_to_model

        x0, y0, x1, y1 = self.user_box[1]
        fr, fc = s.grid.model_size[0] / s.grid.size[0], s.grid.model_size[1] / s.grid.size[1]
        b = box_to_model([x0 * fc, y0 * fr, (x1 + 1) * fc - 1, (y1 + 1) * fr - 1], s.info)
        return torch.tensor([b.tolist()], dtype=torch.float32)

    def choose(self, k: int) -> Proposal:
        self.check_choice(k, self.candidates)
        self.chosen = self.candidates[k].copy()
        self.chosen_model = {(self.axis, t): c[k].clone() for t, c in self.slice_cands.items()}
        return self._step("choose")

    # ------------------------------------------------------------------ per slice
    def _slice(self, t: int, axis: int | None = None) -> _Slice:
        """Slice t's embedding, encoded once per session (by the step or the encode-ahead worker:
        a per-slice lock makes the two share one encoding)."""
        key = (self.axis if axis is None else axis, t)
        if key not in self.cache:
            from clinloop.models.litemedsam.cache import embed, key_locks
            from clinloop.models.litemedsam.preprocess import preprocess

            with key_locks([f"spa-volume-slice:{id(self.cache)}:{key[0]}:{key[1]}"]):
                if key not in self.cache:
                    plane = pl.take(self.image, key[0], t)
                    grid = pl.plane_grid(plane.shape[1:], pl.plane_spacing(self.spacing, key[0]),
                                         self.vcfg.anisotropy_tolerance)
                    x, info = preprocess(grid.to_model(plane))
                    e = embed([x], self.net.backbone, cache=getattr(self.model, "disk_cache", False), progress=False)
                    self.cache[key] = _Slice(e.half(), info, grid)
                    with self._fresh_lock:
                        self._fresh.add(key)
        return self.cache[key]

    def _user_points(self, t: int, s: _Slice, positive_only: bool = False) -> list[tuple[tuple[float, float], int]]:
        from clinloop.models.litemedsam.preprocess import points_to_model

        out = []
        for pt, lab in self.clicks:
            i, (c, r) = pl.split_point(pt, self.axis)
            if i == t and (lab or not positive_only):
                out.append((tuple(points_to_model([s.grid.point_to_model(c, r)], s.info)[0]), lab))
        return out

    def _chosen_prompt(self, t: int, s: _Slice) -> torch.Tensor | None:
        if (self.axis, t) in self.chosen_model:
            return self.chosen_model[(self.axis, t)]
        if self.chosen is None:
            return None
        m = self.chosen_model[(self.axis, t)] = s.plane_to_model(pl.take(self.chosen, self.axis, t))
        return m

    def _prompt(self, t: int, s: _Slice, guide: torch.Tensor | None, box_guide: torch.Tensor | None = None):
        """(points, box, mask logits) for slice t; ``guide`` = the previous slice's y_app (model frame),
        ``box_guide`` the mask whose box is propagated (``VolumeConfig.box_threshold``; None: guide's)."""
        from clinloop.models.spa.prompts import mask_prompt

        pts = self._user_points(t, s)
        box = mp = None
        if guide is not None and guide.any():
            if self.vcfg.use_point:
                pts.append((interior_point(guide), 1))
            if self.vcfg.use_box:
                box = propagated_box(guide if box_guide is None else box_guide, self.vcfg.box_margin)
            if self.vcfg.use_mask:
                mp = mask_prompt(guide)
        user_box = self._box_prompt(t, s)
        if user_box is not None:
            box = user_box
        chosen = self._chosen_prompt(t, s)
        if chosen is not None:
            mp = mask_prompt(chosen)
        p = None
        if pts:
            p = (torch.tensor([[list(q) for q, _ in pts]], dtype=torch.float32),
                 torch.tensor([[lab for _, lab in pts]], dtype=torch.long))
        return p, box, mp

    def _run(self, t: int, s: _Slice, prompt, z: torch.Tensor, encoded=None) -> _Out:
        with self.net.structure_scope(self._sid):  # in this thread: the structure's adapters or expert
            return self._decode(t, s, prompt, z, encoded)

    def _decode(self, t: int, s: _Slice, prompt, z: torch.Tensor, encoded=None) -> _Out:
        from clinloop.models.litemedsam.preprocess import postprocess_logits

        e_x = s.e_x.float()
        sparse, dense = encoded if encoded is not None else self.net.encode_interaction(
            prompt[0], prompt[2], prompt[1], self._sid)
        base = self.net.decode_base(e_x, sparse, dense) if self.net.config.path == "tail" else None
        ys = self.net.sample_logits(e_x, sparse, dense, z, base) > 0  # (N, 256, 256)
        prob_m = ys.float().mean(0)
        prob = s.grid.from_model(postprocess_logits(prob_m[None], s.info))[0].clamp(0, 1)
        h, w = s.info.resized_size
        anyf = ys[:, :h, :w].any(0)
        if anyf.any():
            rr, cc = torch.nonzero(anyf, as_tuple=True)
            box = (int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1)
        else:
            box = (0, 0, 0, 0)
        thr = self.vcfg.box_threshold
        return _Out(prob_m > 0.5, prob, ys[:, box[0]:box[1], box[2]:box[3]].clone(), box,
                    None if thr == 0.5 else prob_m > thr)

    # ------------------------------------------------------------------ the step
    def _current_prompt(self, t: int, s: _Slice) -> torch.Tensor | None:
        """The current 3-D mask's slice t in the model frame ``(256, 256)`` bool, or None when it is
        empty there (or before any proposal): the last step's y_app when it ran along this axis,
        else the 3-D mask's plane resampled as :meth:`_chosen_prompt` resamples a choice."""
        m = self.current.get((self.axis, t))
        if m is None and self.current_mask is not None and (self.axis, t) not in self.current:
            plane = pl.take(self.current_mask, self.axis, t)
            if plane.any():
                m = s.plane_to_model(plane)
        return m if m is not None and bool(m.any()) else None

    def _anchor_prompt(self, a: int, s: _Slice, action: str):
        """Slice a of an action: :meth:`_prompt` without a guide; for a click after a proposal (not
        right after a ``choose``) the current mask's slice a is the mask prompt (a corrective click)."""
        from clinloop.models.spa.prompts import mask_prompt

        points, box, mp = self._prompt(a, s, None)
        if action == "click" and self.last_action not in (None, "choose"):
            cur = self._current_prompt(a, s)
            if cur is not None:
                mp = mask_prompt(cur)
        return points, box, mp

    def _start_ahead(self, a: int, n_sl: int):
        if self._ahead is not None:  # the previous step's worker: stopped, let it finish its slice
            self._ahead.cancel(wait=True)
            self._ahead = None
        if self.vcfg.encode_ahead < 1 or n_sl < 2:
            return None
        from clinloop.models.spa.ahead import EncodeAhead

        axis = self.axis
        self._ahead = EncodeAhead(lambda t: self._slice(t, axis), n_sl, a, self.vcfg.encode_ahead)
        return self._ahead

    @torch.inference_mode()
    def _step(self, action: str) -> Proposal:
        from clinloop.models.spa.preference_distribution import sample

        cfg, t_start = self.model.config, time.perf_counter()
        self.iteration += 1
        self._sid = self.decoding_structure(cfg)
        n_sl = self.shape[self.axis]
        a = self.anchor
        with self._fresh_lock:  # before the worker starts: a slice it encodes first must count
            self._fresh = set()
        ahead = self._start_ahead(a, n_sl)
        used = {a}
        try:
            s = self._slice(a)
            prompt = self._anchor_prompt(a, s, action)
            with self.net.structure_scope(self._sid):
                sparse, dense = self.net.encode_interaction(prompt[0], prompt[2], prompt[1], self._sid)
                if not (self.carried and self.iteration == 1):  # p^(0) from the click, or the carried profile
                    self.gmm = self.net.distribution(s.e_x.float(), sparse, dense).detach()
            step_seed = self.seed * 1_000_003 + self.iteration
            z, _ = sample(self.gmm, cfg.n_samples, torch.Generator().manual_seed(step_seed))
            outs = {a: self._run(a, s, prompt, z, (sparse, dense))}
            self._notify(a, outs)
            stops: dict[str, Any] = {}
            positive = sorted({pl.split_point(p, self.axis)[0] for p, lab in self.clicks if lab}
                              | ({self.user_box[0]} if self.user_box is not None and self.axis == 0 else set()))
            u_a = slice_uncertainty(outs[a].mask, outs[a].prob.numpy())
            for d in (1, -1):
                prev, t, peak = outs[a], a + d, int(outs[a].mask.sum())
                trough = peak
                while 0 <= t < n_sl:
                    if prev is None or not prev.mask.any():
                        ahead_clicks = [i for i in positive if (i - t) * d >= 0]
                        if not ahead_clicks:
                            break
                        t, prev = min(ahead_clicks, key=lambda i: abs(i - t)), None  # resume at the next clicked slice
                    if ahead is not None:
                        ahead.at(d, t)
                    used.add(t)
                    s = self._slice(t)
                    out = self._run(t, s, self._prompt(t, s, prev and prev.y_model, prev and prev.y_box), z)
                    clicked = t in positive
                    why = None if clicked or prev is None else stop_reason(prev.mask, out.mask, self.vcfg,
                                                                           out.prob.numpy(), peak, u_a, trough)
                    if why is None and not out.mask.any() and not clicked:
                        why = "vanished"
                    if why is not None:
                        stops[f"{'+' if d > 0 else '-'}{t}"] = why
                        prev = None
                    else:
                        outs[t] = prev = out
                        peak, trough = max(peak, int(out.mask.sum())), min(trough, int(out.mask.sum()))
                        self._notify(t, outs)
                    t += d
                if ahead is not None:
                    ahead.stop(d)
        finally:
            if ahead is not None:
                ahead.cancel()
        with self._fresh_lock:
            encoded = len(self._fresh & {(self.axis, t) for t in used})
        fused = orth.fused_proposal(self, outs, z, step_seed)  # None: no orthogonal refinement
        with self._fresh_lock:  # ... else also the planes it encoded along the other axes
            encoded += 0 if fused is None else len({k for k in self._fresh if k[0] != self.axis})
        p = self._assemble(outs, step_seed, stops, time.perf_counter() - t_start, encoded, fused)
        if ahead is not None:
            p.extra["encoded_ahead"] = len(ahead.encoded)
        changed = self._honour(p) if self.model.config.honour_clicks and self.corrective else set()
        if fused is not None:
            orth.report_fused(self, outs, p.mask, p.probability)
        self._remember(outs if fused is None else {}, p.mask, action)
        for z in changed:  # the next prompt there: the constrained mask, resampled (_current_prompt)
            for key in [k for k in self.current if self.axis != 0 or k == (0, z)]:
                del self.current[key]
        return p

    def _honour(self, p: Proposal) -> set[int]:
        """The corrective clicks as hard constraints (:func:`clinloop.interaction.constraints.honour_clicks`)
        on their voxels' axial slices of the mask and of every candidate; returns the changed slices."""
        from clinloop.interaction.constraints import honour_clicks

        changed = set()
        for (x, y, z), positive in self.corrective:
            zi = int(round(z))
            if not 0 <= zi < self.shape[0]:
                continue
            new = honour_clicks(p.mask[zi], p.probability[zi], [((x, y), positive)])
            if not np.array_equal(new, p.mask[zi]):
                changed.add(zi)
            p.mask[zi] = new
            for c in p.candidates:
                c[zi] = honour_clicks(c[zi], p.probability[zi], [((x, y), positive)])
        return changed

    def _remember(self, outs: dict[int, _Out], mask: np.ndarray, action: str) -> None:
        """Keep the proposal as the current mask (the next click's mask prompt on its slice):
        y_app in the model frame, zero outside the resized image as the candidates are (no ``outs``, after
        orthogonal refinement: every slice's prompt is resampled from ``mask``, :meth:`_current_prompt`)."""
        self.current = {}
        for t, o in outs.items():
            h, w = self.cache[(self.axis, t)].info.resized_size
            m = torch.zeros_like(o.y_model)
            m[:h, :w] = o.y_model[:h, :w]
            self.current[(self.axis, t)] = m
        for t in range(self.shape[self.axis]) if outs else ():
            self.current.setdefault((self.axis, t), None)  # empty along this axis: no mask prompt
        self.current_mask, self.last_action = mask, action

    def _notify(self, t: int, outs: dict[int, _Out]) -> None:
        if self.progress is not None:
            o = outs[t]
            self.progress(SliceResult(self.axis, t, o.mask, o.prob.numpy(), len(outs)))

    def _assemble(self, outs: dict[int, _Out], step_seed: int, stops, seconds: float, encoded: int,
                  fused=None) -> Proposal:
        from clinloop.models.litemedsam.preprocess import postprocess_logits
        from clinloop.models.spa import candidates as cand

        k_n, n = self.model.config.n_candidates, self.model.config.n_samples
        order = sorted(outs)
        if fused is not None:  # orthogonal refinement: the fused samples' y_app and candidates
            prob, cands, self.slice_cands = fused[0], fused[1], {}
        else:
            cms = cand.volume_candidates([outs[t].ys for t in order], [outs[t].box for t in order], k_n, n, step_seed)
            prob, cands = np.zeros(self.shape, np.float32), np.zeros((k_n, *self.shape), bool)
            self.slice_cands = dict(zip(order, cms))
        for t, cm in self.slice_cands.items():
            o, s = outs[t], self.cache[(self.axis, t)]
            pl.put(prob, self.axis, t, o.prob.numpy())
            ci = s.grid.from_model(postprocess_logits(cm.float(), s.info)) > 0.5
            pl.put(cands, self.axis, t, ci.numpy())
        self.candidates = cands
        mask = prob > 0.5
        lo, hi = (order[0], order[-1]) if order else (None, None)
        return Proposal(
            mask=mask, probability=prob, uncertainty=(4 * prob * (1 - prob)).astype(np.float32), candidates=cands,
            extra={"sample_seed": step_seed, "n_samples": n, "method": self.model.name, "axis": self.axis,
                   "anchor": self.anchor, "slices": [lo, hi], "n_slices": len(order), "stops": stops,
                   "encoded_slices": encoded, "seconds_total": seconds,
                   "orthogonal_planes": None if fused is None else fused[2]},
        )
