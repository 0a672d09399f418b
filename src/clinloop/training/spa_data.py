"""Case selection for SPA training/evaluation (shared by :mod:`.spa` and
:mod:`clinloop.evaluation.spa_protocol`, so both see the same patient split).

``patient_split`` assigns whole patients to "train"/"val" with
:func:`clinloop.data.splits.split_patients` (rule ``"patients"``: a share of the
patients, drawn from the sorted unique ids by a seeded permutation).
``select_cases`` then keeps cases whose rater majority is non-empty, taking at
most ``per_group`` slices per (patient, nodule) group -- the middle ones first --
so a few hundred training slices cover many nodules instead of a few stacks.
"""
from __future__ import annotations

from collections.abc import Sequence


def patient_split(patient_ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> dict[str, str]:
    """patient id -> "train" | "val": :func:`clinloop.data.splits.split_patients` with
    rule ``"patients"`` (the SPA / MedUHIP split; ``val_fraction`` = held-out share)."""
    from clinloop.data.splits import split_patients

    _, held = split_patients(patient_ids, val_fraction, seed, rule="patients")
    val = {patient_ids[i] for i in held}
    return {p: ("val" if p in val else "train") for p in sorted(set(patient_ids))}


def group_of(case_id: str) -> str:
    """"<patient>/n<k>/s<j>" -> "<patient>/n<k>" (any other id is its own group)."""
    parts = case_id.split("/")
    return "/".join(parts[:2]) if len(parts) >= 3 else case_id


def select_cases(dataset, split: str = "all", limit: int | None = None, val_fraction: float = 0.2, seed: int = 0,
                 per_group: int | None = None) -> list[int]:
    """Indices of ``dataset`` in ``split`` ("all", "train", "val") with a non-empty majority target
    (``val_fraction``: the held-out share, ``held_out_fraction`` of the options),
    at most ``per_group`` per nodule (middle slices first), the first ``limit`` of them
    in dataset order."""
    from clinloop.data.fusion import majority_vote

    if split not in ("all", "train", "val"):
        raise ValueError(f"split must be all, train or val; got {split!r}")
    sp = patient_split(dataset.patient_ids, val_fraction, seed) if split != "all" else None
    cand = [i for i in range(len(dataset)) if sp is None or sp[dataset.patient_ids[i]] == split]
    if per_group is not None:
        groups: dict[str, list[int]] = {}
        for i in cand:
            groups.setdefault(group_of(dataset.case_ids[i]), []).append(i)
        keep = []
        for idx in groups.values():
            mid = (len(idx) - 1) / 2
            keep += sorted(idx, key=lambda i, idx=idx: (abs(idx.index(i) - mid), i))[:per_group]
        cand = sorted(keep)
    out = []
    for i in cand:
        s = dataset[i]
        if s.rater_valid.any() and majority_vote(s.masks, s.rater_valid).any():  # no raters: no target
            out.append(i)
            if limit is not None and len(out) >= limit:
                break
    return out


def no_cases_error(dataset, split: str, what: str) -> ValueError:
    """The error for a :func:`select_cases` that found nothing, naming the dataset: it holds no rater
    masks at all (naming its first case; read from the case headers), or no case of ``split`` has a
    non-empty rater majority. ``what`` is what needed them (e.g. "SPA training")."""
    from clinloop.errors import DataError

    where = getattr(dataset, "path", None) or getattr(dataset, "name", None)
    if len(dataset) and all(dataset.header(i).n_raters == 0 for i in range(len(dataset))):
        return DataError(f"the dataset has no rater masks (case {dataset.case_ids[0]!r} has none, nor any other); "
                         f"{what} needs cases with rater masks", where)
    return DataError(f"no case with a non-empty rater majority in split {split!r}; {what} needs at least one", where)
