"""The held-back LIDC cases the benchmark's LIDC tables share.

SPA's patient split (``clinloop.training.spa_data.select_cases``: held-out share
0.2, seed 0, as ``spa-lidc`` / ``meduhip-lidc`` / ``click-litemedsam-lidc`` were
trained) gives the validation patients; of their slices those with a non-empty
rater majority, one middle slice per nodule (``per_nodule=None``: all slices).
``lexu-lidc`` used another split (70/30 by patient): cases it was trained on are
dropped where a table also scores LEXU, so no model is scored on its training data;
:func:`trained_ids` does the same for any model folder (``spa-general`` trained on several
datasets with its own patient split). :func:`read_cases` reads a protocol's per-case rows.
"""
from __future__ import annotations

import json
from pathlib import Path

VAL_FRACTION = 0.2
SPLIT_SEED = 0


def lidc_dir(data_root: Path) -> Path:
    d = Path(data_root) / "lidc"
    if not d.exists():
        raise FileNotFoundError(f"{d}: the LIDC crops (lidc_crops_dev.npz) are not under --data-root {data_root}")
    return d


def lexu_train_cases(model: str = "lexu-lidc") -> set[str]:
    from clinloop.models.registry import resolve_model_dir

    p = Path(resolve_model_dir(model)) / "data.json"
    return set(json.loads(p.read_text()).get("train_cases", [])) if p.is_file() else set()


def trained_ids(model: str) -> set[str]:
    """The case and patient ids a model folder's ``data.json`` says it trained on
    (``train_case_ids`` and, for models trained on a mix, ``train_patient_ids``; a structure
    expert's specialist's patients too, ``expert.train_patient_ids``)."""
    from clinloop.models.registry import resolve_model_dir

    p = Path(resolve_model_dir(model)) / "data.json"
    info = json.loads(p.read_text()) if p.is_file() else {}
    ids = [*info.get("train_case_ids", []), *info.get("train_patient_ids", []),
           *info.get("expert", {}).get("train_patient_ids", [])]
    return {str(c) for c in ids}


def heldout_lidc(ds, per_nodule: int | None = 1, limit: int | None = None, exclude: set[str] = frozenset()) -> list[int]:
    """Dataset indices: SPA's validation patients, non-empty majority, ``per_nodule`` slices
    per nodule, minus the case ids in ``exclude``; the first ``limit`` in dataset order."""
    from clinloop.training.spa_data import select_cases

    idx = select_cases(ds, "val", limit=None, val_fraction=VAL_FRACTION, seed=SPLIT_SEED, per_group=per_nodule)
    idx = [i for i in idx if ds.case_ids[i] not in exclude]
    return idx if limit is None else idx[:limit]


def read_cases(csv_path) -> list[dict]:
    """A protocol's ``*_cases.csv``: case and patient ids, every ``dice_k`` / ``noc_t`` as float."""
    import csv

    out = []
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            row = {"case_id": r["case_id"], "patient_id": r["patient_id"]}
            for k, v in r.items():
                if k.startswith(("dice_", "noc_")) and v != "":
                    row[k] = float(v)
            out.append(row)
    return out
