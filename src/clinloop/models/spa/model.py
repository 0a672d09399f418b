"""SPA on the LiteMedSAM backbone: the networks (:class:`SPANet`), the
interactive model (:class:`SPAModel`, an ``InteractiveModel``) and its loader.

Every click after the first is a corrective click: its point joins the point
prompt and the current mask (the last proposal's y_app) becomes the mask prompt,
as the trainer simulates it (:mod:`clinloop.training.spa_corrective`); with
``SPAConfig.zoom_in`` > 0 it is decoded again on a crop around the answer
(:mod:`clinloop.models.spa.zoom`, not in spa.txt); a ``choose(k)`` makes candidate
k the mask prompt (Alg. 1).

Per iteration j (spa.txt §3.2-3.4, Alg. 1 GenMask):

    e_u     = E_I(r_u)                 SAM prompt encoder: first a point (or a box), later the chosen candidate as a mask
    p_theta = E_theta(e_u)             Preference Distribution Generator (a named variant, .variants)
    z_n ~ p_theta,  n = 1..N           seeded, replayable
    y_n     = Decoder(e_{x_n}, e_u)    e_{x_n} = ReLU(Conv(e_x ⊕ z_n))
    y_app   = 1[mean_n y_n > 0.5];  r_1..r_K = K-means centroids of {y_n}

Two conditioning paths (``SPAConfig.path``):

* ``"embedding"`` -- the paper's literal form: e_{x_n} conditions the image
  embedding (256 x 64 x 64) and the full SAM mask decoder runs once per sample
  (N two-way-transformer passes; ~0.07 s each on this CPU).
* ``"tail"`` (default, optimised; deviation): the decoder's two-way transformer
  and upscaling run **once** per iteration on e_x and e_u; the preference
  conditioning (same three-conv form, split first conv, width 32, layers 2-3 as
  1x1 convs) acts on the decoded image tokens (256 x 64 x 64) and yields a
  per-sample logit offset at 64 x 64 (bilinear x4 to the 256 x 256 low-res
  frame): ``logit_n = logit_base + up(delta_n)``. The per-sample cost is a few
  small convs instead of a decoder pass. Because z is a vector broadcast over
  positions (our reading), its conv half is a precomputed basis times z.

Measured (benchmarks/bench_spa.py, N = 48, K = 4, 256² input, 2 threads, on the
shared 2-core dev machine at load average ~3.5, medians of 7): optimised
iteration 1.08 s (decoder once 0.78 s, 48 conditionings + offsets 0.21 s,
K-means on 2x2-pooled masks 0.04 s); the literal path 20.0 s (extrapolated
from N = 4), the literal path with the split first conv 15.1 s: ~19x faster.
In the same minute LiteMedSAM's own decoder pass took 0.63 s median (0.36 s
min) against 0.065 s on an idle machine, so the 0.2 s target could not be
verified here; the per-sample part (0.25 s for 48 samples) is now smaller than
one decoder pass. Dice: at initialisation both paths are the pretrained decoder
(identical, tests/test_spa_model.py; Dice@1 0.059 on 10 LIDC validation
slices); only the optimised path could be trained on this CPU (Dice@1 0.62
after 22 training images, 0.78 after 232 on 25 slices; with the relaxed
winner-takes-all term of :func:`clinloop.training.spa.best_of_n_loss`, 1747
images on 400 slices: Dice@1 0.849, Dice@3 0.889, candidates' pairwise Dice
0.91 instead of 1.0), so no trained Dice exists for the literal path.

All masks live in the 256 x 256 model frame internally and are returned at the
input size through LiteMedSAM's ``postprocess_logits``.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clinloop.interaction.proposal import Proposal

from . import candidates as cand
from .conditioning import PreferenceConditioning
from .config import SPAConfig
from .distribution_generator import interaction_vector
from .preference_distribution import GMM, sample
from .adapters import StructureAdapters, active_structure, structure_scope
from .experts import StructureExperts
from .structure import StructureToken
from .variants import build_variant
from .prompts import MASK_PROMPT_SCALE, SPAStateBase, mask_prompt  # noqa: F401  (MASK_PROMPT_SCALE re-exported)

class SPANet(nn.Module):
    """The trainable networks on top of a LiteMedSAM backbone.

    ``backbone``: a ``LiteMedSAM`` (``prompt_encoder``, ``mask_decoder``,
    ``image_encoder``). The image encoder is frozen (embeddings are cached)
    unless ``config.finetune_encoder`` (then its weights are trained, saved in
    ``weights.pt`` and loaded by :func:`load_spa_net`).
    """

    def __init__(self, config: SPAConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        for p in backbone.image_encoder.parameters():
            p.requires_grad_(bool(config.finetune_encoder))
        if config.finetune_encoder:  # its weights will change: the embedding cache must fingerprint them
            backbone.weights_id = backbone.image_encoder.weights_id = None
        c = backbone.mask_decoder.transformer_dim
        self.channels = c
        if config.path == "tail":
            self.conditioning = PreferenceConditioning(c, config.latent_dim, config.cond_width, 1, k1=3, k2=1)
        else:  # the paper's form at full width, residual on e_x
            self.conditioning = PreferenceConditioning(c, config.latent_dim, c, c, k1=3, k2=3, residual=True)
        self.variant = build_variant(config.method, 2 * c, config.n_components, config.latent_dim,
                                     config.pdg_hidden, config.seed)
        # t_s: a learnt token per structure (our addition, .structure); absent when none are configured
        self.structure = StructureToken(config.structures, c) if config.structures else None
        # a low-rank decoder change per structure (our addition, .adapters); absent when structure_rank is 0
        self.structure_adapters = (StructureAdapters(backbone.mask_decoder, len(config.structures),
                                                     config.structure_rank) if config.structure_rank else None)
        # a specialist's weights per structure as a low-rank change (our addition, .experts); extracted, not trained
        self.structure_experts = (StructureExperts(self, len(config.structures), config.expert_rank)
                                  if config.expert_rank else None)

    # ------------------------------------------------------------------ parts
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen image encoder (what ``weights.pt`` stores); with
        ``config.finetune_encoder`` the encoder too."""
        if self.config.finetune_encoder:
            return dict(self.state_dict())
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.image_encoder.")}

    def train(self, mode: bool = True) -> "SPANet":
        """As ``nn.Module.train``, but the image encoder stays in eval mode: its
        normalisation statistics are the pretrained ones even when its weights are
        fine-tuned (training batches are single images)."""
        super().train(mode)
        self.backbone.image_encoder.eval()
        return self

    @torch.inference_mode()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """e_x = ViT(x): ``(3, 256, 256)`` model input -> ``(1, 256, 64, 64)``."""
        return self.backbone.image_encoder(x[None])

    def structure_index(self, name: str | None) -> int:
        """The token index of structure ``name`` (0: no token; always 0 without ``config.structures``)."""
        return 0 if self.structure is None else self.structure.index(name)

    def structure_parameters(self) -> list[nn.Parameter]:
        """What is learnt per structure: the tokens t_s and the decoder adapters (A_s, B_s)."""
        return [p for m in (self.structure, self.structure_adapters) if m is not None for p in m.parameters()]

    def structure_scope(self, index: int):
        """A context in which this thread decodes with structure ``index``'s adapters (:mod:`.adapters`) or
        expert (:mod:`.experts`; 0: none). Sessions, volume slices and training episodes open it around a step."""
        if index and self.structure is None:
            raise ValueError(f"structure index {index} given to a model without structure tokens")
        specific = self.structure_adapters is not None or self.structure_experts is not None
        return structure_scope(index if specific else 0)

    def part(self, name: str) -> nn.Module:
        """``prompt_encoder``, ``mask_decoder``, ``conditioning`` or ``variant`` as this thread decodes it now:
        the shared module, or the active structure's expert copy (:mod:`.experts`)."""
        full = f"backbone.{name}" if name in ("prompt_encoder", "mask_decoder") else name
        s = active_structure()
        if self.structure_experts is None or not s:
            return self.get_submodule(full)
        return self.structure_experts.merged(self, s)[full]

    def encode_interaction(self, points: tuple[torch.Tensor, torch.Tensor] | None, mask_logits: torch.Tensor | None,
                           box: torch.Tensor | None = None, structure: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """E_I: points ``((1, P, 2), (1, P))`` model frame, mask prompt ``(1, 1, 256, 256)`` -> sparse, dense;
        ``structure`` (:meth:`structure_index`) adds that structure's token t_s to dense."""
        sparse, dense = self.part("prompt_encoder")(points, box, mask_logits)
        if structure and self.structure is None:
            raise ValueError(f"structure index {structure} given to a model without structure tokens")
        return sparse, dense if not structure else self.structure(dense, structure)

    def distribution(self, e_x: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> GMM:
        """p_theta from e_u (and the features, for MedUHIP)."""
        return self.part("variant")(interaction_vector(sparse, dense), e_x + dense)

    def decode_base(self, e_x: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder run once (tail path): base logits ``(1, 256, 256)`` (single-mask token) and the
        decoded image tokens ``(1, C, 64, 64)``."""
        dec = self.part("mask_decoder")
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None], sparse], dim=1)
        src = e_x + dense
        _, c, h, w = src.shape
        hs, keys = dec.transformer(src, self.part("prompt_encoder").get_dense_pe(), tokens)
        feats = keys.view(1, h, w, c).permute(0, 3, 1, 2)  # (1, C, h, w) view, channels-last memory: no copy
        hyper = dec.output_hypernetworks_mlps[0](hs[:, 1])  # (1, C/8)
        base = dec.upscaled_logits(keys, (h, w), hyper[:, None])[:, 0]
        return base, feats

    def sample_logits(self, e_x: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, z: torch.Tensor,
                      base: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """GenMask's y_n as logits ``(N, 256, 256)`` for latents ``z (N, D)``.

        ``base``: a cached :meth:`decode_base` result (tail path only)."""
        if self.config.path == "tail":
            logit0, feats = self.decode_base(e_x, sparse, dense) if base is None else base
            delta = self.part("conditioning")(feats, z)  # (N, 1, 64, 64)
            delta = F.interpolate(delta, size=logit0.shape[-2:], mode="bilinear", align_corners=False)
            return logit0 + delta[:, 0]
        e_xn = self.part("conditioning")(e_x, z)  # (N, C, 64, 64)
        n = z.shape[0]
        logits, _ = self.part("mask_decoder")(e_xn, self.part("prompt_encoder").get_dense_pe(),
                                               sparse.expand(n, -1, -1), dense, False)
        return logits[:, 0]

    def gen_mask(self, e_x, sparse, dense, gmm: GMM, n: int, generator: torch.Generator, base=None):
        """Alg. 1 GenMask: returns ``(logits (N,256,256), z (N,D), components (N,))``."""
        z, comp = sample(gmm, n, generator)
        return self.sample_logits(e_x, sparse, dense, z, base), z, comp


# ---------------------------------------------------------------------------- interactive model
class SPAState(SPAStateBase):
    """One image's interaction (see :class:`SPAModel`)."""

    def __init__(self, model: "SPAModel", image: np.ndarray, seed: int, profile: dict[str, Any] | None,
                 structure: str | None = None) -> None:
        from clinloop.models.litemedsam.preprocess import preprocess

        if image.ndim != 3:
            raise ValueError(f"SPA segments 2-D images; got an image of shape {image.shape[1:]}")
        self.model, self.seed = model, int(seed)
        self.image = image
        self.x, self.info = preprocess(image)
        self.e_x = model.embedding(self.x)
        self.points: list[tuple[float, float]] = []
        self.points_in: list[tuple[float, float]] = []  # the same points, input pixels (for a zoom view)
        self.box_in: list[float] | None = None
        self._chw: tuple | None = None  # (image (C, H, W), intensity range) for zoom crops, made on the first
        self.labels: list[int] = []
        self.box_model: list[float] | None = None  # a first-interaction box, model frame (x0, y0, x1, y1)
        self.mask: torch.Tensor | None = None  # the mask prompt r_u (chosen candidate, or current mask), model frame
        self.current: torch.Tensor | None = None  # the last proposal's y_app, model frame
        self.corrective: list[tuple[tuple[float, float], bool]] = []  # clicks after the first interaction
        self.iteration = 0
        self.gmm: GMM | None = self.carried_gmm(profile, model.config.latent_dim)
        self.carried = self.gmm is not None
        self.candidates_model: torch.Tensor | None = None
        self.structure = structure  # what the case shows; its learnt token t_s, if the model has one
        self.structure_id = model.net.structure_index(structure)

    # ------------------------------------------------------------------ actions
    def click(self, point, positive: bool) -> Proposal:
        from clinloop.models.litemedsam.preprocess import points_to_model

        if len(point) != 2:
            raise ValueError(f"SPA takes 2-D points (x, y); got {tuple(point)}")
        self.points.append(tuple(points_to_model([point], self.info)[0]))
        self.points_in.append((float(point[0]), float(point[1])))
        self.labels.append(1 if positive else 0)
        if self.iteration:  # a corrective click (input pixels), honoured as a hard constraint
            self.corrective.append(((float(point[0]), float(point[1])), bool(positive)))
        if self.current is not None:  # a corrective click: the mask it corrects is the mask prompt
            self.mask = self.current
        return self._step(corrective=self.iteration > 0)

    def box(self, box) -> Proposal:
        """A box ``(x0, y0, x1, y1)`` (inclusive input pixels) as the first prompt, in place of the
        first click's point; kept in the prompt of every later step, as the points are."""
        from clinloop.models.litemedsam.preprocess import box_to_model

        if len(box) != 4:
            raise ValueError(f"SPA takes 2-D boxes (x0, y0, x1, y1); got {tuple(box)}")
        if self.iteration:
            raise ValueError("a box must be the first interaction")
        self.box_model = box_to_model(box, self.info).tolist()
        self.box_in = [float(b) for b in box]
        return self._step()

    def choose(self, k: int) -> Proposal:
        self.check_choice(k, self.candidates_model)
        self.mask = self.candidates_model[k].clone()
        return self._step()

    # ------------------------------------------------------------------ the step
    @torch.inference_mode()
    def _step(self, corrective: bool = False) -> Proposal:
        sid = self.decoding_structure(self.model.config)
        with self.model.net.structure_scope(sid):  # the structure's adapters (.adapters) or expert (.experts)
            return self._decode_step(corrective, sid)

    def _decode_step(self, corrective: bool, sid: int) -> Proposal:
        from clinloop.models.litemedsam.preprocess import postprocess_logits

        net, cfg = self.model.net, self.model.config
        self.iteration += 1
        e_x, pts, mp, bx = self._prompts(None)
        sparse, dense = net.encode_interaction(pts, mp, bx, sid)
        # p^(0) from the first click, or the user's carried profile (spa.txt §4: transfer across images)
        if not (self.carried and self.iteration == 1):
            self.gmm = net.distribution(e_x, sparse, dense).detach()
        step_seed = self.seed * 1_000_003 + self.iteration
        passes = cfg.click_passes if corrective else 1  # choices, boxes and the first click: one pass
        for k in range(passes):
            if k:  # a refinement pass: the previous pass's y_app becomes the mask prompt
                sparse, dense = net.encode_interaction(pts, mask_prompt(current), bx, sid)
            g = torch.Generator().manual_seed(step_seed)
            logits, _, _ = net.gen_mask(e_x, sparse, dense, self.gmm, cfg.n_samples, g)
            ys = logits > 0  # (N, 256, 256)
            prob_m, current = cand.aggregate(ys)
        prob = postprocess_logits(prob_m[None], self.info)[0].clamp(0, 1)
        if cfg.zoom_in and corrective and (cfg.zoom_when == "always" or not self._answer_honours(prob)):
            prompt_in = None if self.mask is None else self._input_mask(self.mask)
            view = self._zoom_view(current, prompt_in)  # .zoom: the crop around this answer, same latents z_n
            e_z, pz, mz, bz = self._prompts(view, prompt_in)
            sz, dz = net.encode_interaction(pz, mz, bz, sid)
            zoomed, _, _ = net.gen_mask(e_z, sz, dz, self.gmm, cfg.n_samples, torch.Generator().manual_seed(step_seed))
            zoomed = view.to_full(zoomed, self.info, outside=logits)
            ys = ((zoomed + logits) / 2 if cfg.zoom_mode == "mean" else zoomed) > 0
            prob_m, current = cand.aggregate(ys)
            prob = postprocess_logits(prob_m[None], self.info)[0].clamp(0, 1)
        self.current = current
        h, w = self.info.resized_size
        crop = ys[:, :h, :w]  # cluster only the image part of the frame
        cands_crop = cand.representative_candidates(crop, cfg.n_candidates, seed=step_seed, pool=2)
        cands = torch.zeros(cfg.n_candidates, *ys.shape[1:], dtype=torch.bool)
        cands[:, :h, :w] = cands_crop
        self.candidates_model = cands
        mask = (prob > 0.5).numpy()
        cand_in = (postprocess_logits(cands.float(), self.info) > 0.5).numpy()
        if cfg.honour_clicks and self.corrective:
            mask, cand_in = self._honour(mask, cand_in, prob.numpy(), prob_m)
        return Proposal(
            mask=mask, probability=prob.numpy().astype(np.float32),
            uncertainty=(4 * prob * (1 - prob)).numpy().astype(np.float32),
            candidates=cand_in,
            extra={"sample_seed": step_seed, "n_samples": cfg.n_samples, "method": self.model.name},
        )

    def _prompts(self, view, prompt_in: np.ndarray | None = None):
        """``(e_x, points, mask prompt, box)`` of this step, in the full image's model frame, or in
        ``view``'s (a :class:`clinloop.models.spa.zoom.ZoomView`; ``prompt_in``: the mask prompt in
        the input frame)."""
        pts_xy, mask, box = self.points, self.mask, self.box_model
        if view is not None:
            pts_xy = view.points(self.points_in).tolist() if self.points_in else []
            mask = None if prompt_in is None else view.mask(prompt_in)
            box = None if self.box_in is None else view.box_prompt(self.box_in).tolist()
        pts = None
        if pts_xy:
            pts = (torch.tensor([pts_xy], dtype=torch.float32), torch.tensor([self.labels], dtype=torch.long))
        mp = None if mask is None else mask_prompt(mask)
        bx = None if box is None else torch.tensor([box], dtype=torch.float32)
        e_x = self.e_x if view is None else self.model.embedding(view.x, disk=False)
        return e_x, pts, mp, bx

    def _answer_honours(self, prob: torch.Tensor) -> bool:
        """Whether the proposal's mask ``prob (H, W) > 0.5`` (input frame) puts the newest corrective
        click on its asked side (:mod:`.zoom`, ``zoom_when = "missed"``; the earlier ones are the
        constraint's, so one click the image cannot honour does not make every later click pay for
        a zoom)."""
        h, w = prob.shape
        (x, y), positive = self.corrective[-1]
        return bool(prob[min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)] > 0.5) == positive

    def _input_mask(self, mask_model: torch.Tensor) -> np.ndarray:
        from .zoom import input_mask

        return input_mask(mask_model, self.info)

    def _zoom_view(self, answer: torch.Tensor, prompt_in: np.ndarray | None):
        """The crop of this step (:mod:`clinloop.models.spa.zoom`): around the full frame's ``answer``
        (y_app, model frame), the mask prompt ``prompt_in`` (input frame) and the clicks."""
        from clinloop.models.litemedsam.preprocess import to_chw

        from .zoom import ZoomView, zoom_box

        if self._chw is None:  # the image channel-first and its intensity range, once per session
            chw = to_chw(self.image)
            lo, hi = float(chw.min()), float(chw.max())
            self._chw = (chw, (lo, hi if hi > lo else lo + 1.0))
        cfg = self.model.config
        mask = self._input_mask(answer)
        if prompt_in is not None:
            mask |= prompt_in
        pts = list(self.points_in)
        if self.box_in is not None:
            pts += [(self.box_in[0], self.box_in[1]), (self.box_in[2], self.box_in[3])]
        box = zoom_box(mask, pts, cfg.zoom_in, cfg.zoom_min)
        return ZoomView.crop(self._chw[0], box, self._chw[1])

    def _honour(self, mask: np.ndarray, cands: np.ndarray, prob: np.ndarray, prob_m: torch.Tensor):
        """The corrective clicks as hard constraints (:func:`clinloop.interaction.constraints.honour_clicks`)
        on the mask and every candidate (input frame), and on the current mask of the next prompt
        (model frame, the model-frame points; radius: one input pixel)."""
        from clinloop.interaction.constraints import honour_clicks

        mask = honour_clicks(mask, prob, self.corrective)
        cands = np.stack([honour_clicks(c, prob, self.corrective) for c in cands])
        first = len(self.points) - len(self.corrective)
        model_clicks = [(p, bool(lab)) for p, lab in zip(self.points[first:], self.labels[first:])]
        scale = max(1.0, self.info.resized_size[0] / max(1, self.info.original_size[0]))
        self.current = torch.from_numpy(honour_clicks(self.current.numpy(), prob_m.numpy(), model_clicks, radius=scale))
        return mask, cands


class SPAModel:
    """``InteractiveModel`` for SPA and its variants.

    ``start(image)`` preprocesses (any size / grey or RGB, LiteMedSAM's
    preprocess) and computes the image embedding once (kept in a small
    in-memory LRU keyed by the input's bytes, so ``Session.undo``/replay do not
    re-encode). ``click`` -> point prompt; ``choose(k)`` -> candidate k as the
    mask prompt (points kept); each returns a :class:`Proposal` with ``mask`` =
    y_app, ``probability`` = mean of the N masks, ``candidates`` (K, H, W).
    """

    spatial_ndims = (2,)

    def __init__(self, net: SPANet, cache_size: int = 4, disk_cache: bool = True) -> None:
        self.net = net.eval()
        self.disk_cache = disk_cache
        self.config = net.config
        self.name = net.config.method
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    def embedding(self, x: torch.Tensor, disk: bool = True) -> torch.Tensor:
        """e_x of a preprocessed ``x (3, 256, 256)``; ``disk=False`` keeps it out of the on-disk
        cache (a zoom crop, seen once)."""
        key = hashlib.sha1(x.numpy().tobytes()).hexdigest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        from clinloop.models.litemedsam.cache import embed

        # through LiteMedSAM's cache: float16-rounded like the training embeddings
        e = embed([x], self.net.backbone, cache=self.disk_cache and disk, progress=False)
        self._cache[key] = e
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return e

    takes_structure = True  # start/start_volume take the case's structure (.structure; Session passes it)

    def start(self, image: np.ndarray, *, seed: int = 0, profile: dict[str, Any] | None = None,
              structure: str | None = None) -> SPAState:
        """One image's interaction; ``structure`` (the case's, e.g. "nodule") picks the model's learnt
        structure token when it has one for it (:mod:`.structure`), else the generic answer."""
        return SPAState(self, np.asarray(image, dtype=np.float32), seed, profile, structure)

    def start_volume(self, image: np.ndarray, *, seed: int = 0, profile: dict[str, Any] | None = None, **options):
        """A ``(C, D, H, W)`` volume: one click follows the structure through the slices
        (:class:`clinloop.models.spa.volume.VolumeState`; ``options``: config, spacing, cache, progress,
        structure)."""
        from clinloop.models.spa.volume import VolumeState

        return VolumeState(self, np.asarray(image, dtype=np.float32), seed, profile, **options)


def build_spa(config: SPAConfig | None = None, checkpoint: bool | str | None = True) -> SPAModel:
    """A fresh SPA model on LiteMedSAM (``checkpoint`` as ``build_litemedsam``; ``None`` = random backbone)."""
    from clinloop.models.litemedsam import build_litemedsam

    config = config or SPAConfig()
    return SPAModel(SPANet(config, build_litemedsam(checkpoint)))


def save_spa(net: SPANet, folder: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write a model folder: ``config.json`` (with "method") + ``weights.pt`` (all but the frozen image
    encoder; on the pretrained backbone the LiteMedSAM parts as int8 deltas against the checkpoint,
    the rest fp16: :mod:`clinloop.models.litemedsam.compact`)."""
    from clinloop.models.litemedsam import weights as litemedsam_weights
    from clinloop.models.litemedsam.compact import write_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net.config.save(folder / "config.json")
    pretrained = getattr(net.backbone, "weights_id", None) == litemedsam_weights.WEIGHTS_ID
    write_weights(folder / "weights.pt", net.trainable_state_dict(), compact=pretrained)
    if extra:
        from clinloop.atomic import atomic_write_text

        atomic_write_text(folder / "data.json", json.dumps(extra, indent=2) + "\n")


def load_spa_net(folder: str | Path, checkpoint: bool | str | None = True) -> SPANet:
    """The trained :class:`SPANet` of a model folder (``config.json`` and ``weights.pt``; a folder without
    ``weights.pt``, e.g. an interrupted training's, is a ``DataError`` naming the file, never an untrained net)."""
    from clinloop.errors import DataError

    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.compact import read_weights, weights_file

    folder = Path(folder)
    config = SPAConfig.load(folder / "config.json")
    path = weights_file(folder)
    net = SPANet(config, build_litemedsam(checkpoint))
    missing, unexpected = net.load_state_dict(read_weights(path), strict=False)
    bad = [k for k in missing if config.finetune_encoder or not k.startswith("backbone.image_encoder.")]
    if bad or unexpected:
        raise DataError(f"SPA weights do not match the config: missing {bad[:3]}, unexpected {unexpected[:3]}", path)
    if config.finetune_encoder:  # fine-tuned encoder: its own embedding-cache key, never the pretrained one's
        wid = "spa-ft-" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        net.backbone.weights_id = net.backbone.image_encoder.weights_id = wid
    return net


def load_spa(folder: str | Path, checkpoint: bool | str | None = True) -> SPAModel:
    """Registry loader: rebuild an :class:`SPAModel` from a model folder."""
    return SPAModel(load_spa_net(folder, checkpoint))
