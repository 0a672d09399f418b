"""Weight-space interpolation of two SPA models fine-tuned from one another (``clinloop
interpolate --model-a A --model-b B --alpha 0.5 --out DIR``): θ = (1 − α) θ_A + α θ_B, every
trainable tensor.

Not in the SPA paper. A continuation B of a model A (``--init A``) that gains on some
sources and loses on others can often keep most of both by averaging the two in weight
space, because a fine-tuned model stays in its initialisation's basin (Wortsman et al.,
"Robust fine-tuning of zero-shot models", CVPR 2022, WiSE-FT; "Model soups", ICML 2022).
The result is an ordinary model folder: B's config, α recorded in ``data.json``
("interpolation") beside B's split, so the held-back cases are B's (and A's, which B
checks at ``--init``). Measured on spa-general's stages 2 and 3: docs/methods/spa.md.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clinloop.atomic import file_sha256


@dataclass
class InterpolateConfig:
    """``model_a``, ``model_b``: model folders or shipped names (B a continuation of A); ``alpha``: B's share."""

    model_a: str = field(metadata={"help": "model A (folder or shipped name), e.g. the --init of B"})
    model_b: str = field(metadata={"help": "model B, a continuation of A (its split and config are kept)"})
    alpha: float = field(default=0.5, metadata={"help": "B's share: (1 - alpha) A + alpha B"})
    out: str = field(default="runs/spa-interpolated", metadata={"help": "model folder to write"})

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must be in 0 .. 1 (the share of model B), got {self.alpha}")


def interpolate_states(sd_a: dict, sd_b: dict, alpha: float) -> dict:
    """θ = (1 − α) θ_A + α θ_B for each floating tensor (others taken from B). The two state
    dicts must hold the same keys and shapes; ValueError names the first that differs."""
    if set(sd_a) != set(sd_b):
        diff = sorted(set(sd_a) ^ set(sd_b))
        raise ValueError(f"the two models hold different tensors (e.g. {diff[:3]}): not the same architecture")
    out = {}
    for k, vb in sd_b.items():
        va = sd_a[k]
        if va.shape != vb.shape:
            raise ValueError(f"tensor {k!r} has shape {tuple(va.shape)} in A but {tuple(vb.shape)} in B")
        out[k] = (va.float() * (1 - alpha) + vb.float() * alpha).to(vb.dtype) if vb.is_floating_point() else vb
    return out


def interpolate(cfg: InterpolateConfig) -> dict[str, Any]:
    """Write the interpolated model folder ``cfg.out`` (a folder that holds a model already is refused);
    returns its ``data.json``."""
    import torch

    from clinloop.atomic import atomic_write_text
    from clinloop.models import registry
    from clinloop.models.litemedsam.compact import FORMAT, read_weights, write_weights
    from clinloop.models.spa.config import SPAConfig
    from clinloop.training import finished_model

    finished_model(cfg.out, resume=False)  # ValueError when --out holds a trained model: never overwritten
    da = registry.require_family(cfg.model_a, "spa", "interpolate --model-a")
    db = registry.require_family(cfg.model_b, "spa", "interpolate --model-b")
    ca, cb = SPAConfig.load(da / "config.json"), SPAConfig.load(db / "config.json")
    for f in ("method", "n_components", "latent_dim", "cond_width", "path", "pdg_hidden", "finetune_encoder",
              "structures", "structure_rank", "expert_rank"):
        if getattr(ca, f) != getattr(cb, f):
            raise ValueError(f"{f} is {getattr(ca, f)!r} in {cfg.model_a} but {getattr(cb, f)!r} in {cfg.model_b}")
    sd = interpolate_states(read_weights(da / "weights.pt"), read_weights(db / "weights.pt"), float(cfg.alpha))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cb.save(out / "config.json")
    compact = torch.load(db / "weights.pt", map_location="cpu", weights_only=True).get("format") == FORMAT
    write_weights(out / "weights.pt", sd, compact=compact)  # as B's file
    data = json.loads((db / "data.json").read_text()) if (db / "data.json").is_file() else {}
    data["interpolation"] = {
        **asdict(cfg), "out": None,
        "weights_sha256": {k: file_sha256(d / "weights.pt") for k, d in
                           (("a", da), ("b", db))},
        "formula": "(1 - alpha) * A + alpha * B, every trainable tensor",
    }
    atomic_write_text(out / "data.json", json.dumps(data, indent=2) + "\n")
    return data
