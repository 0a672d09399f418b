"""Figures of the LEXU protocol: the QC curve, the difficulty test and a comparison
of several methods' runs (:mod:`clinloop.evaluation.lexu_protocol`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DISTORTIONS = ("noise", "blur", "colour")


def _sibling(out: Path, suffix: str) -> Path:
    """``results.json`` -> ``results<suffix>`` beside it."""
    stem = out.name[: -len(".json")] if out.name.endswith(".json") else out.name
    return out.with_name(stem + suffix)


def plot_qc(qc: dict, method: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinloop.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    ax.plot(np.array(qc["q"]) * 100, qc["remaining"], label=f"{method} (d-AUC {qc['d_auc']:.3f})")
    ax.plot(np.array(qc["q"]) * 100, qc["ideal"], "--", color="grey", label="ideal")
    ax.set_xlabel("most uncertain images removed (%)")
    ax.set_ylabel("poor segmentations left (fraction)")
    ax.set_title(f"quality control ({qc['n_poor']} poor of {qc['n_cases']}, Dice < {qc['threshold']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_difficulty(dt: dict, method: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinloop.atomic import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2))
    for kind, t in dt["distortions"].items():
        axes[0].plot(t["severity"], t["agreement"], marker="o", label=kind)
        axes[1].plot(t["severity"], t["image_uncertainty"], marker="o", label=kind)
    axes[0].set_ylabel("agreement (mean pairwise Dice)")
    axes[1].set_ylabel("image-level uncertainty (Σ var)")
    for ax in axes:
        ax.set_xlabel("distortion severity")
        ax.legend(fontsize=8)
    fig.suptitle(f"example difficulty: {method}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_comparison(results: list[str | Path], path: str | Path) -> None:
    """One figure comparing methods (LEXU Fig. 2a/2c style): QC curves from the
    ``.qc.json`` files and agreement under distortion from the
    ``.difficulty.json`` files beside each ``results.json`` in ``results``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinloop.atomic import atomic_path

    fig, axes = plt.subplots(1, 1 + len(DISTORTIONS), figsize=(3.6 * (1 + len(DISTORTIONS)), 3.3))
    ideal_done = False
    for r in results:
        r = Path(r)
        qc = json.loads(_sibling(r, ".qc.json").read_text())
        axes[0].plot(np.array(qc["q"]) * 100, qc["remaining"], label=f"{qc['method']} ({qc['d_auc']:.3f})")
        if not ideal_done:
            axes[0].plot(np.array(qc["q"]) * 100, qc["ideal"], "--", color="grey", label=f"ideal ({qc['method']})")
            ideal_done = True
        dpath = _sibling(r, ".difficulty.json")
        if dpath.is_file():
            dt = json.loads(dpath.read_text())
            for ax, kind in zip(axes[1:], DISTORTIONS):
                t = dt["distortions"][kind]
                ax.plot(t["severity"], t["agreement"], marker="o", label=dt["method"])
                ax.set_title(f"agreement under {kind}", fontsize=9)
                ax.set_xlabel("severity")
    axes[0].set_xlabel("most uncertain images removed (%)")
    axes[0].set_ylabel("poor segmentations left")
    axes[0].set_title("quality control (d-AUC)", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
