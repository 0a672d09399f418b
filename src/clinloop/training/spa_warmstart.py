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
