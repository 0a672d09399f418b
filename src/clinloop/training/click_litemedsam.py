"""``click-litemedsam``: fine-tune LiteMedSAM's prompt encoder and mask decoder
for clicks (the pretrained checkpoint was trained with boxes only; a single
click gives Dice ~0.08 on LIDC).

Standard iterative click simulation (SAM §A "Training algorithm"; RITM,
Sofiiuk et al. 2022): per step, a batch of cases with frozen, cached image
embeddings; the first click is sampled uniformly inside the target; then,
without gradients, ``k ~ U{0..max_iterations}`` further rounds each add one
click sampled uniformly from the current error region (false negatives ->
positive click, false positives -> negative click; FN or FP chosen with
probability proportional to its area) and feed the previous low-res logits
back as the mask prompt; the final round is run with gradients. Loss (SAM):
``focal_weight * focal + dice_weight * dice`` on the single-mask output
against the target, plus ``iou_weight * MSE`` between the IoU head and the
mask's actual IoU. Everything lives in the 256² model frame
(:mod:`clinloop.models.litemedsam.preprocess`).

Target: the raters' strict majority (``clinloop.data.fusion.majority_vote``);
cases whose majority has fewer than ``min_pixels`` pixels are skipped.
Validation (held-out patients): deterministic clicks at the interior-most
point of the larger error region (distance transform), Dice after each of
``val_clicks`` clicks, reported before and after training in metrics.json.

CPU-sized deviations from SAM: at most ``max_cases`` training images, a few
hundred steps, single-mask output only (no multimask min-loss), no box rounds.

The folder written (``weights.pt`` holds only ``prompt_encoder.*`` and
``mask_decoder.*``, as int8 deltas against the pretrained checkpoint:
:mod:`clinloop.models.litemedsam.compact`) is read by
``clinloop.models.baselines.litemedsam_interactive.load_click_litemedsam``.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clinloop.config_options import TrainOptions, opt

METHODS = ("click-litemedsam",)


@dataclass
class ClickLiteMedSAMConfig:
    method: str = "click-litemedsam"
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.01
    max_iterations: int = 4  # extra no-grad click rounds per step, sampled in [0, max_iterations]
    focal_weight: float = 20.0  # SAM's 20:1 focal:dice
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    train_prompt_encoder: bool = True
    max_cases: int = 200
    val_cases: int = 20
    val_clicks: int = 5
    test_fraction: float = 0.2
    min_pixels: int = 10
    save_every: int = 50
    seed: int = 0
    base_weights: str = ""  # id of the frozen encoder / starting weights

    def save(self, folder: Path) -> None:
        """Write ``folder/config.json`` (atomic; :func:`clinloop.config_io.save_config`)."""
        from clinloop.config_io import save_config

        save_config(self, Path(folder) / "config.json")

    @classmethod
    def load(cls, folder: str | Path) -> "ClickLiteMedSAMConfig":
        """Read ``folder/config.json``; unknown keys are an error naming them."""
        from clinloop.config_io import load_config

        return load_config(cls, Path(folder) / "config.json")


# --- click simulation (pure functions on (H, W) bool arrays) ---------------------

def error_regions(target: np.ndarray, pred: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(false negatives, false positives), each ``(H, W)`` bool."""
    if pred is None:
        return target.copy(), np.zeros_like(target)
    return target & ~pred, pred & ~target


def sample_click(target: np.ndarray, pred: np.ndarray | None, rng: np.random.Generator) -> tuple[float, float, int]:
    """Training click: FN or FP region chosen with probability proportional to
    its area, then a pixel uniformly inside it. Returns ``(x, y, label)`` with
    label 1 (positive) / 0 (negative), or ``(0, 0, -1)`` (a padding point) when
    the prediction is already perfect."""
    fn, fp = error_regions(target, pred)
    n_fn, n_fp = int(fn.sum()), int(fp.sum())
    if n_fn + n_fp == 0:
        return 0.0, 0.0, -1
    positive = rng.random() < n_fn / (n_fn + n_fp)
    ys, xs = np.nonzero(fn if positive else fp)
    k = rng.integers(len(ys))
    return float(xs[k]), float(ys[k]), int(positive)


def center_click(target: np.ndarray, pred: np.ndarray | None) -> tuple[float, float, int]:
    """Evaluation click (RITM/NoC protocol): the point of the larger error
    region farthest from its boundary; ``(0, 0, -1)`` when there is no error."""
    from scipy.ndimage import distance_transform_edt

    fn, fp = error_regions(target, pred)
    if not fn.any() and not fp.any():
        return 0.0, 0.0, -1
    positive = fn.sum() >= fp.sum()
    region = np.pad(fn if positive else fp, 1)
    dist = distance_transform_edt(region)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y), int(positive)


