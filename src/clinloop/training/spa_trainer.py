"""SPA's Algorithm 1 as a trainer object (see :mod:`clinloop.training.spa` for the
algorithm, the readings and the deviations): the training cases, the losses and
:class:`SPATrainer` (one training step = B episodes, each one pass of Alg. 1's inner
loop over one image, their gradients averaged); the ``--init`` warm start
(:mod:`.spa_warmstart`) and the checkpointing loop :func:`train` (:mod:`.spa_loop`)
are importable from here as before.

``SPATrainer``'s defaults equal the command line's (:class:`~clinloop.training.spa.SPATrainOptions`):
in particular ``wta_weight=1.0`` -- with 0 (the paper's loss alone) the latents
collapse and the K candidates are identical.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clinloop.training.spa_loop import train  # noqa: F401  (public here as before)
from clinloop.training.spa_warmstart import WARM_START_SHARED, warm_start  # noqa: F401

MAX_USER_ITERATIONS = 6


@dataclass
class TrainCase:
    """One training slice in the model frame."""

    embedding: torch.Tensor | None  # (256, 64, 64) float16; None when the encoder is trained
    masks: np.ndarray  # (R, 256, 256) bool, rater masks in the model frame
    valid: np.ndarray  # (R,) bool
    case_id: str = ""
    image: torch.Tensor | None = None  # (3, 256, 256) model input, kept for --finetune-encoder
    guides: tuple = ()  # (256, 256) bool masks of neighbouring slices (propagation episodes, spa_mix)
    structure: str | None = None  # the reader's structure name (the learnt token t_s, clinloop.models.spa.structure)


def prepare_cases(dataset, indices: Sequence[int], backbone, progress: bool = True,
                  keep_images: bool = False) -> list[TrainCase]:
    """Preprocess, embed (on-disk cache) and move rater masks to the model frame.
    ``keep_images``: store the model inputs instead of embeddings (encoder fine-tuning)."""
    from clinloop.models.litemedsam.cache import embed
    from clinloop.models.litemedsam.preprocess import mask_to_model, preprocess

    out = []
    from tqdm.auto import tqdm

    for i in tqdm(indices, desc="SPA training cases", disable=not progress):
        s = dataset[i]
        x, info = preprocess(s.image[0] if s.image.shape[0] == 1 else s.image)
        e = None if keep_images else embed([x], backbone, cache=True, progress=False)[0].half()
        masks = np.stack([mask_to_model(m, info).numpy() > 0.5 for m in s.masks])
        out.append(TrainCase(e, masks, np.asarray(s.rater_valid, bool), s.case_id if hasattr(s, "case_id") else str(i),
                             image=x if keep_images else None, structure=getattr(s, "structure", None)))
    return out


def soft_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice between mean_n sigmoid(logits_n) ``(N, H, W)`` and y ``(H, W)``."""
    p = torch.sigmoid(logits).mean(0).clamp(1e-6, 1 - 1e-6)
    bce = F.binary_cross_entropy(p, y)
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    return bce + dice


def per_sample_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L(y_n, y) for each sample: BCE + soft Dice of sigmoid(logits_n) ``(N, H, W)`` with y ``(H, W)`` -> ``(N,)``."""
    p = torch.sigmoid(logits).clamp(1e-6, 1 - 1e-6)
    yy = y.expand_as(p)
    bce = F.binary_cross_entropy(p, yy, reduction="none").flatten(1).mean(1)
    dice = 1 - (2 * (p * yy).flatten(1).sum(1) + 1) / (p.flatten(1).sum(1) + yy.flatten(1).sum(1) + 1)
    return bce + dice


def best_of_n_loss(logits: torch.Tensor, y: torch.Tensor, relax: float = 0.05) -> torch.Tensor:
    """Relaxed winner-takes-all ("best-of-N") loss over the N latent samples.

    With L_n = L(y_n, y) (:func:`per_sample_loss`, ``logits (N, H, W)``, target
    ``y (H, W)``) and n* = argmin_n L_n:

        L_wta = (1 - relax) * L_{n*} + relax * mean_n L_n

    Not in spa.txt (deviation): Algorithm 1 trains only L(y_app, y) on the
    sample mean, whose optimum puts every y_n at the mean (mode collapse, no
    candidate diversity). Training only the best sample against a single
    rater's mask (Rupprecht et al. 2017, "Learning in an uncertain world",
    relaxed WTA: the small ``relax`` weight keeps the other samples from
    drifting off) lets each latent region specialise on one style (generous,
    tight, ...), which is what SPA's K candidates and the user's choice need.
    ``relax`` in [0, 1]; with N = 1 this is L(y_1, y).
    """
    if not 0 <= relax <= 1:
        raise ValueError(f"relax must be in [0, 1], got {relax}")
    if logits.ndim != 3 or logits.shape[-2:] != y.shape[-2:]:
        raise ValueError(f"logits must be (N, H, W) with y (H, W); got {tuple(logits.shape)} and {tuple(y.shape)}")
    ls = per_sample_loss(logits, y)
    return (1 - relax) * ls.min() + relax * ls.mean()


def sample_dice(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Dice of each thresholded sample with y: ``(N,)``."""
    m = (logits > 0).float()
    inter = (m * y).flatten(1).sum(1)
    return (2 * inter + 1e-6) / (m.flatten(1).sum(1) + y.sum() + 1e-6)


