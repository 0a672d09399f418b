"""P-Net starts of interactive MECCA models: train from one (``init_from``), swap one in (``swap_pnet``).

    python benchmarks/mecca_swap_pnet.py --model mecca-atrium --pnet runs/pnet-atrium-j8 --out DIR

An interactive model (``mecca``, ``mecca-no-confidence``, ``interactive-cnn``) trained with
``--init-model P`` embeds a frozen copy of the P-Net P as its ``init`` network: its
prediction (or mask) is p^(0), the state the first refinement step starts from. The policy
itself only sees (image, p, hint), so a better P-Net can be put in front of it without
retraining: :func:`swap_pnet` writes a copy of the model folder with the ``init`` weights
of another P-Net. Not in the paper (which trains each method from its own P-Net); the
policy was trained on the errors of the P-Net it came with, so whether a swapped start
helps is measured, not assumed (docs/methods/mecca.md). ``data.json`` records both P-Nets
("init_swapped"), and the held-back patients of the two must agree (the P-Net's own split
is checked against the model's), so the protocol still evaluates patients neither saw.
"""
from __future__ import annotations

from pathlib import Path

from clinloop.atomic import file_sha256


def swap_pnet(model: str | Path, pnet: str | Path, out: str | Path) -> Path:
    """Write ``out``: the interactive model ``model`` with ``pnet``'s weights as its
    ``init`` network. Both are model folders or shipped names. ValueError if ``model`` has
    no P-Net start, if the two differ in grid (``ndim``, ``zoom``, ``norm``,
    ``downsample``), or if their training patients differ. The start network takes the
    P-Net's width and architecture (``init_width``, ``init_arch``)."""
    from clinloop.models import registry
    from clinloop.models.mecca.model import load_mecca

    mdir, pdir = registry.resolve_model_dir(model), registry.resolve_model_dir(pnet)
    m = load_mecca(mdir)
    if "init" not in m.nets:
        raise ValueError(f"{mdir}: this {m.cfg.method!r} model has no P-Net start (trained without --init-model)")
    p = load_pnet(pdir, m.cfg)
    tm, tp = m.data.get("train_patients"), p.data.get("train_patients")
    if tm is not None and tp is not None and sorted(map(str, tm)) != sorted(map(str, tp)):
        raise ValueError(f"{pdir}: trained on other patients than {mdir} (its held-back cases would not be held back)")
    m.nets["init"] = p.nets["net"]  # its network, whatever the width or architecture
    m.cfg.init_width, m.cfg.init_arch, m.cfg.unet_levels = p.cfg.width, p.cfg.pnet_arch, p.cfg.unet_levels
    m.cfg.flip_average, m.cfg.one_component = p.cfg.flip_average, p.cfg.one_component  # as that P-Net predicts
    sha = file_sha256(Path(pdir) / "weights.pt")
    data = {**m.data, "init_swapped": {"model": str(model), "model_command": m.data.get("command"),
                                       "pnet": str(pnet), "pnet_weights_sha256": sha,
                                       "pnet_metrics": p.metrics}}
    m.save(out, data=data, metrics={**m.metrics, "note": "init P-Net swapped after training; see data.json "
                                                         "init_swapped; these metrics are the original model's"})
    return Path(out)


def load_pnet(folder: str | Path, cfg):
    """The ``mecca-unet`` (P-Net) model in ``folder``, checked to work on ``cfg``'s grid (``ndim``,
    ``zoom``, ``norm``, ``downsample``); ValueError naming ``folder`` otherwise."""
    from clinloop.models.mecca.model import load_mecca

    pnet = load_mecca(folder)
    if pnet.cfg.method != "mecca-unet":
        raise ValueError(f"{folder}: a P-Net (mecca-unet) folder is needed, got {pnet.cfg.method!r}")
    check_grid(pnet.cfg, cfg, str(folder), whose="this model's")
    return pnet


def check_grid(other, cfg, label: str, keys=("ndim", "zoom", "norm", "downsample"), whose: str = "this run's") -> None:
    """ValueError naming ``label`` if the config ``other`` of a model to start from differs from
    ``cfg`` (this model's) in one of ``keys``: its networks would not fit this model's grid."""
    for k in keys:
        if getattr(other, k) != getattr(cfg, k):
            raise ValueError(f"{label}: its {k} is {getattr(other, k)!r}, {whose} {getattr(cfg, k)!r}")


def init_from(folder: str | Path, cfg) -> tuple[dict, int]:
    """The P-Net of a ``mecca-unet`` model folder as the ``init`` network of ``cfg`` (``clinloop
    train --init-model``): ``(state_dict, width)``; ``cfg.init_arch`` and ``unet_levels`` become the P-Net's.
    Its grid must match ``cfg``'s (:func:`load_pnet`);
    ``cfg`` takes over the P-Net's inference refinements (``flip_average``, ``one_component``)
    where it does not set them itself."""
    pnet = load_pnet(folder, cfg)
    cfg.flip_average = cfg.flip_average or pnet.cfg.flip_average
    cfg.one_component = cfg.one_component or pnet.cfg.one_component
    cfg.init_arch, cfg.unet_levels = pnet.cfg.pnet_arch, pnet.cfg.unet_levels
    return pnet.nets["net"].state_dict(), pnet.cfg.width
