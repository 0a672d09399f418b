"""SPA training, spa.txt Algorithm 1 (and MedUHIP's alternating variant).

Per training image x (one "training update" t of Alg. 1):

    y   = spa_weighted_fusion(rater masks)            per-step ground truth (spa.txt §3.5)
    r_u = a random ground-truth point                  (§3.5)
    for j = 1..MAX_USER_ITERATIONS (= 6):
        e_u = E_I(r_u)
        GenMask #1 (ori):  y_app^ori      -> L(y_app^ori, y) updates (mu, sigma) only
        E-step:            pi^gt           -> MSE(pi, pi^gt) updates the pi head only
        GenMask #2 (gmm):  y_app^gmm      -> L(y_app^gmm, y) updates the segmentation
                                              model (conditioning, decoder) and E_I
        GenMask #3 (fin):  {y_n^fin}      -> K-means candidates r_k; the simulated
                                              user picks r_u = argmin_k ||r_k - y||
        r_u becomes the mask prompt (the first click is kept as a point prompt)

Readings and deviations (all also in the config / data.json):

* Loss L: y_app = 1[mean y_n > 0.5] has no gradient; we use BCE + soft Dice
  between the mean sample probability mean_n sigmoid(logit_n) and y.
* Multi-hypothesis term (deviation, ``--wta-weight``; 0 = the paper's loss
  only): L(y_app, y) alone is minimised by making every sample y_n the mean,
  so the latents collapse (the first shipped spa-lidc had K identical
  candidates and no gain over iterations). We add lambda * the relaxed
  winner-takes-all loss of :func:`best_of_n_loss` (Rupprecht et al. 2017)
  against one randomly drawn non-empty rater y_r, to both the (mu, sigma) and
  the segmentation updates, so different latents learn different raters'
  styles and the E-step pi^gt / the user's choice have something to pick from.
* The simulated choice: Alg. 1 writes ``argmin ||r_k - y_app^fin||``, which
  holds no information about the target (the model's own aggregate); §3.5 and
  Table 2 need the user to steer towards *their* y, so we pick the candidate
  closest to y.
* pi^gt: the E-step responsibilities of the sampled latents weighted by how
  well their masks match y (see ``preference_distribution.estep_target``).
* The image encoder is frozen; embeddings come from the on-disk cache.
  With ``--finetune-encoder`` (meant for GPU runs) the TinyViT encoder is
  trained with the segmentation update at its own lr (``--encoder-lr``): the
  cases hold the preprocessed images, each user iteration runs the encoder
  once (e_x with gradient for GenMask #2, detached for #1, the E-step and #3),
  the encoder's normalisation layers stay in eval mode, and ``weights.pt``
  includes the encoder (``load_model`` uses it).
* MedUHIP (``meduhip``): the Sampling Net step updates (mu, sigma), pi *and*
  the prompt encoder with the segmentation net frozen (meduhip.txt Eq. 6-7);
  the segmentation step updates only the segmentation net (Eq. 3).
* CPU budget: fewer samples in training (``--train-samples 8``) than at
  inference (48), a few hundred LIDC slices.

Training steps (``--episodes-per-step B``, default 1 = Alg. 1: one image per
step): a step runs B episodes (images) in lockstep; each of the three updates of
every user iteration (mean/variance, pi, segmentation) is one optimiser step on
the gradient of the mean of the B episodes' losses, while the targets, clicks,
latent draws, candidates and simulated choices stay per episode (see
``SPATrainer.train_step``). ``--steps``, ``--step-size`` and ``--save-every``
count training steps. Episode ``e = step * B + b`` takes case ``order[e]`` of a
seeded permutation sequence and its own RNGs seeded from (seed, e), so under
``torchrun`` / ``--nproc W`` (each rank runs B/W episodes of every step,
gradients summed across ranks, rank 0 alone logs, checkpoints and writes the
model folder) training equals the one-process run with the same B up to
floating-point summation order (:mod:`clinloop.training.spa_loop`).

Optimisers: Adam(lr 1e-4) per parameter group, StepLR(step_size, gamma).
Checkpoints (``checkpoint.pt``) every ``--save-every`` steps; ``--resume``
continues (with the same ``--episodes-per-step``). An ``--out`` holding a trained model
is refused without ``--resume`` (:func:`clinloop.training.finished_model`); with it, a
model whose checkpoint is at ``--steps`` is left as it is. Library entry:
:func:`train_model` with :class:`SPATrainOptions`
(``clinloop.train("spa", data, out, **options)``); the trainer object and the
losses live in :mod:`clinloop.training.spa_trainer`. The model folder gets ``config.json``, ``weights.pt``,
``data.json`` (data, split, command, time) and ``train_log.csv``.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from clinloop.config_options import TrainOptions, command_line, opt
from clinloop.training.spa_mix import MIXES
from clinloop.training.spa_warmstart import check_init_split, inference_settings
from clinloop.training.spa_trainer import (  # noqa: F401  (public names of this module)
    MAX_USER_ITERATIONS,
    WARM_START_SHARED,
    SPATrainer,
    TrainCase,
    best_of_n_loss,
    mean_pairwise_dice,
    per_sample_loss,
    prepare_cases,
    sample_dice,
    soft_loss,
    train,
    warm_start,
)

METHODS = ("spa", "meduhip", "spa-random-gmm", "spa-mean-variance", "spa-weights")


@dataclass(kw_only=True)
class SPATrainOptions(TrainOptions):
    """``clinloop train --method {spa,meduhip,spa-random-gmm,spa-mean-variance,spa-weights}``."""

    steps: int = opt(300, help="training steps, each of --episodes-per-step training images (episodes of "
                               "--user-iterations user iterations); 0 only with --init (its weights written as "
                               "they are)")
    episodes_per_step: int = opt(1, help="B: episodes (images) whose gradients are averaged in each optimiser "
                                         "update (the global batch; 1 = Alg. 1, one image per step); under "
                                         "torchrun / --nproc W each process runs B/W of them")
    train_samples: int = opt(8, help="N latents per GenMask in training")
    samples: int = opt(48, help="N at inference (saved in the config)")
    latent_dim: int | None = opt(None, help="D (default 8, or --init's)")
    cond_width: int | None = opt(None, help="conditioning width (default 32, or --init's)")
    path: str | None = opt(None, choices=("tail", "embedding"), help="default tail, or --init's")
    init: str | None = opt(None, metavar="MODEL_DIR",
                           help="warm start: load the prompt encoder, mask decoder and conditioning (and the "
                                "preference-distribution module when its method is --method) from an SPA model "
                                "folder or shipped name, e.g. spa-lidc; the architecture follows that folder")
    freeze_decoder: bool = opt(False, help="keep the LiteMedSAM prompt encoder/decoder frozen")
    lr: float = opt(1e-4, help="Adam lr (paper: 1e-4)", above=0)
    finetune_encoder: bool = opt(False, help="train the TinyViT image encoder too (no embedding cache; for GPU "
                                             "runs; weights.pt holds it)")
    encoder_lr: float = opt(1e-5, help="lr of the image encoder with --finetune-encoder", above=0)
    lr_new: float | None = opt(None, help="lr of the freshly initialised modules (default --lr)", above=0)
    user_iterations: int = opt(MAX_USER_ITERATIONS, help="simulated user iterations per image (Alg. 1: 6)")
    wta_weight: float = opt(1.0, help="weight of the relaxed winner-takes-all term (best_of_n_loss; 0 = paper loss only)")
    wta_relax: float = opt(0.05, help="relaxed-WTA weight on the non-best samples")
    time_budget: float | None = opt(None, help="stop after this many seconds of training")
    step_size: int = opt(1000, help="StepLR step (training steps; = images with --episodes-per-step 1)", at_least=1)
    gamma: float = opt(0.5)
    max_cases: int = opt(300, help="training slices (per-nodule middle slices)", at_least=1)
    per_nodule: int = opt(2, at_least=1)
    held_out_fraction: float = opt(0.2, flags=("--val-fraction",),
                                   help="share of the patients held back for validation (split by patient count)")
    split_seed: int | None = opt(None, help="seed of the patient split (default: --seed); fix it to compare "
                                            "training seeds on the same held-back patients (evaluate --split-seed)")
    mix: str | None = opt(None, choices=tuple(MIXES),
                          help="train on several datasets at once: --data is then the data root and the named "
                               "recipe (clinloop.training.spa_mix) picks the datasets, slices and shares")
    click_prob: float = opt(0.0, help="share of the user iterations after the first that are corrective clicks "
                                      "on the current mask instead of candidate choices (spa_corrective)")
    box_prob: float = opt(0.0, help="share of the episodes whose first interaction is a box instead of a click")
    click_weight: float = opt(0.0, help="weight of the clicked-pixel BCE term (spa_corrective.click_term)")
    propagation_prob: float = opt(0.0, help="with --mix: 3-D sources' slices carry their neighbours' masks and "
                                            "each volume adds its end slices (target empty); this share of those "
                                            "slices' episodes starts from a neighbour's box, as a volume session "
                                            "prompts the next slice (spa_corrective.propagation_box; measured to make "
                                            "volume sessions stop early: docs/methods/spa.md)")
    propagation_ends: int = opt(3, help="with --propagation-prob: copies of each volume's two end slices (target "
                                        "empty, prompted by the end slice's box) among the cases; 0: none")
    propagation_shrink: float = opt(0.0, help="with --propagation-prob: each side of a neighbour's box may also "
                                              "move inwards by up to this share of its side (a session's own "
                                              "previous mask is often smaller than the structure)")
    exclude_rater: int | None = opt(None, help="leave rater R (0-based) out of training (leave-one-rater-out, "
                                               "spa.txt §4.3.2): its masks count as missing; slices left without "
                                               "a drawn mask are skipped")
    structure_tokens: bool = opt(False, help="learn a token per structure of the training data (the readers' "
                                             "structure names; clinloop.models.spa.structure): one set of weights "
                                             "told which structure it segments. A continuation of a model with "
                                             "tokens keeps them")
    structure_drop: float = opt(0.2, help="share of the episodes trained without their structure token (the generic "
                                          "answer for structures the model has no token for)")
    structure_lr: float = opt(1e-3, help="Adam lr of the structure tokens and adapters (zero-initialised)")
    structure_rank: int = opt(0, help="with structure tokens: also a rank-R change of the mask decoder's linear "
                                      "layers per structure (LoRA; clinloop.models.spa.adapters); 0: none. A "
                                      "continuation of a model with adapters keeps them (and their rank)")
    structure_only: bool = opt(False, help="train only the structure tokens and adapters; the shared weights stay "
                                           "the init's, so the generic answer and structures without a token do "
                                           "not change (--structure-drop is then ignored)")
    save_every: int = opt(25, help="checkpoint every this many training steps", at_least=1)
    threads: int | None = opt(None, at_least=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 0 or (self.steps == 0 and not self.init):
            raise ValueError(f"--steps must be >= 1 (0 only with --init), got {self.steps}")


OPTIONS = SPATrainOptions


def exclude_rater(cases: list, rater: int) -> list:
    """Leave-one-rater-out (spa.txt §4.3.2): copies of the training cases with ``rater`` marked missing
    (``valid[rater] = False``, so neither the fused target nor the WTA term sees it), keeping the
    cases where another valid rater drew something; ``cases`` are left as they were."""
    out = []
    for c in cases:
        if not 0 <= rater < len(c.valid):
            raise ValueError(f"--exclude-rater {rater}: case {c.case_id} has raters 0..{len(c.valid) - 1}")
        valid = c.valid.copy()
        valid[rater] = False
        if c.masks[valid].any():
            out.append(replace(c, valid=valid))
    return out


def add_structure_tokens(net, cases) -> bool:
    """Give ``net`` a structure token per structure of ``cases`` (``--structure-tokens``), in the
    order they first appear; a net that has tokens (from ``--init``) must already know every one.
    Returns whether a fresh token table was added."""
    from clinloop.models.spa.structure import StructureToken, normalise_structure

    names: dict[str, str] = {}
    for c in cases:
        if c.structure is not None and normalise_structure(c.structure):
            names.setdefault(normalise_structure(c.structure), str(c.structure))
    if not names:
        raise ValueError("--structure-tokens: the training data names no structure (MultiRaterSample.structure)")
    if net.structure is not None:
        unknown = sorted(k for k in names if not net.structure.index(k))
        if unknown:
            raise ValueError(f"--structure-tokens: --init's tokens ({', '.join(net.config.structures)}) lack "
                             f"{', '.join(unknown)}; continue on data of those structures or start a new token table")
        return False
    net.config.structures = list(names.values())
    net.structure = StructureToken(net.config.structures, net.channels)
    return True


def add_structure_adapters(net, rank: int) -> bool:
    """Give ``net`` (which has structure tokens) rank-``rank`` decoder adapters per structure
    (``--structure-rank``); a net that has adapters (from ``--init``) must have that rank.
    Returns whether fresh adapters were added."""
    from clinloop.models.spa.adapters import StructureAdapters

    if net.structure is None:
        raise ValueError("--structure-rank needs structure tokens (--structure-tokens, or an --init that has them)")
    if net.structure_adapters is not None:
        if net.config.structure_rank != rank:
            raise ValueError(f"--structure-rank {rank}: --init's adapters have rank {net.config.structure_rank}")
        return False
    net.config.structure_rank = int(rank)
    net.structure_adapters = StructureAdapters(net.backbone.mask_decoder, len(net.config.structures), rank)
    return True


def train_model(o: SPATrainOptions) -> Path:
    """Train an SPA-family model into ``o.out``; returns the model folder.

    The folder gets ``config.json``, ``weights.pt``, ``data.json`` (data as given,
    the patient split, options, the reproducing command) and ``train_log.csv``."""
    from clinloop.data import load_dataset
    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.spa.config import SPAConfig
    from clinloop.models.spa.model import SPANet, save_spa
    from clinloop.training import distributed, finished_model, resolve_device
    from clinloop.training.spa_data import no_cases_error, select_cases

    if o.method not in METHODS:
        raise ValueError(f"clinloop.training.spa trains {', '.join(METHODS)}; got {o.method!r}")
    if o.propagation_prob > 0 and not o.mix:
        raise ValueError("--propagation-prob needs --mix (its propagation episodes come from the mix's 3-D sources)")
    if o.propagation_ends < 0:
        raise ValueError(f"--propagation-ends must be >= 0 (copies of each end slice), got {o.propagation_ends}")
    if not 0 <= o.propagation_shrink < 0.5:
        raise ValueError(f"--propagation-shrink must be in 0 .. 0.5 (a share of the box's side), "
                         f"got {o.propagation_shrink}")
    if o.episodes_per_step < 1:
        raise ValueError(f"--episodes-per-step must be >= 1, got {o.episodes_per_step}")
    out = Path(o.out)
    if finished_model(out, o.resume):  # a trained model is never overwritten; --resume of a finished one: no-op
        return out
    d = distributed.init(o.device)
    device = resolve_device(distributed.device_for(d, o.device))
    if o.threads:
        torch.set_num_threads(o.threads)
    torch.manual_seed(o.seed)
    split_seed = o.seed if o.split_seed is None else o.split_seed
    if o.init:  # before any work: a continuation keeps its init's held-back patients
        check_init_split(o.init, split_seed, explicit=o.split_seed is not None)
    arch = {"latent_dim": 8, "cond_width": 32, "path": "tail"}
    kept: dict = {}
    if o.init:
        from clinloop.models import registry

        src = SPAConfig.load(registry.resolve_model_dir(o.init) / "config.json")
        if src.expert_rank:  # extracted from a specialist (clinloop.training.spa_experts), not trainable
            raise ValueError(f"--init {o.init} holds a structure expert (expert_rank {src.expert_rank}), which is "
                             "extracted, not trained: continue its general model and run extract-expert again")
        arch = {"n_components": src.n_components, "latent_dim": src.latent_dim, "cond_width": src.cond_width,
                "path": src.path, "pdg_hidden": src.pdg_hidden}
        kept = inference_settings(src)  # the init's click constraint and zoom
        if src.structures:  # a continuation keeps the init's structure tokens (and adapters)
            kept["structures"] = list(src.structures)
            kept["structure_rank"] = src.structure_rank
    for f in ("latent_dim", "cond_width", "path"):
        v = getattr(o, f)
        if v is not None and o.init and v != arch[f]:
            raise ValueError(f"--{f.replace('_', '-')} {v!r} differs from --init's {arch[f]!r}")
        if v is not None:
            arch[f] = v
    cfg = SPAConfig(method=o.method, n_samples=o.samples, finetune_decoder=not o.freeze_decoder,
                    finetune_encoder=o.finetune_encoder, seed=o.seed, **arch, **kept)
    backbone = build_litemedsam(True)
    net = SPANet(cfg, backbone)
    init_info = warm_start(net, o.init) if o.init else None
    t0 = time.time()
    if o.mix:  # several datasets under the root --data (spa_mix)
        from clinloop.training.spa_mix import mixed_cases

        if o.exclude_rater is not None:
            raise ValueError("--exclude-rater needs one dataset's raters; it cannot be combined with --mix")
        if o.finetune_encoder:
            raise ValueError("--mix trains on cached embeddings; it cannot be combined with --finetune-encoder")
        cases, sources = mixed_cases(o.data, o.mix, backbone, seed=split_seed, progress=d.main,
                                     propagation=o.propagation_prob > 0, end_repeat=o.propagation_ends)
        data_info = {"format": "mix", "mix": o.mix, "sources": sources,
                     "split": {"kind": "patients per source", "seed": split_seed, "train_cases": len(
                         {c.case_id for c in cases})},
                     "train_case_ids": sorted({c.case_id for c in cases}),
                     "train_patient_ids": sorted({p for r in sources.values() for p in r["train_patient_ids"]})}
    else:
        ds = load_dataset(o.data, o.format)
        idx = select_cases(ds, "train", limit=o.max_cases, val_fraction=o.held_out_fraction, seed=split_seed,
                           per_group=o.per_nodule)
        if not idx:
            raise no_cases_error(ds, "train", "SPA training")
        cases = prepare_cases(ds, idx, backbone, progress=d.main, keep_images=o.finetune_encoder)  # embeddings (cache)
        if o.exclude_rater is not None:
            cases = exclude_rater(cases, o.exclude_rater)
        data_info = {"format": ds.format if hasattr(ds, "format") else o.format,
                     "split": {"kind": "patients", "val_fraction": o.held_out_fraction, "seed": split_seed,
                               "train_cases": len(cases), "per_nodule": o.per_nodule},
                     "train_case_ids": [c.case_id for c in cases], "excluded_rater": o.exclude_rater}
    if o.structure_tokens:
        added = add_structure_tokens(net, cases)
        if init_info is not None and added:
            init_info["fresh"] = list(init_info["fresh"]) + ["structure"]
    if o.structure_rank < 0:
        raise ValueError(f"--structure-rank must be >= 0, got {o.structure_rank}")
    if o.structure_rank and add_structure_adapters(net, o.structure_rank) and init_info is not None:
        init_info["fresh"] = list(init_info["fresh"]) + ["structure_adapters"]
    if o.structure_only and net.structure is None:
        raise ValueError("--structure-only needs structure tokens (--structure-tokens, or an --init that has them)")
    net.to(device)
    trainer = SPATrainer(net, lr=o.lr, step_size=o.step_size, gamma=o.gamma, n_samples=o.train_samples,
                         seed=o.seed, lr_new=o.lr_new, user_iterations=o.user_iterations,
                         wta_weight=o.wta_weight, wta_relax=o.wta_relax,
                         fresh=("conditioning", "variant") if init_info is None else tuple(init_info["fresh"]),
                         encoder_lr=o.encoder_lr, episodes_per_step=o.episodes_per_step,
                         click_prob=o.click_prob, box_prob=o.box_prob, click_weight=o.click_weight,
                         propagation_prob=o.propagation_prob, propagation_shrink=o.propagation_shrink,
                         structure_drop=o.structure_drop, structure_lr=o.structure_lr,
                         structure_only=o.structure_only)
    ck = out / "checkpoint.pt"
    if o.resume and ck.is_file():
        trainer.load_state(torch.load(ck, map_location="cpu", weights_only=False))
        if d.main:
            print(f"resumed from {ck} at step {trainer.step}", file=sys.stderr)
        written = json.loads((out / "data.json").read_text()).get("steps") if (out / "data.json").is_file() else None
        if trainer.step >= o.steps and written == trainer.step:  # the model folder is this checkpoint's
            if d.main:
                print(f"{out}: training already finished (step {trainer.step} of --steps {o.steps}); nothing to "
                      "resume", file=sys.stderr)
            d.close()
            return out
    t1 = time.time()
    rows = train(trainer, cases, o.steps, out, save_every=o.save_every, seed=o.seed, time_budget=o.time_budget,
                 dist=d)
    t2 = time.time()
    if not d.main:  # rank 0 writes the model folder
        d.barrier()
        d.close()
        return out
    info = {
        "method": o.method, "data": str(o.data), **data_info,
        "click_prob": o.click_prob, "box_prob": o.box_prob, "click_weight": o.click_weight,
        "propagation_prob": o.propagation_prob, "propagation_ends": o.propagation_ends,
        "propagation_shrink": o.propagation_shrink,
        "structures": list(net.config.structures), "structure_drop": o.structure_drop if net.config.structures
        else None, "structure_lr": o.structure_lr if net.config.structures else None,
        "structure_rank": net.config.structure_rank, "structure_only": o.structure_only,
        "init": init_info, "time_budget": o.time_budget,
        "finetune_encoder": o.finetune_encoder, "encoder_lr": o.encoder_lr if o.finetune_encoder else None,
        "steps": trainer.step, "steps_requested": o.steps, "lr_new": o.lr_new,
        "episodes_per_step": o.episodes_per_step, "processes": d.world,
        "user_iterations": o.user_iterations, "wta_weight": o.wta_weight, "wta_relax": o.wta_relax,
        "train_samples": o.train_samples, "lr": o.lr, "step_size": o.step_size,
        "gamma": o.gamma, "max_user_iterations": MAX_USER_ITERATIONS,
        "seconds_prepare": round(t1 - t0, 1), "seconds_train": round(t2 - t1, 1),
        "torch_threads": torch.get_num_threads(), "device": str(device),
        "command": command_line("train", o),
        "last_rows": rows[-5:],
    }
    save_spa(net.to("cpu"), out, extra=info)
    print(json.dumps({k: info[k] for k in ("steps", "seconds_train")}))
    d.barrier()
    d.close()
    return out