# --- losses -----------------------------------------------------------------------

def click_loss(logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor,
               cfg: ClickLiteMedSAMConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """``logits (B, 256, 256)``, ``target (B, 256, 256)`` float {0,1}, ``iou_pred (B,)``.
    Focal (gamma 2, alpha 0.25) and soft Dice, both averaged over the batch;
    the IoU head regresses the thresholded mask's IoU (detached)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    alpha = 0.25 * target + 0.75 * (1 - target)
    focal = (alpha * ce * (1 - pt) ** 2).mean(dim=(1, 2)).mean()
    inter = (p * target).sum(dim=(1, 2))
    dice = (1 - (2 * inter + 1) / (p.sum(dim=(1, 2)) + target.sum(dim=(1, 2)) + 1)).mean()
    with torch.no_grad():
        hard = (logits > 0).float()
        i = (hard * target).sum(dim=(1, 2))
        u = ((hard + target) > 0).float().sum(dim=(1, 2))
        iou_true = torch.where(u > 0, i / u.clamp_min(1), torch.ones_like(u))
    iou_l = F.mse_loss(iou_pred, iou_true)
    loss = cfg.focal_weight * focal + cfg.dice_weight * dice + cfg.iou_weight * iou_l
    return loss, {"focal": float(focal.detach()), "dice_loss": float(dice.detach()), "iou_mse": float(iou_l.detach()),
                  "iou": float(iou_true.mean())}


# --- the interactive loop -------------------------------------------------------------

def _plain(fn, *xs):
    return fn(*xs)


def run_clicks(net, emb: torch.Tensor, targets: np.ndarray, n_clicks: int, rng: np.random.Generator | None,
               grad_last: bool = False, run=_plain):
    """Play ``n_clicks`` rounds on a batch. ``emb (B, 256, 64, 64)``, ``targets
    (B, 256, 256)`` bool. Clicks come from :func:`sample_click` (``rng`` given)
    or :func:`center_click` (``rng=None``). Returns the last round's low-res
    logits ``(B, 256, 256)`` and IoU ``(B,)`` (with autograd when ``grad_last``)
    and the per-round boolean predictions ``(n_clicks, B, 256, 256)``. ``run(fn, *batch)``
    applies the decoder (:meth:`clinloop.training.distributed.Dist.run_rows` splits it over ranks)."""
    b = len(targets)
    pts: list[list[tuple[float, float]]] = [[] for _ in range(b)]
    labs: list[list[int]] = [[] for _ in range(b)]
    preds = [None] * b
    logits_prev = None
    history = []
    for r in range(n_clicks):
        for i in range(b):
            x, y, lab = sample_click(targets[i], preds[i], rng) if rng is not None else center_click(targets[i], preds[i])
            pts[i].append((x, y))
            labs[i].append(lab)
        points = (torch.tensor(pts, dtype=torch.float32, device=emb.device),
                  torch.tensor(labs, dtype=torch.int64, device=emb.device))
        last = r == n_clicks - 1
        with torch.set_grad_enabled(grad_last and last):
            if logits_prev is None:
                lo, iou = run(lambda e, c, lb: net.decode(e, points=(c, lb), masks=None, multimask_output=False),
                              emb, *points)
            else:
                lo, iou = run(lambda e, c, lb, m: net.decode(e, points=(c, lb), masks=m, multimask_output=False),
                              emb, *points, logits_prev)
        logits_prev = lo.detach()
        preds = list((lo[:, 0] > 0).detach().cpu().numpy())
        history.append(np.stack(preds))
    return lo[:, 0], iou[:, 0], np.stack(history)


def dice_np(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def evaluate_clicks(net, emb: torch.Tensor, targets: np.ndarray, n_clicks: int, batch: int = 8) -> list[float]:
    """Mean Dice (model frame) after each of ``n_clicks`` deterministic clicks."""
    net.eval()
    out = np.zeros((n_clicks,))
    with torch.no_grad():
        for s in range(0, len(targets), batch):
            _, _, hist = run_clicks(net, emb[s:s + batch], targets[s:s + batch], n_clicks, rng=None)
            for r in range(n_clicks):
                out[r] += sum(dice_np(p, t) for p, t in zip(hist[r], targets[s:s + batch]))
    return (out / max(1, len(targets))).round(4).tolist()


# --- data -----------------------------------------------------------------------------

def prepare_cases(ds, indices, cfg: ClickLiteMedSAMConfig, net, limit: int, rng: np.random.Generator,
                  progress: bool = True):
    """Up to ``limit`` cases (random order) with a non-trivial majority target:
    cached embeddings ``(N, 256, 64, 64)``, targets ``(N, 256, 256)`` bool in the
    model frame, their case ids."""
    from clinloop.data.fusion import majority_vote
    from clinloop.models.litemedsam.cache import embed
    from clinloop.models.litemedsam.preprocess import mask_to_model, preprocess

    xs, ts, ids = [], [], []
    for i in rng.permutation(np.asarray(indices)):
        if len(xs) >= limit:
            break
        s = ds[int(i)]
        if s.spatial_ndim != 2 or not s.rater_valid.any():
            continue
        target = majority_vote(s.masks, s.rater_valid)
        if target.sum() < cfg.min_pixels:
            continue
        img = s.image[0] if s.n_channels == 1 else s.image
        x, info = preprocess(img)
        xs.append(x)
        ts.append(mask_to_model(target, info).numpy() > 0.5)
        ids.append(ds.case_ids[int(i)])
    if not xs:
        raise ValueError("no usable 2-D cases (non-empty rater majority) in the selection")
    emb = embed(xs, net, cache=True, progress=progress)
    return emb, np.stack(ts), ids


# --- training -------------------------------------------------------------------------

def trainable_parameters(net, cfg: ClickLiteMedSAMConfig):
    mods = [net.mask_decoder] + ([net.prompt_encoder] if cfg.train_prompt_encoder else [])
    return [p for m in mods for p in m.parameters()]


def decoder_state(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()
            if k.startswith(("prompt_encoder.", "mask_decoder."))}


def train(cfg: ClickLiteMedSAMConfig, net, emb: torch.Tensor, targets: np.ndarray, out: Path | None = None,
          resume: bool = False, progress: bool = True, dist=None) -> list[dict]:
    """Fine-tune ``net``'s prompt encoder / mask decoder in place; returns the
    per-step history. Checkpoints to ``out/checkpoint.pt`` every ``save_every``
    steps (and resumes from it). ``dist`` (under ``torchrun``): all ranks draw the
    same batches and clicks, each decodes its share of the batch, the gradients
    are averaged: the steps equal one process's up to float order."""
    from clinloop.training.distributed import Dist

    d = dist or Dist()
    from tqdm.auto import tqdm

    from clinloop.atomic import atomic_path

    for p in net.parameters():
        p.requires_grad_(False)
    params = trainable_parameters(net, cfg)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    start, history = 0, []
    ckpt = None if out is None else Path(out) / "checkpoint.pt"
    if resume and ckpt is not None and ckpt.is_file():
        st = torch.load(ckpt, map_location="cpu", weights_only=False)
        net.load_state_dict(st["decoder"], strict=False)
        opt.load_state_dict(st["optimizer"])
        rng.bit_generator.state = st["rng"]
        start, history = st["step"], st["history"]
    net.train()
    net.image_encoder.eval()
    bar = tqdm(range(start, cfg.steps), desc="click-litemedsam", disable=not (progress and d.main), initial=start, total=cfg.steps)
    for step in bar:
        idx = rng.choice(len(targets), size=min(cfg.batch_size, len(targets)), replace=False)
        n_clicks = 1 + int(rng.integers(0, cfg.max_iterations + 1))
        lo, iou, _ = run_clicks(net, emb[idx], targets[idx], n_clicks, rng, grad_last=True, run=d.run_rows)
        loss, parts = click_loss(lo, torch.from_numpy(targets[idx]).float().to(lo.device), iou, cfg)
        opt.zero_grad(set_to_none=True)
        (loss * d.world).backward()
        d.average_grads(params)
        opt.step()
        loss_value = float(loss.detach())
        history.append({"step": step + 1, "clicks": n_clicks, "loss": round(loss_value, 5),
                        **{k: round(v, 5) for k, v in parts.items()}})
        bar.set_postfix(loss=f"{loss_value:.3f}", iou=f"{parts['iou']:.2f}")
        if ckpt is not None and d.main and ((step + 1) % cfg.save_every == 0) and step + 1 < cfg.steps:
            with atomic_path(ckpt) as tmp:
                torch.save({"decoder": decoder_state(net), "optimizer": opt.state_dict(), "rng": rng.bit_generator.state,
                            "step": step + 1, "history": history}, tmp)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return history


# --- options ------------------------------------------------------------------------
_D = ClickLiteMedSAMConfig()


@dataclass(kw_only=True)
class ClickTrainOptions(TrainOptions):
    """``clinloop train --method click-litemedsam`` (defaults from :class:`ClickLiteMedSAMConfig`)."""

    steps: int = opt(_D.steps)
    batch_size: int = opt(_D.batch_size)
    lr: float = opt(_D.lr)
    max_iterations: int = opt(_D.max_iterations,
                              help="extra no-grad click rounds per step, sampled in [0, N] (previous logits fed back)")
    max_cases: int = opt(_D.max_cases, help="training images (embedding each costs ~1.4 s on 2 cores)")
    val_cases: int = opt(_D.val_cases, help="held-out images for the click-Dice curve")
    val_clicks: int = opt(_D.val_clicks)
    held_out_fraction: float = opt(_D.test_fraction, flags=("--test-fraction",),
                                   help="held-out share of the cases, split by patient")
    freeze_prompt_encoder: bool = opt(False, help="train the mask decoder only")
    save_every: int = opt(_D.save_every)
    structure: str | None = opt(None, help="RIGA structure: cup or disc")
    task: int | None = opt(None, help="QUBIQ task number")
    threads: int | None = opt(None, help="torch CPU threads", at_least=1)


OPTIONS = ClickTrainOptions


def train_model(args: ClickTrainOptions) -> Path:
    """Fine-tune click-LiteMedSAM into ``args.out``; returns the model folder."""
    from clinloop.training import finished_model
    from clinloop.atomic import atomic_write_text
    from clinloop.data import load_dataset
    from clinloop.config_options import command_line
    from clinloop.data.splits import split_patients
    from clinloop.models.litemedsam import build_litemedsam

    if getattr(args, "method", "click-litemedsam") not in METHODS:
        raise ValueError(f"clinloop.training.click_litemedsam trains {', '.join(METHODS)}; got {args.method!r}")
    for name in ("steps", "batch_size", "max_cases", "val_clicks"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 < args.held_out_fraction < 1:
        raise ValueError(f"--held-out-fraction (--test-fraction) must be in (0, 1), got {args.held_out_fraction}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if finished_model(out, args.resume):
        return out
    from clinloop.training import distributed, resolve_device

    d = distributed.init(args.device)
    device = resolve_device(distributed.device_for(d, args.device))
    torch.manual_seed(args.seed)
    net = build_litemedsam(True).to(device)
    cfg = ClickLiteMedSAMConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_iterations=args.max_iterations,
                                train_prompt_encoder=not args.freeze_prompt_encoder, max_cases=args.max_cases,
                                val_cases=args.val_cases, val_clicks=args.val_clicks, test_fraction=args.held_out_fraction,
                                save_every=args.save_every, seed=args.seed, base_weights=net.weights_id or "")
    opts = {k: v for k, v in (("structure", args.structure), ("task", args.task)) if v is not None}
    ds = load_dataset(args.data, format=args.format, **opts)
    train_idx, test_idx = split_patients(ds.patient_ids, cfg.test_fraction, cfg.seed, rule="cases")
    t0 = time.time()
    rng = np.random.default_rng(cfg.seed)
    emb, targets, train_ids = prepare_cases(ds, train_idx, cfg, net, cfg.max_cases, rng)
    val = prepare_cases(ds, test_idx, cfg, net, cfg.val_cases, rng) if cfg.val_cases > 0 else None
    if d.main:
        print(f"click-litemedsam: {len(train_ids)} training images, {0 if val is None else len(val[2])} validation "
              f"images ({time.time() - t0:.0f} s embedding)", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    before = evaluate_clicks(net, val[0], val[1], cfg.val_clicks) if val is not None and d.main else None
    history = train(cfg, net, emb, targets, out, resume=args.resume, progress=d.main, dist=d)
    if not d.main:  # rank 0 validates and writes the model folder
        d.barrier()
        d.close()
        return out
    after = evaluate_clicks(net, val[0], val[1], cfg.val_clicks) if val is not None else None
    seconds = time.time() - t0
    cfg.save(out)
    from clinloop.models.litemedsam.compact import write_weights

    write_weights(out / "weights.pt", decoder_state(net), compact=True)  # int8 deltas against the checkpoint
    data = {
        "dataset": str(args.data), "format": args.format or getattr(ds, "format", None), "options": opts,
        "split": {"method": "split_by_patient", "fractions": [1 - cfg.test_fraction, cfg.test_fraction], "seed": cfg.seed},
        "target": "majority_vote", "frame": "LiteMedSAM 256x256 model frame",
        "train_cases": train_ids, "val_cases": [] if val is None else val[2],
        "command": command_line("train", args, skip=("resume",)), "train_seconds": round(seconds, 1), "threads": torch.get_num_threads(),
    }
    atomic_write_text(out / "data.json", json.dumps(data, indent=2) + "\n")
    metrics = {"val_dice_per_click_before": before, "val_dice_per_click_after": after, "history": history}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    print(f"wrote {out} ({seconds:.0f} s); val Dice per click before {before} after {after}", file=sys.stderr)
    d.barrier()
    d.close()
    return out
