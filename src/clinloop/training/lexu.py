"""Training for LEXU and its four baselines (``clinloop train --method
{lexu,unet,ensemble,layer-ensemble,mc-dropout}``).

One loop for all five: the method picks a named variant
(:mod:`clinloop.models.lexu.baselines`) whose ``loss`` is Eq. 1 for LEXU and
majority-vote BCE for the baselines. Data are split by patient
(``clinloop.data.splits.split_by_patient``) into train / held-out test; the
held-out case ids are written to ``data.json`` so ``clinloop evaluate
--protocol lexu`` and ``clinloop triage`` use exactly the unseen cases.

Resumable: ``checkpoint.pt`` (weights, optimiser, scheduler, epoch, RNG) is
rewritten atomically after every epoch; ``--resume`` continues from it. The
final folder holds ``config.json``, ``weights.pt``, ``data.json`` (dataset,
split, command, wall time) and ``metrics.json`` (loss per epoch).

CPU-sized deviations from LEXU §3: from-scratch CNN encoder (or the frozen
pretrained LiteMedSAM TinyViT with ``--encoder tinyvit``, 256² input, decoder and
heads trained), Adam lr 2e-3 (batch 4) with cosine decay (paper: 5e-5 for a
pretrained ResNet50), 96² input by default (paper: 256²), fewer epochs; random
horizontal/vertical flips as augmentation (of the cached feature maps with
TinyViT). ``--crop`` takes a centred square crop before resizing.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinloop.config_options import TrainOptions, command_line, opt
from clinloop.models.lexu.config import DEFAULT_WIDTHS, ENCODERS, METHODS, TINYVIT_SIZE, LexuConfig


@dataclass(kw_only=True)
class LexuTrainOptions(TrainOptions):
    """``clinloop train --method {lexu,unet,ensemble,layer-ensemble,mc-dropout}``."""

    size: int | None = opt(None, help="square input resolution (cnn default 96; tinyvit: 256)")
    epochs: int = opt(100, at_least=1)
    batch_size: int = opt(4, at_least=1)
    lr: float = opt(2e-3, above=0)
    alpha: float = opt(1.0, help="Eq. 1 α (segmentation weight)")
    beta: float = opt(5.0, help="Eq. 1 β (DGM weight)")
    widths: str | None = opt(None, help="comma-separated; cnn: encoder widths (N_E = count, default "
                                        "16,24,32,48,64,96); tinyvit: 5 decoder widths (default 16,32,48,64,96)")
    encoder: str = opt("cnn", choices=list(ENCODERS),
                       help="cnn: from scratch; tinyvit: frozen pretrained LiteMedSAM TinyViT (features cached on disk)")
    crop: float = opt(1.0, help="centred square crop (fraction of the side) before resizing")
    members: int = opt(5, help="deep-ensemble size")
    dropout: float = opt(0.2, help="MC-dropout probability")
    mc_samples: int = opt(8, help="MC-dropout passes at test time")
    structure: str | None = opt(None, help="RIGA structure: cup or disc")
    task: int | None = opt(None, help="QUBIQ task number")
    held_out_fraction: float = opt(0.3, flags=("--test-fraction",),
                                   help="held-out share of the cases (split by patient)")
    official_split: bool = opt(False, help="use the dataset's own Training/Test folders (Drishti-GS1: 50 / 51 "
                                           "photos) instead of a random patient split")
    split_seed: int | None = opt(None, help="seed of the split (default: --seed); fix it to compare training "
                                            "seeds on the same held-out cases")
    max_cases: int | None = opt(None, help="train on at most N training cases (random, seeded)")
    intensity_augment: float = opt(0.0, help="probability of each of Gaussian noise, blur and gamma per training "
                                             "image (clinloop.training.lexu_augment; cnn encoder only)")
    dgm_clean_only: bool = opt(False, help="with --intensity-augment (lexu only; not in the paper): Eq. 1's DGM "
                                           "term on the undistorted images of each batch only, MRO on all")
    distortion_disagreement: float = opt(0.0, help="with --intensity-augment (lexu only; not in the paper): on a "
                                                   "distorted image of strength d in [0, 1], Eq. 1's DGM target is "
                                                   "max(H, D·d) on the raters' boundary band (1 px; 2 px for "
                                                   "d >= 0.5; D <= 0.25)")
    threads: int | None = opt(None, help="torch CPU threads", at_least=1)


OPTIONS = LexuTrainOptions


def dataset_options(args) -> dict:
    """Reader options from ``--structure`` / ``--task`` (only those given)."""
    opts = {}
    if getattr(args, "structure", None):
        opts["structure"] = args.structure
    if getattr(args, "task", None) is not None:
        opts["task"] = args.task
    return opts


def split_cases(dataset, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, test) of the patient split :func:`clinloop.data.splits.split_patients`
    (rule ``"cases"``; ``test_fraction`` = the held-out share)."""
    from clinloop.data.splits import split_patients

    if not 0 < test_fraction < 1:
        raise ValueError(f"--held-out-fraction (--test-fraction) must be in (0, 1), got {test_fraction}")
    return split_patients(dataset.patient_ids, test_fraction, seed, rule="cases")


