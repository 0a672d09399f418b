"""Resumable trainings of the MECCA volume models: ``pnet-``, ``interactive-cnn-``,
``mecca-no-confidence-`` and ``mecca-`` ``brats`` / ``atrium`` (issue 14).

    OMP_NUM_THREADS=2 python benchmarks/mecca_train_volumes.py --task brats --model pnet --out-root models
    OMP_NUM_THREADS=2 python benchmarks/mecca_train_volumes.py --task brats --model all --out-root models
    python benchmarks/mecca_train_volumes.py --task atrium --model mecca --print    # the command only

Each model is one ``clinloop train`` command (printed with ``--print``); this script
runs it in chunks of ``--chunk-minutes`` (``--max-minutes`` of each call) and re-runs it
with ``--resume`` until the model has done all its iterations (the trainer keeps
``checkpoint.pt`` while iterations remain and writes the model folder after every
chunk, so an interrupted run continues where its last checkpoint was: checkpoints
are written every 50 iterations, every 5 minutes and when a chunk ends). The
interactive models start from the P-Net's prediction (``--init-model``), so
``pnet`` is trained first (``--model all`` does the order; an interactive model trains
the P-Nets it needs first when their folders are missing or unfinished).
``interactive-cnn-atrium`` is trained from the earlier dilated P-Net (``pnet-dilated``,
``TASKS["atrium"]["starts"]``) into ``interactive-cnn-atrium-pnet-dilated`` and then
swapped to ``pnet-atrium`` (:func:`clinloop.training.mecca_swap.swap_pnet`), as the
shipped one was; the atrium's ``mecca`` and ``mecca-no-confidence`` are the chain that made the
shipped pair (``TASKS["atrium"]["chains"]``: stages ``<model>-atrium-stage1``, ``-stage2``, then the
model folder, each warm-started from the one before; a finished stage is kept, so the command resumes
a chain wherever it stopped).

Budgets: ``ITERATIONS`` holds, per shipped model, the iterations it was trained for
(so this script reproduces it; measured on 1 thread of the 2-core machine: a BraTS
P-Net iteration ~1.9 s, an atrium one ~2.6 s, a BraTS RL or interactive-cnn
iteration ~4 s on its 24x32x32 crops). Models not shipped yet keep the earlier estimates for about
two hours on 2 threads. ``--tiny`` runs 4 iterations in chunks of 3 seconds, to
check that a run starts, checkpoints and resumes. Evaluate afterwards with
``clinloop evaluate --protocol mecca --mode compare --data DATA --method mecca
--methods mecca,mecca-no-confidence,interactive-cnn,pnet --method-model mecca=DIR ...``.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

TASKS = {
    # zoom 4 = 4 mm voxels (resolution ceiling: Dice 0.94); crop covers the largest tumour
    # crops cut at random offsets (--crop-jitter): on label-centred crops alone the P-Net learnt
    # the border distance and failed on whole volumes (docs/methods/mecca.md)
    # the interactive models train on smaller crops (rl_crop): an RL or interactive-cnn iteration
    # (T = 5 steps) costs ~15 s on 1 thread at 32x48x48, ~3x less at 24x32x32
    "brats": {"data": "../shared/data/brats2018_flair", "zoom": 4, "norm": "nonzero", "crop": "32,48,48",
              "rl_crop": "24,32,32", "jitter": 8, "held_out_fraction": 0.25, "val_cases": 2},
    # zoom 3 = 1.9 mm voxels (resolution ceiling: Dice 0.99)
    # the interactive models: smaller crops at random offsets (their P-Net, the one before 2026-12-05, was not)
    # the P-Net, too, on crops at random offsets since 2026-12-05 (0.753 -> 0.803 on whole held-back volumes)
    # its prediction averaged over flips and kept to its largest component (one object; inference only,
    # the interactive models take it over as p^(0): clinloop.models.mecca.pnet_inference)
    # since 2026-12-05 (stop 44) the P-Net is a U-Net with instance norm, width 12 (--pnet-arch unet;
    # 0.820 -> 0.878 on whole held-back volumes; clinloop.models.mecca.unet); mecca and its ablation were then
    # fine-tuned on it (docs/methods/mecca.md, "A U-Net as the atrium's P-Net")
    # rl_recipe: the fine-tune's recipe on the U-Net's start: p^(0) the P-Net's probability (no --init-mask),
    # training rollouts that move only agents within --click-reach of the clicks, balanced there
    # (--reach-rollouts --reach-balance reach), no --pnet-boundary; from scratch for 1,200 iterations (stops
    # 46-47) it ended at held-back Dice@5 .8800 (ablation .8801) and was not shipped
    "atrium": {"data": "../shared/data/left_atrium", "zoom": 3, "norm": "image", "crop": "32,48,64",
               "jitter": 8, "rl_crop": "24,32,48", "rl_jitter": 8, "held_out_fraction": 0.2, "val_cases": 6,
               "pnet_extra": ["--flip-average", "--one-component", "--pnet-arch", "unet"], "pnet_width": 12,
               "starts": {"interactive-cnn": "pnet-dilated"},  # trained from that P-Net, then swapped to pnet
               "rl_recipe": {"init_mask": False, "add": ["--reach-rollouts", "--reach-balance", "reach"],
                             "drop": ["--pnet-boundary"]},
               # the chain that made the shipped pair (stop 47; the models' data.json and docs/methods/mecca.md):
               # 1,200 iterations from the mask of the dilated P-Net of stop 40 (every agent acting), then the
               # rl_recipe from the U-Net's probability, warm-started from the stage before: 300 iterations
               # (135 + 165 resumed), 150 more with a fresh optimiser
               "chains": {m: [{"start": "pnet-dilated-j8", "iterations": 1200, "recipe": False},
                              {"iterations": 300}, {"iterations": 150}]
                          for m in ("mecca", "mecca-no-confidence")}},
}
MODELS = {
    "pnet": {"method": "mecca-unet", "lr": 1e-3, "batch": 4, "iterations": 3000, "extra": ["--seg-loss", "bce-dice"]},
    # --click-reach 3 (the interactive models): at inference only agents within 3 working-grid voxels of a
    # click move (MECCAConfig.click_reach); --pnet-boundary: agents still at p^(0) show the P-Net's probability
    # (MECCAConfig.pnet_boundary); both inference only, the training is the same; docs/methods/mecca.md
    "interactive-cnn": {"method": "interactive-cnn", "lr": 1e-3, "batch": 4, "iterations": 1500, "init": True,
                        "extra": ["--seg-loss", "bce-dice", "--click-reach", "3", "--pnet-boundary"]},
    # --confidence-gate 0.5: at inference an agent whose action has C(s,a) < 0.5 keeps its probability
    # (gate_actions; inference only, the training is the same; docs/methods/mecca.md)
    "mecca-no-confidence": {"method": "mecca-no-confidence", "lr": 1e-4, "batch": 2, "iterations": 1200, "init": True,
                            "rl": True,
                            "extra": ["--balance-confidence", "--confidence-gate", "0.5", "--click-reach", "3",
                                      "--pnet-boundary"]},
    "mecca": {"method": "mecca", "lr": 1e-4, "batch": 2, "iterations": 1200, "init": True, "rl": True,
              "extra": ["--balance-confidence", "--confidence-gate", "0.5", "--click-reach", "3", "--pnet-boundary"]},
}
# the dilated P-Net that interactive-cnn-atrium was trained from (before 2026-12-05: crops at the label, 1,327
# iterations), trained only as that model's start (TASKS "starts"); the shipped one then swaps to pnet-atrium
MODELS["pnet-dilated"] = {**MODELS["pnet"], "jitter": 0, "width": 16}
# the dilated P-Net the shipped atrium RL pair's chain starts from (stop 40: crops at random offsets, 1,664 it.)
MODELS["pnet-dilated-j8"] = {**MODELS["pnet"], "width": 16}
STARTS = ("pnet-dilated", "pnet-dilated-j8")  # P-Nets trained only as a start of interactive models
ORDER = ("pnet", *STARTS, "interactive-cnn", "mecca-no-confidence", "mecca")
# iterations of the shipped models (the run ended by its time budget there; this count reproduces it)
ITERATIONS = {("brats", "pnet"): 789, ("atrium", "pnet"): 2000, ("brats", "interactive-cnn"): 500,
              ("atrium", "interactive-cnn"): 500, ("atrium", "pnet-dilated"): 1327,
              ("atrium", "pnet-dilated-j8"): 1664}


def stages(task: str, model: str) -> list[dict]:
    """The trainings that make ``<model>-<task>``: its chain (``TASKS[task]["chains"]``; each stage
    warm-started from the one before) or one stage."""
    return TASKS[task].get("chains", {}).get(model, [{}])


def start_of(task: str, model: str, stage: int = -1) -> str | None:
    """The P-Net an interactive model (or its chain's ``stage``) is trained from (``pnet`` unless the stage or
    ``TASKS[task]["starts"]`` names another; None for the P-Nets)."""
    if not MODELS[model].get("init"):
        return None
    return stages(task, model)[stage].get("start") or TASKS[task].get("starts", {}).get(model, "pnet")


def trained_folder(task: str, model: str, out_root: Path, stage: int = -1) -> Path:
    """Where ``model`` (or its chain's ``stage``) trains: ``<model>-<task>``, ``<model>-<task>-<start>`` when it
    starts from another P-Net than ``pnet`` (the model folder ``<model>-<task>`` is then that one swapped to
    ``pnet``), ``<model>-<task>-stage<k>`` for a chain's stages before its last."""
    n = len(stages(task, model))
    if stage % n != n - 1:
        return out_root / f"{model}-{task}-stage{stage % n + 1}"
    start = start_of(task, model, stage)
    return out_root / (f"{model}-{task}" if start in (None, "pnet") else f"{model}-{task}-{start}")


def command(task: str, model: str, out_root: Path, threads: int, chunk_minutes: float, tiny: bool,
            hint_sigma: float | None = None, stage: int = -1) -> list[str]:
    """The ``clinloop train`` command of ``<model>-<task>`` or its chain's ``stage`` (one chunk; add
    ``--resume`` to continue)."""
    t, m = TASKS[task], MODELS[model]
    used = {*t.get("starts", {}).values(), *(st.get("start") for c in t.get("chains", {}).values() for st in c)}
    if model not in ORDER or (model in STARTS and model not in used):
        raise ValueError(f"{task} has no model {model!r}")
    chain = stages(task, model)
    stage %= len(chain)  # -1: the last (the model folder)
    st = chain[stage]
    recipe = t.get("rl_recipe", {}) if m.get("rl") and st.get("recipe", True) else {}
    iterations = st.get("iterations", ITERATIONS.get((task, model), m["iterations"]))
    extra = [x for x in m["extra"] if x not in recipe.get("drop", ())] + recipe.get("add", [])
    cmd = ["clinloop", "train", "--method", m["method"], "--data", t["data"], "--ndim", "3",
           "--zoom", str(t["zoom"]), "--norm", t["norm"],
           "--crop", t.get("rl_crop", t["crop"]) if m.get("init") else t["crop"], "--size", "0",
           "--held-out-fraction", str(t["held_out_fraction"]), "--val-cases", "1" if tiny else str(t["val_cases"]),
           "--width", str(m.get("width", t.get("pnet_width", 16) if model == "pnet" else 16)), "--downsample", "1",
           "--lr", str(m["lr"]), "--batch", str(m["batch"]),
           "--iterations", "4" if tiny else str(iterations),
           "--max-minutes", str(chunk_minutes),
           "--threads", str(threads), "--seed", "0", "--out", str(trained_folder(task, model, out_root, stage)),
           "--augment", *extra]
    jitter = t.get("rl_jitter", t.get("jitter")) if m.get("init") else m.get("jitter", t.get("jitter"))
    if jitter:
        cmd += ["--crop-jitter", str(jitter)]
    if model == "pnet":
        cmd += t.get("pnet_extra", [])
    if m.get("init"):  # p^(0) = the P-Net's mask (--init-mask; else its probability): agents already right can stay
        cmd += ["--init-model", str(out_root / f"{start_of(task, model, stage)}-{task}")]
        cmd += ["--init-mask"] if recipe.get("init_mask", True) else []
        if stage:  # a chain's later stage: warm-started from the stage before
            cmd += ["--warm-start", str(trained_folder(task, model, out_root, stage - 1))]
        if hint_sigma is not None:  # the hint map's click radius (working-grid voxels; default 2)
            cmd += ["--hint-sigma", str(hint_sigma)]
    return cmd


def run_resumable(cmd: list[str], folder: Path, max_chunks: int) -> int:
    """Run ``cmd`` and re-run it with ``--resume`` while ``folder/checkpoint.pt`` exists."""
    exe = [sys.executable, "-c", "import sys; from clinloop.cli import main; sys.exit(main())"] + cmd[1:]
    for k in range(max_chunks):
        t0 = time.time()
        # --resume also on the first chunk: a checkpoint left by an interrupted call continues
        rc = subprocess.call(exe + (["--resume"] if (folder / "checkpoint.pt").is_file() else []))
        if rc != 0:
            print(f"chunk {k + 1}: failed (rc {rc}) after {time.time() - t0:.0f} s", flush=True)
            return rc
        print(f"chunk {k + 1}: {time.time() - t0:.0f} s, checkpoint "
              f"{'kept' if (folder / 'checkpoint.pt').is_file() else 'gone (finished)'}", flush=True)
        if not (folder / "checkpoint.pt").is_file():
            return 0
    print(f"stopped after {max_chunks} chunks; continue with the same command", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--model", choices=(*ORDER, "all"), required=True,
                   help="pnet-dilated, pnet-dilated-j8: atrium only, starts of interactive-cnn and of the RL "
                        "pair's chain (trained by them when missing)")
    p.add_argument("--out-root", default="models")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunk-minutes", type=float, default=30.0)
    p.add_argument("--max-chunks", type=int, default=8)
    p.add_argument("--tiny", action="store_true", help="4 iterations in 3-second chunks: checks start/checkpoint/resume")
    p.add_argument("--print", action="store_true", help="print the command(s) only")
    p.add_argument("--hint-sigma", type=float, default=None,
                   help="interactive models: the hint map's click radius in working-grid voxels (default: 2)")
    a = p.parse_args(argv)
    out_root = Path(a.out_root)
    chunk = 0.05 if a.tiny else a.chunk_minutes
    models = [m for m in ORDER if m not in STARTS] if a.model == "all" else [a.model]
    for model in models:
        starts = {start_of(a.task, model, k) for k in range(len(stages(a.task, model)))} - {None}
        for first in [] if not starts or a.print else sorted(starts | {"pnet"}, key=ORDER.index):
            done = out_root / f"{first}-{a.task}"  # the P-Nets it needs (its start, pnet for the swap)
            if (done / "config.json").is_file() and not (done / "checkpoint.pt").is_file():
                continue
            rc = run_model(a, first, out_root, chunk)  # trained first when missing or unfinished
            if rc:
                return rc
        rc = run_model(a, model, out_root, chunk)
        if rc:
            return rc
    return 0


def run_model(a, model: str, out_root: Path, chunk: float) -> int:
    """Train (or print) ``model``: its chain's stages in turn (a finished one is kept), the last one into the model
    folder; one that starts from another P-Net is then swapped to ``pnet``."""
    n = len(stages(a.task, model))
    for k in range(n - 1):
        cmd = command(a.task, model, out_root, a.threads, chunk, a.tiny, a.hint_sigma, stage=k)
        print(shlex.join(cmd) + f"   # stage {k + 1} of {n}; again with --resume while checkpoint.pt exists", flush=True)
        folder = trained_folder(a.task, model, out_root, k)
        if a.print or ((folder / "config.json").is_file() and not (folder / "checkpoint.pt").is_file()):
            continue  # printed, or done
        rc = run_resumable(cmd, folder, 20 if a.tiny else a.max_chunks)
        if rc or (folder / "checkpoint.pt").is_file():  # failed, or stopped by --max-chunks: the next call goes on
            return rc
    cmd = command(a.task, model, out_root, a.threads, chunk, a.tiny, a.hint_sigma)
    print(shlex.join(cmd) + "   # then again with --resume while checkpoint.pt exists", flush=True)
    trained, folder = trained_folder(a.task, model, out_root), out_root / f"{model}-{a.task}"
    if trained != folder:
        print(f"python benchmarks/mecca_swap_pnet.py --model {trained} --pnet {out_root / f'pnet-{a.task}'} "
              f"--out {folder}   # its start swapped to the shipped P-Net's", flush=True)
    if a.print:
        return 0
    rc = run_resumable(cmd, trained, 20 if a.tiny else a.max_chunks)
    if rc or trained == folder or (trained / "checkpoint.pt").is_file():
        return rc
    from clinloop.training.mecca_swap import swap_pnet

    print(f"wrote {swap_pnet(str(trained), str(out_root / f'pnet-{a.task}'), str(folder))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
