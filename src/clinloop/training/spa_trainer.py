"""SPA's Algorithm 1 as a trainer object (see :mod:`clinloop.training.spa` for the
algorithm, the readings and the deviations): the training cases, the losses, the
``--init`` warm start, :class:`SPATrainer` (one image = one pass of Alg. 1's inner
loop) and the checkpointing loop :func:`train`.

``SPATrainer``'s defaults equal the command line's (:class:`~clinloop.training.spa.SPATrainOptions`):
in particular ``wta_weight=1.0`` -- with 0 (the paper's loss alone) the latents
collapse and the K candidates are identical.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

MAX_USER_ITERATIONS = 6


@dataclass
class TrainCase:
    """One training slice in the model frame."""

    embedding: torch.Tensor | None  # (256, 64, 64) float16; None when the encoder is trained
    masks: np.ndarray  # (R, 256, 256) bool, rater masks in the model frame
    valid: np.ndarray  # (R,) bool
    case_id: str = ""
    image: torch.Tensor | None = None  # (3, 256, 256) model input, kept for --finetune-encoder


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
                             image=x if keep_images else None))
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


WARM_START_SHARED = ("backbone.prompt_encoder.", "backbone.mask_decoder.", "conditioning.")


def warm_start(net, folder: str | Path) -> dict[str, Any]:
    """Load the shared parts of an existing SPA model folder into ``net`` (``--init``).

    Shared = the LiteMedSAM prompt encoder E_I and mask decoder and the
    preference conditioning ``e_xn = ReLU(Conv(e_x ⊕ z_n))``; the variant's
    preference-distribution module (p_theta) is loaded only when the folder's
    method equals ``net``'s, otherwise it stays freshly initialised. The
    architecture fields (M, D, conditioning width/path, PDG width) must match.
    Returns what was loaded (recorded in ``data.json`` "init").
    """
    import hashlib

    from clinloop.models import registry
    from clinloop.models.spa.config import SPAConfig

    d = registry.resolve_model_dir(folder)
    src = SPAConfig.load(d / "config.json")
    cfg = net.config
    for f in ("n_components", "latent_dim", "cond_width", "path", "pdg_hidden"):
        if getattr(src, f) != getattr(cfg, f):
            raise ValueError(f"--init {d}: {f} is {getattr(src, f)!r} there but {getattr(cfg, f)!r} here")
    raw = (d / "weights.pt").read_bytes()
    from clinloop.models.litemedsam.compact import read_weights

    sd = read_weights(d / "weights.pt")
    same_variant = src.method == cfg.method
    prefixes = WARM_START_SHARED + (("variant.",) if same_variant else ())
    take = {k: v for k, v in sd.items() if k.startswith(prefixes)}  # read_weights gives float32
    own = net.state_dict()
    want = [k for k in own if k.startswith(prefixes)]
    missing = [k for k in want if k not in take]
    bad = [k for k, v in take.items() if k not in own or own[k].shape != v.shape]
    if missing or bad:
        raise ValueError(f"--init {d}: weights do not match (missing {missing[:3]}, mismatched {bad[:3]})")
    net.load_state_dict(take, strict=False)
    steps = None
    if (d / "data.json").is_file():
        try:
            steps = json.loads((d / "data.json").read_text()).get("steps")
        except (OSError, json.JSONDecodeError):
            steps = None
    return {"model": str(folder), "method": src.method, "steps": steps,  # as given: no machine path
            "weights_sha256": hashlib.sha256(raw).hexdigest(),
            "loaded": [p.rstrip(".") for p in prefixes], "fresh": [] if same_variant else ["variant"],
            "tensors_loaded": len(take)}


class SPATrainer:
    """Algorithm 1 on an :class:`~clinloop.models.spa.model.SPANet`."""

    def __init__(self, net, lr: float = 1e-4, step_size: int = 1000, gamma: float = 0.5, n_samples: int = 8,
                 seed: int = 0, lr_new: float | None = None, user_iterations: int = MAX_USER_ITERATIONS,
                 wta_weight: float = 1.0, wta_relax: float = 0.05,
                 fresh: Sequence[str] = ("conditioning", "variant"), encoder_lr: float = 1e-5) -> None:
        self.net, self.n_samples, self.seed = net, n_samples, seed
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
        self.sched = {k: torch.optim.lr_scheduler.StepLR(o, step_size=step_size, gamma=gamma) for k, o in self.opt.items()}
        self.step = 0

    def _update(self, key: str, loss: torch.Tensor) -> None:
        if key not in self.opt:
            return
        for o in self.opt.values():
            o.zero_grad(set_to_none=True)
        loss.backward()
        self.opt[key].step()

    def train_case(self, case: TrainCase) -> dict[str, float]:
        """One pass of Alg. 1's inner loop over MAX_USER_ITERATIONS; returns the mean losses and the
        Dice of y_app^fin after the first and the last iteration."""
        from clinloop.data.fusion import spa_weighted_fusion
        from clinloop.interaction.users import random_target_point
        from clinloop.models.spa import candidates as cand
        from clinloop.models.spa.model import mask_prompt
        from clinloop.models.spa.preference_distribution import estep_target

        net, dev = self.net, self.device
        net.train()
        rs = self.seed * 1_000_003 + self.step
        rng = np.random.default_rng(rs)
        g = torch.Generator().manual_seed(rs)
        y_np, _ = spa_weighted_fusion(case.masks, seed=rng.integers(2**31), rater_valid=case.valid)
        if not y_np.any():  # weighted vote came out empty: fall back to the union (never train on nothing)
            y_np = case.masks[case.valid].any(0)
        y = torch.from_numpy(y_np).float().to(dev)
        # one non-empty rater for the multi-hypothesis term (best_of_n_loss)
        ok = [r for r in range(len(case.masks)) if case.valid[r] and case.masks[r].any()]
        y_r = torch.from_numpy(case.masks[ok[int(rng.integers(len(ok)))]]).float().to(dev) if ok else y

        def loss_fn(lg: torch.Tensor) -> torch.Tensor:
            loss = soft_loss(lg, y)
            if self.wta_weight > 0:
                loss = loss + self.wta_weight * best_of_n_loss(lg, y_r, self.wta_relax)
            return loss

        if self.finetune_encoder:
            if case.image is None:
                raise ValueError("--finetune-encoder needs cases prepared with keep_images=True")
            x_img = case.image.to(dev).float()[None]
        else:
            e_x = case.embedding.to(dev).float()[None]
        px, py = random_target_point(y_np, rng)
        points = (torch.tensor([[[px, py]]], dtype=torch.float32, device=dev), torch.tensor([[1]], device=dev))
        mp = None
        logs: dict[str, list[float]] = {"loss_mv": [], "loss_pi": [], "loss_seg": [], "dice": [], "cand_dice": []}
        for j in range(self.user_iterations):
            if self.finetune_encoder:  # e_x = ViT(x) with the current encoder; gradient only via GenMask #2
                e_x_grad = net.backbone.image_encoder(x_img)
                e_x = e_x_grad.detach()
            # GenMask #1 (ori) -> mean/variance update
            with torch.no_grad():
                sparse0, dense0 = net.encode_interaction(points, mp)
                base0 = net.decode_base(e_x, sparse0, dense0) if net.config.path == "tail" else None
            gmm = net.distribution(e_x, sparse0, dense0)
            logits, z, _ = net.gen_mask(e_x, sparse0, dense0, gmm, self.n_samples, g, base0)
            loss_mv = loss_fn(logits)
            if self.groups["mv"]:
                self._update("mv", loss_mv)
            # E-step target for pi (with the updated mean/variance)
            with torch.no_grad():
                gmm_new = net.distribution(e_x, sparse0, dense0)
                pi_gt = estep_target(z.detach(), gmm_new, sample_dice(logits.detach(), y))
            if self.groups["pi"]:
                loss_pi = F.mse_loss(net.distribution(e_x, sparse0, dense0).pi, pi_gt)
                self._update("pi", loss_pi)
                logs["loss_pi"].append(float(loss_pi.detach()))
            # GenMask #2 (gmm) -> segmentation + interaction encoder update
            sparse, dense = net.encode_interaction(points, mp)
            with torch.no_grad():  # the updated p_theta; its heads are not trained by this loss
                gmm2 = net.distribution(e_x, sparse0, dense0)
            logits2, _, _ = net.gen_mask(e_x_grad if self.finetune_encoder else e_x, sparse, dense, gmm2,
                                         self.n_samples, g)
            loss_seg = loss_fn(logits2)
            self._update("seg", loss_seg)
            # GenMask #3 (fin) -> candidates, simulated choice
            with torch.no_grad():
                sparse3, dense3 = net.encode_interaction(points, mp)
                gmm3 = net.distribution(e_x, sparse3, dense3)
                logits3, _, _ = net.gen_mask(e_x, sparse3, dense3, gmm3, self.n_samples, g)
                ys = (logits3 > 0).cpu()  # candidates (K-means) on the CPU, as at inference
                _, y_app = cand.aggregate(ys)
                r = cand.representative_candidates(ys, 4, seed=rs + j)
                y_cpu = y.cpu()
                k = int(((r.float() - y_cpu[None]) ** 2).flatten(1).sum(1).argmin())
                mp = mask_prompt(r[k]).to(dev)
            logs["loss_mv"].append(float(loss_mv.detach()))
            logs["loss_seg"].append(float(loss_seg.detach()))
            logs["cand_dice"].append(mean_pairwise_dice(r))
            inter = float((y_app & (y_cpu > 0.5)).sum())
            logs["dice"].append(2 * inter / max(1.0, float(y_app.sum() + y_cpu.sum())))
        for s in self.sched.values():
            s.step()
        self.step += 1
        out = {k: float(np.mean(v)) for k, v in logs.items() if v and k not in ("dice", "cand_dice")}
        out["dice_first"], out["dice_last"] = logs["dice"][0], logs["dice"][-1]
        out["cand_dice_first"] = logs["cand_dice"][0]  # candidates' pairwise Dice after the first click
        return out

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {"step": self.step, "net": self.net.trainable_state_dict(),
                "opt": {k: o.state_dict() for k, o in self.opt.items()},
                "sched": {k: s.state_dict() for k, s in self.sched.items()}}

    def load_state(self, st: dict[str, Any]) -> None:
        self.net.load_state_dict(st["net"], strict=False)
        for k, o in self.opt.items():
            o.load_state_dict(st["opt"][k])
        for k, s in self.sched.items():
            s.load_state_dict(st["sched"][k])
        self.step = int(st["step"])


def train(trainer: SPATrainer, cases: list[TrainCase], steps: int, out: Path, save_every: int = 50,
          seed: int = 0, progress: bool = True, time_budget: float | None = None) -> list[dict[str, float]]:
    """Run ``steps`` training images (cycling through a seeded permutation of ``cases``),
    checkpointing into ``out/checkpoint.pt``; continues from ``trainer.step``."""
    from tqdm.auto import tqdm

    from clinloop.atomic import atomic_path

    if not cases:
        raise ValueError("no training cases")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(cases)) for _ in range(steps // len(cases) + 2)])
    rows = []
    bar = tqdm(total=steps, initial=trainer.step, desc="SPA training", disable=not progress)
    log_path = out / "train_log.csv"
    t_start = time.time()
    while trainer.step < steps:
        if time_budget is not None and time.time() - t_start > time_budget:
            print(f"time budget of {time_budget:.0f} s reached at step {trainer.step}", file=sys.stderr)
            break
        c = cases[int(order[trainer.step])]
        row = {"step": trainer.step, **trainer.train_case(c)}
        rows.append(row)
        bar.update(1)
        bar.set_postfix(seg=f"{row['loss_seg']:.3f}", d1=f"{row['dice_first']:.2f}", d6=f"{row['dice_last']:.2f}")
        new = not log_path.exists()
        with open(log_path, "a") as f:
            if new:
                f.write(",".join(row) + "\n")
            f.write(",".join(f"{v:.5g}" if isinstance(v, float) else str(v) for v in row.values()) + "\n")
        if trainer.step % save_every == 0 or trainer.step == steps or (
                time_budget is not None and time.time() - t_start > time_budget):
            with atomic_path(out / "checkpoint.pt") as tmp:
                torch.save(trainer.state(), tmp)
    bar.close()
    return rows