def stack_samples(samples, size: int, in_channels: int, normalisation: str = "zscore", crop: float = 1.0):
    """Samples -> ``images (N, C, S, S)`` normalised, ``masks (N, R, S, S)`` uint8
    (padded with invalid raters to the largest R), ``valid (N, R)`` bool.
    Samples without a valid rater are dropped (with their index noted)."""
    import torch

    from clinloop.models.lexu.model import prepare_images, prepare_masks

    keep = [s for s in samples if s.n_raters and s.rater_valid.any()]
    if not keep:
        raise ValueError("no sample has a valid rater mask")
    r = max(s.n_raters for s in keep)
    x = prepare_images([s.image for s in keep], size, in_channels, normalisation, crop)
    m = torch.zeros((len(keep), r, size, size), dtype=torch.uint8)
    v = torch.zeros((len(keep), r), dtype=torch.bool)
    for i, s in enumerate(keep):
        m[i, : s.n_raters] = prepare_masks(s.masks, size, crop)
        v[i, : s.n_raters] = torch.from_numpy(s.rater_valid)
    return x, m, v, keep


def _save_atomic(obj, path: Path) -> None:
    import torch

    from clinloop.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(cfg: LexuConfig, x, m, v, out: Path, resume: bool = False, progress: bool = True, device: str = "cpu",
          stop_after: int | None = None, dist=None):
    """Train ``cfg.method`` on prepared tensors ``x (N,C,S,S)``, ``m (N,R,S,S)``,
    ``v (N,R)``; returns (network, history). ``stop_after`` ends the loop after
    that many epochs, leaving ``checkpoint.pt`` as an interruption would.
    ``dist`` (:class:`clinloop.training.distributed.Dist`, under ``torchrun``): each
    rank runs the network on its share of every global batch of ``cfg.batch_size``;
    the loss is the global batch's (identical to one process up to float order)."""
    import torch

    from clinloop.models.lexu.config import build_network
    from clinloop.training.distributed import Dist
    from clinloop.training.lexu_augment import augment_batch

    d = dist or Dist()

    torch.manual_seed(cfg.seed)
    net = build_network(cfg).to(device)
    if cfg.encoder == "tinyvit":
        from clinloop.models.lexu.network import tinyvit_features

        feats = tinyvit_features()
        feats.reserve(len(x) + 8)  # every training image stays in memory
        for b in range(0, len(x), 4):  # fill the cache once, before the epochs (with progress)
            feats(x[b : b + 4])
    step = d.wrap(net, lambda n, xb, flips: n.train_logits(xb, flips))
    if d.active:  # the global RNG only draws MC-dropout's masks from here on: independent per rank
        torch.manual_seed(cfg.seed + 7919 * (d.rank + 1))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    # intensity augmentation draws from its own generator, one stream per rank: each rank
    # augments only its share of a batch, and `gen` (the permutation, flips, loss draws)
    # must stay identical on every rank
    aug_gen = torch.Generator().manual_seed(cfg.seed + 104729 * (d.rank + 1))
    history: list[dict] = []
    start = 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        st = torch.load(ckpt, map_location=device, weights_only=False)
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        if "aug_gen" in st and d.main:  # rank 0's stream (the checkpoint holds only rank 0's)
            aug_gen.set_state(st["aug_gen"])
        history, start = st["history"], st["epoch"]
    from tqdm import tqdm

    bar = tqdm(range(start, cfg.epochs), desc=cfg.method, disable=not (progress and d.main), initial=start, total=cfg.epochs)
    for epoch in bar:
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        tot, parts_sum, n = 0.0, {}, 0
        for b in range(steps_per_epoch):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            mine, sizes = d.share(idx)  # this rank's rows of the global batch (all of it in one process)
            xb, mb, vb = x[mine].to(device), m[idx].to(device), v[idx].to(device)
            # random flips, the same for the image (or its cached features) and all its rater masks
            flips = []
            if torch.rand((), generator=gen) < 0.5:
                flips.append(-1)
            if torch.rand((), generator=gen) < 0.5:
                flips.append(-2)
            if flips:
                mb = mb.flip(flips)
            extra = {}
            if cfg.intensity_augment > 0:
                xb, distorted, strength = augment_batch(xb, cfg.intensity_augment, aug_gen)
                if cfg.distortion_disagreement > 0:  # raised DGM target on distorted images (not in the paper)
                    extra["distortion"] = d.gather_rows(strength, sizes)
                    extra["distortion_disagreement"] = cfg.distortion_disagreement
                if cfg.dgm_clean_only:  # Eq. 1's DGM on the undistorted images only
                    extra["dgm_rows"] = d.gather_rows(distorted.to(torch.uint8), sizes) == 0  # (uint8: any backend)
            logits = d.gather_rows(step(xb, tuple(flips)), sizes)  # (B, ...) the global batch's outputs
            loss, parts = net.loss(logits, mb, vb, generator=gen, **extra)
            opt.zero_grad(set_to_none=True)
            (loss * d.world).backward()  # DDP averages over the W ranks
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
            for k, val in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + val * len(idx)
        rec = {"epoch": epoch + 1, "loss": tot / n, **{k: s / n for k, s in parts_sum.items()}}
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.4f}")
        if d.main:
            _save_atomic(
                {"model": net.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(),
                 "gen": gen.get_state(), "aug_gen": aug_gen.get_state(), "history": history,
                 "epoch": epoch + 1},
                ckpt,
            )
        if stop_after is not None and epoch + 1 >= stop_after:
            break
    return net, history


