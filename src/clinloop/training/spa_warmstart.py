"""The ``--init`` warm start of SPA training (:func:`warm_start`): the shared parts of an
existing SPA model folder loaded into a new :class:`~clinloop.models.spa.model.SPANet`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    if list(src.structures) != list(cfg.structures):
        raise ValueError(f"--init {d}: structure tokens {src.structures} there but {cfg.structures} here")
    if src.structure_rank != cfg.structure_rank:
        raise ValueError(f"--init {d}: structure adapters of rank {src.structure_rank} there but "
                         f"{cfg.structure_rank} here")
    prefixes = (WARM_START_SHARED + (("variant.",) if same_variant else ()) + (("structure.",) if cfg.structures else ())
                + (("structure_adapters.",) if cfg.structure_rank else ()))
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


INFERENCE_SETTINGS = ("honour_clicks", "click_passes", "zoom_in", "zoom_min", "zoom_mode", "zoom_when")


def inference_settings(src) -> dict[str, Any]:
    """The ``--init`` model's inference-only config fields (:data:`INFERENCE_SETTINGS`: the click
    constraint, refinement passes, the zoom of :mod:`clinloop.models.spa.zoom`) from its
    :class:`~clinloop.models.spa.config.SPAConfig` ``src``; training does not change them, so a
    continuation's ``config.json`` keeps them and answers clicks as its init did."""
    return {f: getattr(src, f) for f in INFERENCE_SETTINGS}


def check_init_split(folder: str | Path, split_seed: int, explicit: bool) -> None:
    """Refuse a warm start whose patient split would differ from the ``--init`` model's.

    The split is seeded (``--split-seed``, default ``--seed``); a continuation trained with
    another seed holds back a different set of patients, so some of the patients it reports
    as held back were trained on by the model it starts from, and every held-back figure of
    the new model is contaminated (2026-12-03: a ``spa-general`` stage started with
    ``--seed 1`` scored 0.903 on BraTS volumes its init had trained on). ``explicit``: the
    user passed ``--split-seed`` (then a different split is their choice)."""
    from clinloop.models import registry

    p = registry.resolve_model_dir(folder) / "data.json"
    if explicit or not p.is_file():
        return
    seed = (json.loads(p.read_text()).get("split") or {}).get("seed")
    if seed is not None and int(seed) != int(split_seed):
        raise ValueError(f"--init {folder}: that model's patients were split with seed {seed} ({p}); this run "
                         f"would split with seed {split_seed}, so its held-back patients would include patients "
                         f"the init trained on. Pass --split-seed {seed} to keep the init's split (the episode "
                         f"seed --seed may still differ), or --split-seed {split_seed} to choose the new split")
