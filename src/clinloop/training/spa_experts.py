"""A general SPA model with a specialist as one structure's expert (``clinloop extract-expert
--general spa-general --specialist spa-lidc --structure nodule --rank 8 --out DIR``).

Not in the SPA paper (:mod:`clinloop.models.spa.experts`). The general model keeps every
weight; the new model adds the structure (its token, zero) and the expert
Δ = θ_specialist − θ_general: rank-``r`` truncated SVD for the matrices, in full for every
other tensor. With ``structure_route = "until-corrected"`` (the default here) a session on
that structure decodes with the specialist's weights until its first corrective click, then
with the general model's (trained for corrective clicks). Nothing is trained: the result is
deterministic, seconds on a CPU. The general model's ``data.json`` (its split, the held-back
patients its figures use) is kept, with "expert" added; the specialist must not have trained
on those patients (its split is recorded beside them; docs/methods/spa.md checks it).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from clinloop.atomic import file_sha256

ARCHITECTURE = ("method", "n_components", "latent_dim", "cond_width", "path", "pdg_hidden", "backbone")


@dataclass
class ExtractExpertConfig:
    """``general``, ``specialist``: model folders or shipped names (one architecture); ``structure``: the name
    sessions give the specialist's structure (the reader's, e.g. "nodule"); ``rank``: r of the matrices' change."""

    general: str = field(metadata={"help": "the general SPA model (folder or shipped name) that keeps every weight"})
    specialist: str = field(metadata={"help": "the SPA model trained on the structure alone (folder or name)"})
    structure: str = field(metadata={"help": "the structure the expert decodes, as the reader names it (e.g. nodule)"})
    rank: int = field(default=8, metadata={"help": "rank r of each matrix's change (truncated SVD); others in full"})
    route: str = field(default="until-corrected", metadata={
        "help": "until-corrected: the expert decodes until a session's first corrective click; always: every step",
        "choices": ("until-corrected", "always")})
    out: str = field(default="runs/spa-expert", metadata={"help": "model folder to write"})

    def __post_init__(self) -> None:
        if int(self.rank) < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if not str(self.structure).strip():
            raise ValueError("structure must be a non-empty name (e.g. nodule)")


def extract_expert(cfg: ExtractExpertConfig) -> dict[str, Any]:
    """Write the general model with ``cfg.specialist`` as ``cfg.structure``'s expert to ``cfg.out`` (a folder
    that holds a model already is refused); returns its ``data.json``."""
    from clinloop.models import registry
    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.compact import read_weights
    from clinloop.models.spa.config import SPAConfig
    from clinloop.models.spa.experts import part_tensors
    from clinloop.models.spa.model import SPANet, load_spa_net, save_spa
    from clinloop.training import finished_model

    finished_model(cfg.out, resume=False)  # ValueError when --out holds a trained model: never overwritten
    dg = registry.require_family(cfg.general, "spa", "extract-expert --general")
    ds = registry.require_family(cfg.specialist, "spa", "extract-expert --specialist")
    cg, cs = SPAConfig.load(dg / "config.json"), SPAConfig.load(ds / "config.json")
    for name, c in (("general", cg), ("specialist", cs)):
        if c.structures or c.structure_rank or c.expert_rank or c.finetune_encoder:
            raise ValueError(f"the {name} model {getattr(cfg, name)} must be a plain SPA model (no structure tokens, "
                             f"adapters, experts or fine-tuned encoder); got structures {c.structures}")
    for f in ARCHITECTURE:
        if getattr(cg, f) != getattr(cs, f):
            raise ValueError(f"{f} is {getattr(cg, f)!r} in {cfg.general} but {getattr(cs, f)!r} in {cfg.specialist}")
    config = SPAConfig.from_dict({**cg.to_dict(), "structures": [cfg.structure], "expert_rank": int(cfg.rank),
                                  "structure_route": cfg.route})
    net = SPANet(config, build_litemedsam(True))
    missing, unexpected = net.load_state_dict(read_weights(dg / "weights.pt"), strict=False)
    bad = [k for k in missing if not k.startswith(("backbone.image_encoder.", "structure.", "structure_experts."))]
    if bad or unexpected:
        raise ValueError(f"{cfg.general}: weights do not match its config (missing {bad[:3]}, "
                         f"unexpected {unexpected[:3]})")
    general, special = part_tensors(net), part_tensors(load_spa_net(ds))
    energy_kept = net.structure_experts.set_expert(1, general, special)
    data = json.loads((dg / "data.json").read_text()) if (dg / "data.json").is_file() else {}
    spec_data = json.loads((ds / "data.json").read_text()) if (ds / "data.json").is_file() else {}
    data["expert"] = {
        **asdict(cfg), "out": None,
        "command": (f"clinloop extract-expert --general {cfg.general} --specialist {cfg.specialist} "
                    f"--structure {cfg.structure} --rank {cfg.rank} --route {cfg.route} --out DIR"),
        "weights_sha256": {"general": file_sha256(dg / "weights.pt"), "specialist": file_sha256(ds / "weights.pt")},
        "specialist_split": spec_data.get("split"), "specialist_command": spec_data.get("command"),
        # the patients the specialist trained on: protocols that hold back by data.json skip them too
        "train_patient_ids": sorted({str(c).split("/")[0] for c in spec_data.get("train_case_ids", [])}
                                    | {str(q) for q in spec_data.get("train_patient_ids", [])}),
        "delta_energy_kept": round(energy_kept, 4),
        "numbers": int(sum(b.numel() for b in net.structure_experts.buffers())),
        "formula": "theta_general + Delta, Delta = rank-r SVD of (specialist - general) per matrix, full otherwise",
    }
    save_spa(net, cfg.out, extra=data)
    return data