def mean_pairwise_dice(masks: torch.Tensor) -> float:
    """Mean Dice over pairs of binary masks ``(K, H, W)`` (1.0 = all identical; two empty masks count 1):
    :func:`clinloop.metrics.pairwise_dice`, with 1.0 for fewer than two masks (nothing to tell apart)."""
    from clinloop.metrics import pairwise_dice

    return 1.0 if masks.shape[0] < 2 else pairwise_dice(masks.detach().cpu().numpy().astype(bool))


@dataclass(eq=False)
class _Episode:
    """The state of one episode (one training image) during a training step."""

    rs: int  # the episode's seed
    g: Any = None
    y: Any = None
    y_r: Any = None
    e_x: Any = None
    x_img: Any = None
    e_x_grad: Any = None
    points: Any = None  # ((1, P, 2) model-frame xy, (1, P) labels) or None (a box and no click yet)
    box: Any = None  # (1, 4) model-frame box of a box-first episode, else None
    rng: Any = None  # the episode's numpy generator (the simulated user's draws)
    mp: Any = None  # the mask prompt (the simulated user's last choice, or the current mask after a click)
    structure: int = 0  # the structure token's index this episode (0: none, or dropped)
    sparse0: Any = None
    dense0: Any = None
    logits1: Any = None
    z1: Any = None
    logs: dict = field(default_factory=lambda: {"loss_mv": [], "loss_pi": [], "loss_seg": [], "dice": [],
                                                "cand_dice": []})

    def summary(self) -> dict[str, float]:
        out = {k: float(np.mean(v)) for k, v in self.logs.items() if v and k not in ("dice", "cand_dice")}
        out["dice_first"], out["dice_last"] = self.logs["dice"][0], self.logs["dice"][-1]
        out["cand_dice_first"] = self.logs["cand_dice"][0]  # candidates' pairwise Dice after the first click
        return out


