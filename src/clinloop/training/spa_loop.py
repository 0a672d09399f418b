"""The SPA training loop (:func:`train`): steps of B episodes, checkpoints, ``train_log.csv``,
and data parallelism under ``torchrun``.

A *training step* is B = ``--episodes-per-step`` episodes (training images, each
``--user-iterations`` simulated user iterations of Alg. 1) whose gradients are
averaged before each of the step's optimiser updates (see
:meth:`clinloop.training.spa_trainer.SPATrainer.train_step`). Episode ``e = step * B + b``
(b = 0..B-1) trains on case ``order[e]`` of a seeded permutation sequence of the cases
(seed ``seed``) with its own random generators seeded from ``(trainer.seed, e)``; the
set of episodes therefore depends on (seed, step, b) only, not on the number of
processes. B = 1 is the original one-image-per-step loop.

Under ``torchrun`` with W processes (``dist``), rank r runs the contiguous share r of
b = 0..B-1 (:meth:`~clinloop.training.distributed.Dist.share`; B/W each); every
update's gradients are summed over ranks (:meth:`~clinloop.training.distributed.Dist.sum_grads`)
so each rank takes the same optimiser step as one process would (up to
floating-point summation order); the per-episode log values are gathered, so the
logged row is the single-process one. Rank 0 alone shows progress and writes
``train_log.csv`` and ``checkpoint.pt``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch


def episode_order(n_cases: int, n_episodes: int, seed: int) -> np.ndarray:
    """Case index of every episode ``0..n_episodes-1`` (and more): concatenated seeded
    permutations of ``range(n_cases)`` (``numpy.random.default_rng(seed)``)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(n_cases) for _ in range(n_episodes // n_cases + 2)])


def train(trainer, cases: list, steps: int, out: Path, save_every: int = 50, seed: int = 0,
          progress: bool = True, time_budget: float | None = None, dist=None) -> list[dict[str, float]]:
    """Run training steps ``trainer.step .. steps-1`` of ``trainer.episodes_per_step`` episodes each
    (``trainer``: an :class:`~clinloop.training.spa_trainer.SPATrainer`; ``cases``: its
    ``TrainCase`` list), checkpointing into ``out/checkpoint.pt`` every ``save_every`` steps, at
    the end and when ``time_budget`` seconds are spent; continues from ``trainer.step``.
    Returns the rows logged by this call (one per step; every rank gets them)."""
    from tqdm.auto import tqdm

    from clinloop.atomic import atomic_path
    from clinloop.training.distributed import Dist

    d = dist or Dist()
    if not cases:
        raise ValueError("no training cases")
    b_step = int(trainer.episodes_per_step)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    order = episode_order(len(cases), steps * b_step, seed)
    mine = d.share(torch.arange(b_step))[0].tolist()  # this rank's episodes of every step
    rows = []
    bar = tqdm(total=steps, initial=trainer.step, desc="SPA training", disable=not (progress and d.main))
    log_path = out / "train_log.csv"
    t_start = time.time()
    while trainer.step < steps:
        if d.any(time_budget is not None and time.time() - t_start > time_budget):
            if d.main:
                print(f"time budget of {time_budget:.0f} s reached at step {trainer.step}", file=sys.stderr)
            break
        episodes = [trainer.step * b_step + b for b in mine]
        step = trainer.step
        row = trainer.train_step([cases[int(order[e])] for e in episodes], episodes, b_step, dist=d)
        row = {"step": step, **row}
        rows.append(row)
        if not d.main:
            continue
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
