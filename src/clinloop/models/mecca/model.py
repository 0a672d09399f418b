"""MECCA as an interactive model for :class:`clinloop.interaction.session.Session`.

:class:`MECCAModel` wraps the networks of one model folder (``mecca``,
``mecca-no-confidence``, ``interactive-cnn`` or ``mecca-unet``) and implements
``InteractiveModel``: ``start(image)`` normalises the image and sets every
agent's probability to 0.5; each ``hint(points)`` (a ``click`` is a one-point
hint) adds the clicks to the hint map and runs **one refinement step**:

* RL methods: the policy's greedy action per agent, ``p ← clip(p + a, 0, 1)``
  (Eq. 1); the confidence ``c = C(s, a)`` of the chosen actions gives
  ``uncertainty = 1 - c`` and ranks the SLIC advice regions (5 least confident).
  Acting greedily (argmax of π) at inference is our choice; training samples.
  ``Proposal.confidence`` holds ``c`` itself (the action-confidence map).
* CNN baselines: ``p ← σ(f(b, p, h))``; advice is ranked by ``|2p - 1|``.

The returned :class:`~clinloop.interaction.proposal.Proposal` has arrays at the
input size (the networks are fully convolutional); ``extra`` holds the step
number and the supervoxel count used for the advice.

Intensities: the channels are averaged and z-scored per image (``cfg.norm``:
over all voxels, or over the non-zero ones). Volume models (``cfg.zoom`` > 1) work
on a grid ``zoom`` times coarser and answer at the input size (:mod:`.volumes`);
with ``cfg.init == "pnet"`` the agents start from the folder's P-Net (``init``)
instead of 0.5. Models trained on crops run a session on a crop around the first
click when the image is larger (:mod:`.roi`). With ``cfg.click_reach`` (not in the
paper) only agents near a click move (:func:`~clinloop.models.mecca.hints.click_reach`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from clinloop.interaction.proposal import Proposal
from clinloop.models.mecca import advice as advice_mod
from clinloop.models.mecca import volumes as vol
from clinloop.models.mecca.confidence import ConfidenceNet
from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.mecca.hint_state import HintOnlyState
from clinloop.models.mecca.environment import N_ACTIONS, initial_probability, make_state, transition
from clinloop.models.mecca.hints import click_reach, hint_map, simulate_clicks
from clinloop.models.mecca.interactive_cnn import build_interactive_cnn, build_unet, cnn_step
from clinloop.models.mecca.pnet import PolicyValueNet
from clinloop.models.mecca.pnet_inference import pnet_probability


def normalise(image: np.ndarray) -> np.ndarray:
    """``(C, *spatial)`` → ``(*spatial)`` float32: channel mean, then z-score per image
    (:func:`clinloop.models.mecca.volumes.normalise` with ``mode="image"``)."""
    return vol.normalise(image, "image")


@torch.no_grad()
def pnet_initial(pnet, image: torch.Tensor, binary: bool, flips: bool = False,
                 one_component: bool = False) -> torch.Tensor:
    """p^(0) from a frozen P-Net: its probability, or with ``binary`` its mask (p > 0.5
    → 1, else 0). Deviation from Algorithm 1 (p^(0) = 0.5). The mask matters because
    the action set {±0.1, ±0.2, ±0.4} has no "stay": an agent at p = 0.9 must move,
    while one at p = 1 that pushes up is clipped in place (Eq. 1), so a right
    pre-segmentation can be kept (docs/methods/mecca.md, "Why Dice was low", 4b).
    ``flips``, ``one_component``: :func:`clinloop.models.mecca.pnet_inference.pnet_probability`."""
    prob = pnet_probability(pnet, image, flips, one_component)
    return (prob > 0.5).to(prob.dtype) if binary else prob


def gate_actions(p: torch.Tensor, p_next: torch.Tensor, confidence: torch.Tensor, gate: float) -> torch.Tensor:
    """Confidence-gated transition (inference; not in the paper): ``p_next`` where the
    chosen action's confidence ``C(s, a) >= gate``, else the agent keeps ``p``.

    mecca.txt uses C to reshape the reward (Eq. 4) and to calibrate actions into
    labels (Eq. 6: an action with low confidence points the wrong way). At inference
    the paper lets every agent act. Our CPU-trained volume policies move agents that are
    already right (saturated background far from the tumour drifting up by +0.1/+0.2 per
    step); C marks most of these moves as unaligned, so a gate of 0.5 keeps them where
    they are (figures: docs/methods/mecca.md, "Confidence-gated actions"). ``gate = 0``
    (the default) is the paper's update. The gate assumes a pre-segmentation p^(0)
    (``cfg.init`` "pnet-mask"): from p = 0.5 everywhere a gated agent can stay undecided
    (the earlier p = 0.5 ``mecca-lidc`` scored Dice 0 with gate 0.5)."""
    if gate <= 0.0:
        return p_next
    return torch.where(confidence >= gate, p_next, p)


def build_networks(cfg: MECCAConfig) -> dict[str, torch.nn.Module]:
    """The networks a method needs: ``policy`` (+ ``confidence`` for MECCA) or ``net``."""
    if cfg.method == "mecca" or cfg.method == "mecca-no-confidence":
        nets = {"policy": PolicyValueNet(cfg.ndim, 3, N_ACTIONS, cfg.width, cfg.trunk_dilations,
                                         cfg.head_dilations, cfg.downsample)}
        # the ablation keeps C for advice/uncertainty; only the reward ignores it
        nets["confidence"] = ConfidenceNet(cfg.ndim, 3, N_ACTIONS, cfg.conf_width, cfg.conf_dilations, cfg.downsample)
    elif cfg.method == "interactive-cnn":
        nets = {"net": build_interactive_cnn(cfg)}
    else:
        nets = {"net": build_unet(cfg)}
    if cfg.init in ("pnet", "pnet-mask"):  # the frozen P-Net giving p^(0) (see MECCAModel.initial)
        nets["init"] = build_unet(cfg, cfg.init_arch, cfg.init_width)
    return nets


class MECCAModel:
    """An ``InteractiveModel`` over a MECCA model folder's networks (see module docstring)."""

    def __init__(self, cfg: MECCAConfig, nets: dict[str, torch.nn.Module] | None = None,
                 data: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None):
        self.cfg = cfg
        self.nets = nets if nets is not None else build_networks(cfg)
        for n in self.nets.values():
            n.eval()
        self.name = cfg.method
        self.spatial_ndims = (cfg.ndim,)
        self.data = data or {}
        self.metrics = metrics or {}

    # ------------------------------------------------------------ the working grid
    def prepare_image(self, image: np.ndarray) -> np.ndarray:
        """``(C, *spatial)`` → the normalised image on the working grid ``(*coarse)``
        (``cfg.norm``, then average pooling by ``cfg.zoom``; :mod:`.volumes`)."""
        return vol.zoom_image(vol.normalise(image, self.cfg.norm), self.cfg.zoom)

    @torch.no_grad()
    def initial(self, image: torch.Tensor) -> torch.Tensor:
        """``p^(0)`` for ``image`` ``(B, 1, *coarse)``: 0.5 everywhere (Algorithm 1) or,
        with ``cfg.init == "pnet"``, the probability of the frozen P-Net ``init``; with
        ``"pnet-mask"``, its mask (p^(0) ∈ {0, 1}: :func:`pnet_initial`)."""
        return self.initial_and_start(image)[0]

    @torch.no_grad()
    def initial_and_start(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(p^(0), start)``: :meth:`initial`, and with ``cfg.pnet_boundary`` the P-Net's
        probability whose mask p^(0) is (one P-Net pass for both; else ``None``)."""
        if "init" not in self.nets:
            return initial_probability(image.shape), None
        prob = pnet_probability(self.nets["init"], image, self.cfg.flip_average, self.cfg.one_component)
        p0 = (prob > 0.5).to(prob.dtype) if self.cfg.init == "pnet-mask" else prob
        return p0, (prob if self.cfg.pnet_boundary else None)

    @staticmethod
    def shown(p: torch.Tensor, p0: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
        """The probability a proposal shows (working grid): ``p``, except that agents still at
        ``p^(0)`` show ``start``, the P-Net probability their mask came from
        (``cfg.pnet_boundary``; not in the paper): upsampled to the image, the mask of that
        probability is the P-Net's own answer, where the upsampled 0/1 mask puts the boundary
        half-way between coarse voxels. ``start`` ``None``: ``p``."""
        return p if start is None else torch.where(p == p0, start, p)

    # ------------------------------------------------------------ one step
    @torch.no_grad()
    def refine(self, image: torch.Tensor, p: torch.Tensor, hint: torch.Tensor,
               reach: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One refinement step for a batch: ``image``, ``p``, ``hint`` ``(B, 1, *spatial)``
        → ``(p_next, certainty)`` of the same shape; ``certainty`` = C(s, a) of the
        chosen actions (RL) or ``|2p - 1|`` (CNNs). RL agents whose C(s, a) is below
        ``cfg.confidence_gate`` keep their probability (:func:`gate_actions`); with ``reach``
        (bool, like ``p``; :func:`~clinloop.models.mecca.hints.click_reach`) so do all agents
        outside it (their certainty: RL, C(s, a) of the step they would have taken; CNNs,
        ``|2p - 1|`` of the probability they keep)."""
        p_next, cert = self._step(image, p, hint)
        if reach is not None and self.cfg.method != "mecca-unet":
            p_next = torch.where(reach, p_next, p)
            if not self.cfg.is_rl:
                cert = torch.where(reach, cert, (2 * p - 1).abs())
        return p_next, cert

    def _step(self, image: torch.Tensor, p: torch.Tensor, hint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.is_rl:
            s = make_state(image, p, hint)
            pol, conf = self.nets["policy"], self.nets["confidence"]
            if pol.grid.downsample == conf.grid.downsample:
                # act and score on the coarse grid, then upsample (nearest) the chosen
                # index and its confidence: same result as upsampling all 6 channels first
                sd = pol.grid.down(s)
                idx = pol.policy_head(pol.trunk(sd)).argmax(1, keepdim=True)
                c = torch.sigmoid(conf.body(sd).gather(1, idx))
                size = s.shape[2:]
                idx = pol.grid.up(idx.float(), size).long()
                c = pol.grid.up(c, size)
            else:
                idx = pol.greedy(s)
                c = torch.sigmoid(conf(s).gather(1, idx))
            return gate_actions(p, transition(p, idx), c, self.cfg.confidence_gate), c
        if self.cfg.method == "mecca-unet":  # the P-Net: no hint, no previous p
            p_next = pnet_probability(self.nets["net"], image, self.cfg.flip_average, self.cfg.one_component)
        else:
            p_next = torch.sigmoid(cnn_step(self.nets["net"], image, p, hint))
        return p_next, (2 * p_next - 1).abs()

    # ------------------------------------------------------------ sessions
    def start(self, image: np.ndarray, *, seed: int = 0, profile: dict[str, Any] | None = None,
              roi: bool | None = None) -> "MECCAState":
        """A session on ``image`` ``(C, *spatial)``. ``roi``: run on a ``cfg.size`` region
        around the first click (:mod:`.roi`); ``None`` (default): when the model was
        trained on such crops and the image is larger (:func:`.roi.needs_roi`)."""
        from clinloop.models.mecca.roi import ROIState, needs_roi

        img = np.asarray(image)
        if img.ndim - 1 != self.cfg.ndim:
            raise ValueError(f"{self.name} model segments {self.cfg.ndim}-D images; got image of shape {img.shape}")
        if roi if roi is not None else needs_roi(self.cfg, img.shape[1:]):
            return ROIState(self.cfg, img, lambda crop: MECCAState(self, crop))
        return MECCAState(self, img)

    # ------------------------------------------------------------ folders
    def save(self, folder: str | Path, data: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None) -> None:
        """Write ``config.json``, ``weights.pt``, ``data.json``, ``metrics.json`` into ``folder``."""
        from clinloop.atomic import atomic_path, atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.cfg.save(folder / "config.json")
        with atomic_path(folder / "weights.pt") as tmp:
            torch.save({k: n.state_dict() for k, n in self.nets.items()}, tmp)
        if data is not None:
            self.data = data
        if metrics is not None:
            self.metrics = metrics
        atomic_write_text(folder / "data.json", json.dumps(self.data, indent=2, default=str) + "\n")
        atomic_write_text(folder / "metrics.json", json.dumps(self.metrics, indent=2, default=str) + "\n")


class MECCAState(HintOnlyState):
    """Per-image session state: the image and the agents' probabilities on the working
    grid (``cfg.zoom``), clicks so far in input coordinates. Proposals are at the input size."""

    def __init__(self, model: MECCAModel, image: np.ndarray):
        """``image`` ``(C, *spatial)`` as given to :meth:`MECCAModel.start`."""
        self.model, self.cfg = model, model.cfg
        self.shape = tuple(image.shape[1:])
        self.image = model.prepare_image(image)
        self.image_t = torch.from_numpy(self.image)[None, None]
        self.p0, self.start_prob = model.initial_and_start(self.image_t)
        self.p = self.p0
        self.clicks: list[tuple[tuple[float, ...], bool]] = []
        self.t = 0
        self._slic: dict[int, np.ndarray] = {}  # supervoxels cached per segment count
        self._slic_full: dict[int, np.ndarray] = {}  # the same at the input size (zoom > 1)

    def _supervoxels(self, n: int) -> np.ndarray:
        if n not in self._slic:
            self._slic[n] = advice_mod.supervoxels(self.image, n, self.cfg.slic_compactness, self.cfg.slic_spacing)
        return self._slic[n]

    def _supervoxels_full(self, n: int) -> np.ndarray:
        """The supervoxels at the input size (nearest upsampling of the coarse ones; cached)."""
        if self.cfg.zoom == 1:
            return self._supervoxels(n)
        if n not in self._slic_full:
            lab = self._supervoxels(n)
            small = lab.astype(np.int16) if lab.max() < 32767 else lab  # a quarter of the memory traffic
            self._slic_full[n] = vol.upsample_labels(small, self.shape, self.cfg.zoom)
        return self._slic_full[n]

    def hint(self, points: Sequence[tuple[Sequence[float], bool]]) -> Proposal:
        for pt, pos in points:
            if len(pt) != len(self.shape):
                raise ValueError(f"a point needs {len(self.shape)} coordinates, got {tuple(pt)}")
            self.clicks.append((tuple(float(v) for v in pt), bool(pos)))
        t0 = time.perf_counter()
        h = torch.from_numpy(coarse_hint_map(self.clicks, self.image.shape, self.cfg))[None, None]
        reach = coarse_reach(self.clicks, self.image.shape, self.cfg)
        self.p, cert = self.model.refine(self.image_t, self.p, h, reach)
        prob = vol.upsample(self.model.shown(self.p, self.p0, self.start_prob), self.shape,
                            self.cfg.zoom)[0, 0].numpy().copy()
        cert_c = cert[0, 0].numpy()
        refine_s = time.perf_counter() - t0
        n_seg = advice_mod.n_segments_at(self.t, self.cfg.slic_segments, self.cfg.slic_decay, self.cfg.slic_min_segments)
        ids = advice_mod.rank_region_ids(cert_c, self._supervoxels(n_seg), self.cfg.advice_regions)
        full = self._supervoxels_full(n_seg)
        regions = [full == r for r in ids]
        # the certainty is shown, not thresholded: nearest (block) upsampling is enough
        cert_np = vol.upsample_labels(cert_c, self.shape, self.cfg.zoom) if self.cfg.zoom > 1 else cert_c
        self.t += 1
        return Proposal(
            mask=prob > 0.5, probability=prob, uncertainty=(1.0 - cert_np).astype(np.float32), advice=regions,
            confidence=cert_np.astype(np.float32) if self.cfg.is_rl else None,  # C(s, a); the CNNs have no C
            extra={"step": self.t, "n_segments": n_seg, "refine_seconds": refine_s, "method": self.cfg.method},
        )


# ---------------------------------------------------------------- simulation
def coarse_hint_map(clicks, coarse_shape, cfg: MECCAConfig) -> np.ndarray:
    """The hint map ``h`` on the working grid for clicks in input coordinates
    (:func:`clinloop.models.mecca.hints.hint_map`; points scaled by ``1 / cfg.zoom``)."""
    if cfg.zoom > 1:
        clicks = [(vol.to_coarse_point(pt, cfg.zoom), pos) for pt, pos in clicks]
    return hint_map(clicks, coarse_shape, cfg.hint_sigma)


def coarse_reach(clicks, coarse_shape, cfg: MECCAConfig, prepared: bool = False) -> torch.Tensor | None:
    """``cfg.click_reach`` as a bool ``(1, 1, *coarse)`` tensor for :meth:`MECCAModel.refine`
    (agents within that many working-grid voxels of a click; ``None`` when it is 0). Clicks
    in input coordinates, or on the working grid with ``prepared``."""
    if not cfg.click_reach:
        return None
    if cfg.zoom > 1 and not prepared:
        clicks = [(vol.to_coarse_point(pt, cfg.zoom), pos) for pt, pos in clicks]
    return torch.from_numpy(click_reach(clicks, coarse_shape, cfg.click_reach))[None, None]


def simulate(model: MECCAModel, image: np.ndarray, label: np.ndarray, steps: int, rng: np.random.Generator,
             n_points: int | None = None, prepared: bool = False) -> dict[str, Any]:
    """Simulated-user rollout on one case (no advice computed): before each step the
    user clicks up to ``n_points`` wrongly predicted boundary points of the current
    prediction. ``image`` ``(C, *spatial)``; ``label`` ``(*spatial)`` bool.

    ``prepared``: ``image`` ``(1, *coarse)`` and ``label`` are already on the working
    grid (normalised and zoomed, as in training); else ``image`` is raw ``(C, *spatial)``,
    the user clicks on the full-size mask and ``probabilities`` are upsampled to it.

    Returns ``probabilities`` (list of ``steps`` arrays), ``misunderstanding``
    (per step: agents moving against their label, Definition 1), ``flips`` (per
    step: agents whose thresholded prediction turned from correct to wrong),
    ``seconds`` per step."""
    from clinloop.models.mecca.environment import count_harmful_flips, count_misunderstanding

    n_points = model.cfg.hint_points if n_points is None else n_points
    lab = np.asarray(label, bool)
    if lab.shape != tuple(np.shape(image)[1:]):
        raise ValueError(f"label {lab.shape} and image {tuple(np.shape(image)[1:])} differ in spatial shape")
    img = np.asarray(image[0], np.float32) if prepared else model.prepare_image(image)
    y = torch.from_numpy((lab if prepared else vol.zoom_label(lab, model.cfg.zoom)).astype(np.float32))[None, None]
    x = torch.from_numpy(img)[None, None]
    p0, start = model.initial_and_start(x)
    p = p0
    zoom = 1 if prepared else model.cfg.zoom
    full = vol.upsample(model.shown(p, p0, start), lab.shape, zoom)[0, 0].numpy()
    clicks: list = []
    probs, mis, flips, secs = [], [], [], []
    for _ in range(steps):
        clicks += simulate_clicks(full > 0.5, lab, n_points, rng)  # the user sees the full-size mask
        t0 = time.perf_counter()
        h = hint_map(clicks, img.shape, model.cfg.hint_sigma) if prepared else coarse_hint_map(clicks, img.shape, model.cfg)
        h = torch.from_numpy(h)[None, None]
        p_next, _ = model.refine(x, p, h, coarse_reach(clicks, img.shape, model.cfg, prepared))
        full = vol.upsample(model.shown(p_next, p0, start), lab.shape, zoom)[0, 0].numpy()
        secs.append(time.perf_counter() - t0)
        mis.append(count_misunderstanding(p, p_next, y))  # agents = working-grid voxels
        flips.append(count_harmful_flips(p, p_next, y))
        p = p_next
        probs.append(full.copy())
    return {"probabilities": probs, "misunderstanding": mis, "flips": flips, "seconds": secs, "n_clicks": len(clicks)}


def load_mecca(folder: str | Path, **_: Any) -> MECCAModel:
    """Rebuild a :class:`MECCAModel` from a model folder (any of the four methods)."""
    folder = Path(folder)
    cfg = MECCAConfig.load(folder / "config.json")
    nets = build_networks(cfg)
    wpath = folder / "weights.pt"
    try:
        state = torch.load(wpath, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as e:
        raise ValueError(f"{wpath}: cannot read weights ({e})") from e
    for k, n in nets.items():
        if k not in state:
            raise ValueError(f"{wpath}: no weights for network {k!r} (has {', '.join(state)})")
        n.load_state_dict(state[k])
    extra = {}
    for name in ("data", "metrics"):
        p = folder / f"{name}.json"
        extra[name] = json.loads(p.read_text()) if p.is_file() else {}
    return MECCAModel(cfg, nets, extra["data"], extra["metrics"])