class SPATrainer:
    """Algorithm 1 on an :class:`~clinloop.models.spa.model.SPANet`."""

    def __init__(self, net, lr: float = 1e-4, step_size: int = 1000, gamma: float = 0.5, n_samples: int = 8,
                 seed: int = 0, lr_new: float | None = None, user_iterations: int = MAX_USER_ITERATIONS,
                 wta_weight: float = 1.0, wta_relax: float = 0.05,
                 fresh: Sequence[str] = ("conditioning", "variant"), encoder_lr: float = 1e-5,
                 episodes_per_step: int = 1, click_prob: float = 0.0, box_prob: float = 0.0,
                 click_weight: float = 0.0, propagation_prob: float = 0.0, propagation_shrink: float = 0.0,
                 structure_drop: float = 0.2, structure_lr: float = 1e-3, structure_only: bool = False) -> None:
        self.net, self.n_samples, self.seed = net, n_samples, seed
        for name, v in (("click_prob", click_prob), ("box_prob", box_prob), ("propagation_prob", propagation_prob),
                        ("structure_drop", structure_drop)):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if click_weight < 0:
            raise ValueError(f"click_weight must be >= 0, got {click_weight}")
        # the simulated user (spa_corrective): corrective clicks, a box first, the click term's weight
        self.click_prob, self.box_prob, self.click_weight = float(click_prob), float(box_prob), float(click_weight)
        self.propagation_prob = float(propagation_prob)  # share of guided cases prompted by a neighbour's box
        # share of episodes without their structure token (none when only structure parameters learn:
        # such an episode would train nothing)
        self.structure_drop = 0.0 if structure_only else float(structure_drop)
        if not 0 <= propagation_shrink < 0.5:
            raise ValueError(f"propagation_shrink must be in 0 .. 0.5 (a share of the box's side), got {propagation_shrink}")
        self.propagation_shrink = float(propagation_shrink)  # ... whose sides may move inwards by this share
        if int(episodes_per_step) < 1:
            raise ValueError(f"episodes_per_step must be >= 1, got {episodes_per_step}")
        self.episodes_per_step = int(episodes_per_step)  # B: episodes per training step (used by train())
        self.device = next(net.parameters()).device  # where the networks live (--device); data follow them
        if wta_weight < 0:
            raise ValueError(f"wta_weight must be >= 0, got {wta_weight}")
        self.wta_weight, self.wta_relax = float(wta_weight), float(wta_relax)
        self.user_iterations = user_iterations
        lr_new = lr if lr_new is None else lr_new  # freshly initialised modules (conditioning, PDG)
        v = net.variant
        mv, pi = v.mean_variance_parameters(), v.weight_parameters()
        special = {id(p) for p in mv + pi}
        pe = [p for p in net.backbone.prompt_encoder.parameters()]
        seg = [p for p in net.conditioning.parameters()]
        if net.config.finetune_decoder:
            seg += list(net.backbone.mask_decoder.parameters())
        else:
            pe = []
            for p in list(net.backbone.mask_decoder.parameters()) + list(net.backbone.prompt_encoder.parameters()):
                p.requires_grad_(False)
        seg = [p for p in seg if id(p) not in special]
        if v.alternating:  # MedUHIP: the prompt encoder learns with the Sampling Net (Eq. 6)
            mv = mv + pe
        else:  # SPA: with the segmentation update (Alg. 1 "segmentation and interaction encoders")
            seg = seg + pe
        self.finetune_encoder = bool(net.config.finetune_encoder)
        enc = list(net.backbone.image_encoder.parameters()) if self.finetune_encoder else []
        self.groups = {"mv": mv, "pi": pi, "seg": seg}
        # freshly initialised modules get lr_new (a warm start from --init passes only the ones it did not load)
        new = {id(p) for name in fresh for p in getattr(net, name).parameters()}

        def param_groups(ps):
            old = [p for p in ps if id(p) not in new]
            fresh_ps = [p for p in ps if id(p) in new]
            return [g for g in ({"params": old, "lr": lr}, {"params": fresh_ps, "lr": lr_new}) if g["params"]]

        self.opt = {k: torch.optim.Adam(param_groups(ps)) for k, ps in self.groups.items() if ps}
        if enc:  # the image encoder learns with the segmentation update, at its own lr
            self.opt["seg"].add_param_group({"params": enc, "lr": encoder_lr})
        structure = net.structure_parameters()  # tokens t_s, adapters B_s A_s: zero-initialised, so a larger lr
        if structure_only:  # only they learn: the generic answer stays the init's (--structure-only)
            if not structure:
                raise ValueError("structure_only needs a model with structure tokens (--structure-tokens)")
            for p in net.parameters():
                p.requires_grad_(False)
            for p in structure:
                p.requires_grad_(True)
            self.groups, self.opt = {"seg": structure}, {"seg": torch.optim.Adam(structure, lr=structure_lr)}
        elif structure:
            self.opt["seg"].add_param_group({"params": structure, "lr": structure_lr})
        self.sched = {k: torch.optim.lr_scheduler.StepLR(o, step_size=step_size, gamma=gamma) for k, o in self.opt.items()}
        self.step = 0

    def _zero(self) -> None:
        for o in self.opt.values():
            o.zero_grad(set_to_none=True)

    def _backward(self, loss: torch.Tensor, n_episodes: int) -> None:
        (loss if n_episodes == 1 else loss / n_episodes).backward()  # the mean over the step's episodes

    def _step(self, key: str, dist) -> None:
        """The optimiser step of group ``key`` with this step's accumulated gradients (summed over ranks)."""
        if dist is not None:
            dist.sum_grads([p for g in self.opt[key].param_groups for p in g["params"]])
        self.opt[key].step()

    def train_case(self, case: TrainCase) -> dict[str, float]:
        """One training step of a single episode (global batch 1: ``--episodes-per-step 1``) on ``case``;
        the row of :meth:`train_step`."""
        return self.train_step([case])

    def train_step(self, cases: Sequence[TrainCase], episodes: Sequence[int] | None = None,
                   n_episodes: int | None = None, dist=None) -> dict[str, float]:
        """One training step: B episodes of Alg. 1's inner loop run in lockstep.

        ``cases``: this process's episodes' cases, ``episodes`` their global episode numbers
        (default ``step * len(cases) + 0..``), ``n_episodes``: the step's B over all processes
        (default ``len(cases)``); ``dist``: a :class:`~clinloop.training.distributed.Dist` whose
        ranks run disjoint shares of the B episodes.

        What is per episode: its RNGs (seeded ``seed * 1_000_003 + episode``), the fused target y,
        the WTA rater y_r, the first click, the generator of the latent draws, the candidates and
        the simulated choice (its mask prompt chain). What is per optimiser step, shared by the B
        episodes: each of the three updates of every user iteration j (mean/variance, pi, then
        segmentation) is ONE optimiser step of its group on the gradient of the mean of the B
        episodes' losses (all-reduced over ranks), so the pi E-step target of iteration j uses the
        (mu, sigma) after that iteration's mean/variance step, as in Alg. 1; the StepLR schedulers
        and ``step`` advance once per training step. With B = 1 this is Alg. 1 exactly (one image
        per step; bit-identical to the single-episode trainer). Returns the mean over the B
        episodes of the per-episode losses (mean over iterations) and Dice values.
        """
        if episodes is None:
            episodes = [self.step * len(cases) + b for b in range(len(cases))]
        n_episodes = len(cases) if n_episodes is None else n_episodes
        if len(episodes) != len(cases):
            raise ValueError(f"{len(cases)} cases but {len(episodes)} episode numbers")
        net = self.net
        net.train()
        eps = [self._begin_episode(c, e) for c, e in zip(cases, episodes)]
        for j in range(self.user_iterations):
            if "mv" in self.opt:
                self._zero()
            for ep in eps:  # GenMask #1 (ori) -> mean/variance update
                with net.structure_scope(ep.structure):  # its decoder adapters (.adapters)
                    self._genmask_ori(ep, n_episodes)
            if "mv" in self.opt:
                self._step("mv", dist)
            if "pi" in self.opt:
                self._zero()
            for ep in eps:  # E-step target for pi (with the updated mean/variance)
                with net.structure_scope(ep.structure):  # its decoder adapters (.adapters)
                    self._estep(ep, n_episodes)
            if "pi" in self.opt:
                self._step("pi", dist)
            self._zero()
            for ep in eps:  # GenMask #2 (gmm) -> segmentation + interaction encoder update
                with net.structure_scope(ep.structure):  # its decoder adapters (.adapters)
                    self._genmask_gmm(ep, n_episodes)
            if "seg" in self.opt:
                self._step("seg", dist)
            for ep in eps:  # GenMask #3 (fin) -> candidates, simulated choice
                with net.structure_scope(ep.structure):  # its decoder adapters (.adapters)
                    self._genmask_fin(ep, j)
        for s in self.sched.values():
            s.step()
        self.step += 1
        rows = [ep.summary() for ep in eps]
        keys = list(rows[0]) if rows else self._row_keys()
        vals = torch.tensor([[r[k] for k in keys] for r in rows], dtype=torch.float64).reshape(len(rows), len(keys))
        if dist is not None and dist.active:
            vals = dist.gather_rows(vals, dist.share(torch.arange(n_episodes))[1])
        return {k: float(np.mean(vals[:, i].numpy())) for i, k in enumerate(keys)}

    def _row_keys(self) -> list[str]:
        return ["loss_mv"] + (["loss_pi"] if "pi" in self.opt else []) + [
            "loss_seg", "dice_first", "dice_last", "cand_dice_first"]

    def _begin_episode(self, case: TrainCase, episode: int) -> _Episode:
        from clinloop.data.fusion import spa_weighted_fusion
        from clinloop.interaction.users import random_target_point

        dev = self.device
        ep = _Episode(rs=self.seed * 1_000_003 + int(episode))
        rng = np.random.default_rng(ep.rs)
        ep.g = torch.Generator().manual_seed(ep.rs)
        y_np, _ = spa_weighted_fusion(case.masks, seed=rng.integers(2**31), rater_valid=case.valid)
        if not y_np.any():  # weighted vote came out empty: fall back to the union (never train on nothing)
            y_np = case.masks[case.valid].any(0)
        ep.y = torch.from_numpy(y_np).float().to(dev)
        # one non-empty rater for the multi-hypothesis term (best_of_n_loss)
        ok = [r for r in range(len(case.masks)) if case.valid[r] and case.masks[r].any()]
        ep.y_r = torch.from_numpy(case.masks[ok[int(rng.integers(len(ok)))]]).float().to(dev) if ok else ep.y
        if self.finetune_encoder:
            if case.image is None:
                raise ValueError("--finetune-encoder needs cases prepared with keep_images=True")
            ep.x_img = case.image.to(dev).float()[None]
        else:
            ep.e_x = case.embedding.to(dev).float()[None]
        ep.rng = rng
        if net_structure := self.net.structure_index(case.structure):  # own generator: the user's draws unchanged
            drop = np.random.default_rng([ep.rs, 7]).random() < self.structure_drop
            ep.structure = 0 if drop else net_structure
        if case.guides and (not y_np.any() or (self.propagation_prob > 0 and rng.random() < self.propagation_prob)):
            from clinloop.training.spa_corrective import propagation_box  # a volume session's next slice

            ep.box = torch.tensor([propagation_box(case.guides, rng, self.propagation_shrink)], dtype=torch.float32, device=dev)
            return ep
        if self.box_prob > 0 and rng.random() < self.box_prob:  # the first interaction is a box (spa_corrective)
            from clinloop.training.spa_corrective import jittered_box

            ep.box = torch.tensor([jittered_box(y_np, rng)], dtype=torch.float32, device=dev)
            return ep
        px, py = random_target_point(y_np, rng)
        ep.points = (torch.tensor([[[px, py]]], dtype=torch.float32, device=dev), torch.tensor([[1]], device=dev))
        return ep

    def _loss(self, ep: _Episode, lg: torch.Tensor) -> torch.Tensor:
        loss = soft_loss(lg, ep.y)
        if self.wta_weight > 0:
            loss = loss + self.wta_weight * best_of_n_loss(lg, ep.y_r, self.wta_relax)
        if self.click_weight > 0 and ep.points is not None:
            from clinloop.training.spa_corrective import click_term

            loss = loss + self.click_weight * click_term(lg, ep.points)
        return loss

    def _prompt(self, ep: _Episode):
        """e_u of the episode's current prompt: (sparse, dense)."""
        return self.net.encode_interaction(ep.points, ep.mp, ep.box, ep.structure)

    def _genmask_ori(self, ep: _Episode, n_episodes: int) -> None:
        net = self.net
        if self.finetune_encoder:  # e_x = ViT(x) with the current encoder; gradient only via GenMask #2
            ep.e_x_grad = net.backbone.image_encoder(ep.x_img)
            ep.e_x = ep.e_x_grad.detach()
        with torch.no_grad():
            ep.sparse0, ep.dense0 = self._prompt(ep)
            base0 = net.decode_base(ep.e_x, ep.sparse0, ep.dense0) if net.config.path == "tail" else None
        gmm = net.distribution(ep.e_x, ep.sparse0, ep.dense0)
        logits, z, _ = net.gen_mask(ep.e_x, ep.sparse0, ep.dense0, gmm, self.n_samples, ep.g, base0)
        loss_mv = self._loss(ep, logits)
        if "mv" in self.opt:
            self._backward(loss_mv, n_episodes)
        ep.logits1, ep.z1 = logits.detach(), z.detach()
        ep.logs["loss_mv"].append(float(loss_mv.detach()))

    def _estep(self, ep: _Episode, n_episodes: int) -> None:
        from clinloop.models.spa.preference_distribution import estep_target

        net = self.net
        with torch.no_grad():
            gmm_new = net.distribution(ep.e_x, ep.sparse0, ep.dense0)
            pi_gt = estep_target(ep.z1, gmm_new, sample_dice(ep.logits1, ep.y))
        if "pi" in self.opt:
            loss_pi = F.mse_loss(net.distribution(ep.e_x, ep.sparse0, ep.dense0).pi, pi_gt)
            self._backward(loss_pi, n_episodes)
            ep.logs["loss_pi"].append(float(loss_pi.detach()))

    def _genmask_gmm(self, ep: _Episode, n_episodes: int) -> None:
        net = self.net
        sparse, dense = self._prompt(ep)
        with torch.no_grad():  # the updated p_theta; its heads are not trained by this loss
            gmm2 = net.distribution(ep.e_x, ep.sparse0, ep.dense0)
        logits2, _, _ = net.gen_mask(ep.e_x_grad if self.finetune_encoder else ep.e_x, sparse, dense, gmm2,
                                     self.n_samples, ep.g)
        loss_seg = self._loss(ep, logits2)
        if "seg" in self.opt:
            self._backward(loss_seg, n_episodes)
        ep.e_x_grad = None
        ep.logs["loss_seg"].append(float(loss_seg.detach()))

    def _genmask_fin(self, ep: _Episode, j: int) -> None:
        from clinloop.models.spa import candidates as cand
        from clinloop.models.spa.model import mask_prompt

        net = self.net
        with torch.no_grad():
            sparse3, dense3 = self._prompt(ep)
            gmm3 = net.distribution(ep.e_x, sparse3, dense3)
            logits3, _, _ = net.gen_mask(ep.e_x, sparse3, dense3, gmm3, self.n_samples, ep.g)
            ys = (logits3 > 0).cpu()  # candidates (K-means) on the CPU, as at inference
            _, y_app = cand.aggregate(ys)
            r = cand.representative_candidates(ys, 4, seed=ep.rs + j)
            y_cpu = ep.y.cpu()
            pts = None
            if self.click_prob > 0 and ep.rng.random() < self.click_prob:
                from clinloop.training.spa_corrective import add_corrective_click

                # a corrective click on the current mask y_app (None when y_app has no error)
                pts = add_corrective_click(ep.points, y_cpu.numpy() > 0.5, y_app.numpy(), ep.rng, self.device)
            if pts is not None:  # ... and y_app becomes the mask prompt
                ep.points, ep.mp = pts, mask_prompt(y_app).to(self.device)
            else:  # the simulated choice: the candidate closest to y
                k = int(((r.float() - y_cpu[None]) ** 2).flatten(1).sum(1).argmin())
                ep.mp = mask_prompt(r[k]).to(self.device)
        ep.logs["cand_dice"].append(mean_pairwise_dice(r))
        inter, total = float((y_app & (y_cpu > 0.5)).sum()), float(y_app.sum() + y_cpu.sum())
        ep.logs["dice"].append(2 * inter / total if total else 1.0)  # both empty (an end case): perfect

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {"step": self.step, "episodes_per_step": self.episodes_per_step,
                "net": self.net.trainable_state_dict(),
                "opt": {k: o.state_dict() for k, o in self.opt.items()},
                "sched": {k: s.state_dict() for k, s in self.sched.items()}}

    def load_state(self, st: dict[str, Any]) -> None:
        b = int(st.get("episodes_per_step", 1))  # checkpoints before the option: one episode per step
        if b != self.episodes_per_step:
            raise ValueError(f"the checkpoint was trained with --episodes-per-step {b}, not {self.episodes_per_step}: "
                             "resume with the same value (the steps and the learning-rate schedule count B episodes)")
        if set(st["opt"]) != set(self.opt):  # e.g. a --structure-only run (one "seg" optimiser) resumed without it
            raise ValueError(f"the checkpoint has the optimisers {sorted(st['opt'])}, this run {sorted(self.opt)}: "
                             "resume with the options it was trained with (--structure-only, --structure-tokens)")
        self.net.load_state_dict(st["net"], strict=False)
        for k, o in self.opt.items():
            o.load_state_dict(st["opt"][k])
        for k, s in self.sched.items():
            s.load_state_dict(st["sched"][k])
        self.step = int(st["step"])