def train_model(args: LexuTrainOptions) -> Path:
    """Train ``args.method`` into ``args.out``; returns the model folder (``config.json``,
    ``weights.pt``, ``data.json`` with the held-out ``test_cases``, ``metrics.json``)."""
    import torch

    from clinloop.training import distributed, finished_model, resolve_device

    from clinloop.atomic import atomic_write_text
    from clinloop.data import load_dataset

    if args.method not in METHODS:
        raise ValueError(f"clinloop.training.lexu trains {', '.join(METHODS)}; got {args.method!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if finished_model(out, args.resume):
        return out
    d = distributed.init(args.device)
    device = resolve_device(distributed.device_for(d, args.device))  # a clear error for a device not here
    widths = (DEFAULT_WIDTHS[args.encoder] if args.widths is None
              else [int(w) for w in str(args.widths).split(",") if w.strip()])
    size = args.size if args.size is not None else (TINYVIT_SIZE if args.encoder == "tinyvit" else 96)
    opts = dataset_options(args)
    ds = load_dataset(args.data, format=args.format, **opts)
    split_seed = args.seed if args.split_seed is None else args.split_seed
    if args.official_split:
        from clinloop.data.splits import folder_split

        train_idx, test_idx = folder_split(ds)
    else:
        train_idx, test_idx = split_cases(ds, args.held_out_fraction, split_seed)
    if args.max_cases is not None and len(train_idx) > args.max_cases:
        rng = np.random.default_rng(args.seed)
        train_idx = sorted(rng.choice(train_idx, args.max_cases, replace=False).tolist())
    first = ds[train_idx[0]]
    if first.spatial_ndim != 2:
        raise ValueError(f"{args.data}: LEXU here is 2-D only; got {first.spatial_ndim}-D samples")
    cfg = LexuConfig(
        method=args.method, in_channels=3 if first.n_channels in (1, 3) else first.n_channels, widths=widths,
        encoder=args.encoder, alpha=args.alpha, beta=args.beta, n_members=args.members, dropout=args.dropout,
        mc_samples=args.mc_samples, size=size, structure=args.structure, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, crop=args.crop,
        normalisation="minmax" if args.encoder == "tinyvit" else "zscore", intensity_augment=args.intensity_augment,
        dgm_clean_only=args.dgm_clean_only, distortion_disagreement=args.distortion_disagreement,
    )
    if cfg.intensity_augment and cfg.encoder != "cnn":
        raise ValueError("--intensity-augment needs --encoder cnn (the TinyViT features are cached, not recomputed)")
    if cfg.dgm_clean_only and (cfg.method != "lexu" or not cfg.intensity_augment):
        raise ValueError("--dgm-clean-only needs --method lexu and --intensity-augment > 0")
    if cfg.distortion_disagreement:
        if cfg.method != "lexu" or not cfg.intensity_augment or cfg.dgm_clean_only:
            raise ValueError("--distortion-disagreement needs --method lexu and --intensity-augment > 0, "
                             "without --dgm-clean-only")
        if not 0 < cfg.distortion_disagreement <= 0.25:
            raise ValueError(f"--distortion-disagreement is a variance in (0, 0.25]; got {cfg.distortion_disagreement}")
    if not 0 <= cfg.intensity_augment <= 1:
        raise ValueError(f"--intensity-augment is a probability in [0, 1]; got {cfg.intensity_augment}")
    if cfg.method != "mc-dropout":
        cfg.dropout = 0.0
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    samples = [ds[i] for i in train_idx]
    x, m, v, kept = stack_samples(samples, cfg.size, cfg.in_channels, cfg.normalisation, cfg.crop)
    if d.main:
        print(f"{args.method}: {len(kept)} training images at {cfg.size}² ({len(test_idx)} cases held out)"
              + (f", {d.world} processes" if d.active else ""), file=sys.stderr)
    prev = {}
    if args.resume and (out / "data.json").is_file():
        prev = json.loads((out / "data.json").read_text())
    net, history = train(cfg, x, m, v, out, resume=args.resume, device=device, dist=d)
    if not d.main:  # rank 0 writes the model folder
        d.barrier()
        d.close(net)
        return out
    seconds = time.time() - t0 + float(prev.get("train_seconds", 0.0) if args.resume else 0.0)
    cfg.save(out)
    _save_atomic({k: t.cpu() for k, t in net.state_dict().items()}, out / "weights.pt")
    data = {
        "dataset": str(args.data),  # as given (no machine path unless the user gave one)
        "format": args.format or ds.format,
        "options": opts,
        "split": ({"method": "folder_split", "folders": ["Training", "Test"]} if args.official_split else
                  {"method": "split_by_patient", "fractions": [1 - args.held_out_fraction, args.held_out_fraction],
                   "seed": split_seed}),
        "train_cases": [ds.case_ids[i] for i in train_idx],
        "test_cases": [ds.case_ids[i] for i in test_idx],
        "n_train_images": len(kept),
        "command": command_line("train", args, skip=("resume",)),
        "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "processes": d.world,
    }
    atomic_write_text(out / "data.json", json.dumps(data, indent=2) + "\n")
    atomic_write_text(out / "metrics.json", json.dumps({"history": history}, indent=1) + "\n")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    print(f"wrote {out} ({seconds:.0f} s)", file=sys.stderr)
    d.barrier()
    d.close(net)
    return out
