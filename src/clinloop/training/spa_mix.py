"""Training cases for a general SPA model from several datasets at once
(``clinloop train --method spa --mix general --data <data root>``).

A *source* is one structure of one dataset under the data root (``Source``):
its folder, the reader options that pick the structure (RIGA disc / cup), how
many training slices it contributes and its share of the training episodes.
For each source:

* the patients are split with the same seeded rule as single-dataset SPA
  training (:func:`clinloop.training.spa_data.patient_split`, held-out share
  ``Source.held_out``), so ``clinloop evaluate --protocol spa --split val`` on one
  dataset evaluates exactly the patients this model never saw;
* 2-D datasets give at most ``Source.slices`` training cases with a non-empty
  majority target (:func:`clinloop.training.spa_data.select_cases`; LIDC one
  middle slice per nodule);
* 3-D datasets (BraTS case folders, the Decathlon atrium) give
  ``Source.slices`` axial slices per training volume, evenly spaced over the
  slices where the structure is present (:func:`structure_slices`), each a 2-D
  case ``<case>/z<k>``.

Multi-rater sources keep SPA's preference training (fused targets, the
winner-takes-all rater term); single-rater ones (BraTS, atrium) have one rater,
so both targets are that mask and they train the segmenter. Episodes are drawn
so that each source counts: the case list repeats each source's cases to its
share ``Source.weight`` of the list (:func:`balanced_cases`), and the training
loop draws seeded permutations of that list.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Source:
    """One structure of one dataset under the data root."""

    name: str
    folder: str
    options: dict = field(default_factory=dict)
    slices: int = 100  # 2-D: cases; 3-D: slices per training volume
    weight: float = 1.0  # relative share of the training episodes
    held_out: float = 0.2  # share of the patients held back
    per_group: int | None = None  # 2-D: at most this many slices per (patient, nodule)


# the recipe of spa-general: LIDC keeps about 30 % of the episodes (the LIDC protocol), the
# other seven structures share the rest equally; BraTS holds back 3 of its 7 volumes
GENERAL: tuple[Source, ...] = (
    Source("lidc", "lidc", slices=200, weight=3.0, per_group=1),
    Source("qubiq_brain_growth", "qubiq_brain_growth", slices=100),
    Source("riga_disc", "riga_binrushed2", {"structure": "disc"}, slices=100),
    Source("riga_cup", "riga_binrushed2", {"structure": "cup"}, slices=100),
    Source("bubil", "bubil", slices=100),
    Source("isic", "isic_uda2_features", slices=100),
    Source("brats", "brats2018_flair", slices=24, held_out=0.4),
    Source("left_atrium", "left_atrium", slices=5),
)
# a continuation recipe for the volume sources (issue 13): the same sources, patients and held-back
# split, with three times the BraTS and atrium slices per training volume and each of the two
# at LIDC's share of the episodes (in GENERAL they get 1/10 each)
GENERAL_VOLUMES: tuple[Source, ...] = tuple(
    replace(s, slices=s.slices * 3, weight=3.0) if s.name in ("brats", "left_atrium") else s for s in GENERAL)
# GENERAL_VOLUMES with spa-lidc's 400 LIDC training slices (one per nodule) in place of 200, at the same
# share of the episodes: the LIDC decoder sees twice the nodules without taking episodes from the volumes
GENERAL_LIDC400: tuple[Source, ...] = tuple(replace(s, slices=400) if s.name == "lidc" else s for s in GENERAL_VOLUMES)
# the general mixes' LIDC source alone (its 200 slices and held-back patients): a structure adapter for the
# nodule on a frozen general model (--structure-rank --structure-only) learns from it without other episodes
GENERAL_LIDC_ONLY: tuple[Source, ...] = tuple(s for s in GENERAL if s.name == "lidc")
MIXES = {"general": GENERAL, "general-volumes": GENERAL_VOLUMES, "general-lidc400": GENERAL_LIDC400,
         "general-lidc-only": GENERAL_LIDC_ONLY}


def structure_slices(masks: np.ndarray, n: int) -> list[int]:
    """``n`` axial indices (axis 0 of ``masks (R, D, H, W)`` or ``(D, H, W)``) evenly spaced over
    the slices where any rater marked the structure (all of them when fewer)."""
    m = np.asarray(masks, bool)
    occupied = np.nonzero(m.reshape(-1, *m.shape[-3:]).any(0).any(axis=(1, 2)))[0]
    if len(occupied) <= n:
        return occupied.tolist()
    return sorted({int(occupied[int(round(q))]) for q in np.linspace(0, len(occupied) - 1, n)})


def _train_indices(ds, src: Source, seed: int) -> list[int]:
    from clinloop.training.spa_data import select_cases

    return select_cases(ds, "train", limit=src.slices if not _is_volume(ds) else None,
                        val_fraction=src.held_out, seed=seed, per_group=src.per_group)


def _is_volume(ds) -> bool:
    return len(ds) > 0 and len(ds.header(0).spatial_shape) == 3


END_REPEAT = 3  # with propagation: each end case (target empty) appears this many times per volume


def propagation_guides(union: np.ndarray, zs: Sequence[int]) -> tuple[list[tuple[int, list[int]]], list[tuple[int, int]]]:
    """The propagation episodes of one training volume (``union (D, H, W)`` bool, the raters' union):
    for each training slice z of ``zs`` the neighbours z-1, z+1 whose mask is non-empty (the slice a
    volume session would prompt z from), and the *end cases*: the slice just beyond each end of the
    structure (target empty) with the end slice as its guide. Returns ``([(z, [guide z', ...])],
    [(end z, guide z)])``."""
    occupied = np.nonzero(union.any(axis=(1, 2)))[0]
    if len(occupied) == 0:
        return [], []
    nb = [(int(z), [int(z + d) for d in (-1, 1) if 0 <= z + d < len(union) and union[z + d].any()]) for z in zs]
    lo, hi = int(occupied[0]), int(occupied[-1])
    ends = [(z, g) for z, g in ((lo - 1, lo), (hi + 1, hi)) if 0 <= z < len(union) and not union[z].any()]
    return nb, ends


def _attach_guides(cases: list, union: np.ndarray, guides: Sequence[Sequence[int]]) -> None:
    """Set ``TrainCase.guides`` of ``cases`` to the model-frame masks of the slices ``guides[i]`` of
    ``union (D, H, W)``."""
    from clinloop.models.litemedsam.preprocess import mask_to_model, resize_info

    info = resize_info(union.shape[1:])  # the geometry preprocess() gives each (H, W) slice
    for c, zs in zip(cases, guides):
        c.guides = tuple(mask_to_model(union[z], info).numpy() > 0.5 for z in zs)


def source_cases(root: str | Path, src: Source, backbone, seed: int = 0, progress: bool = True,
                 propagation: bool = False, end_repeat: int = END_REPEAT):
    """The training ``TrainCase`` list of one source and its record (case and patient ids).

    ``propagation`` (3-D sources): each slice case carries its neighbours' masks as
    ``TrainCase.guides`` and each volume adds its two end cases, ``end_repeat`` times each (0: none)
    (:func:`propagation_guides`; the trainer's propagation episodes,
    :func:`clinloop.training.spa_corrective.propagation_box`)."""
    from clinloop.data import load_dataset
    from clinloop.data.sample import MultiRaterSample
    from clinloop.training.spa_trainer import prepare_cases

    ds = load_dataset(Path(root) / src.folder, **src.options)
    idx = _train_indices(ds, src, seed)
    if not _is_volume(ds):
        cases = prepare_cases(ds, idx, backbone, progress=progress)
        ids = [ds.case_ids[i] for i in idx]
    else:
        from clinloop.data import ListDataset

        from tqdm.auto import tqdm

        cases = []
        for i in tqdm(idx, desc=f"{src.name} volumes", disable=not progress):
            s = ds[i]
            zs = structure_slices(s.masks, src.slices)
            union = np.asarray(s.masks, bool)[np.asarray(s.rater_valid, bool)].any(0)
            nb, ends = propagation_guides(union, zs) if propagation else ([(z, []) for z in zs], [])
            ends = ends if end_repeat > 0 else []
            samples = [MultiRaterSample(image=s.image[:, z], masks=s.masks[:, z], case_id=f"{ds.case_ids[i]}/z{z}",
                                        patient_id=ds.patient_ids[i], rater_valid=s.rater_valid,
                                        structure=s.structure) for z, _ in nb + ends]
            vol = prepare_cases(ListDataset(samples), range(len(samples)), backbone, progress=False)
            if propagation and nb:  # (a volume without the structure has no slice to guide)
                _attach_guides(vol, union, [g for _, g in nb] + [[g] for _, g in ends])
            cases += vol[:len(nb)] + [replace(c) for c in vol[len(nb):] for _ in range(end_repeat)]
        ids = [c.case_id for c in cases]  # prepare_cases took them from the samples
    for c, cid in zip(cases, ids):
        c.case_id = f"{src.name}:{cid}"
    record = {"folder": src.folder, "options": dict(src.options), "held_out": src.held_out,
              "weight": src.weight, "slices": src.slices, "cases": len(cases),
              "end_cases": sum(1 for c in cases if not c.masks.any()),
              "train_patient_ids": sorted({str(ds.patient_ids[i]) for i in idx})}
    return cases, record


def balanced_cases(groups: Sequence[Sequence[Any]], weights: Sequence[float], seed: int = 0) -> list[Any]:
    """One list in which group g takes the share ``weights[g] / sum(weights)``: the largest
    group per unit weight sets the length, each group is cycled through seeded permutations
    of itself to its count (every case of a group appears before any appears twice)."""
    if len(groups) != len(weights) or not groups:
        raise ValueError("balanced_cases needs one weight per group and at least one group")
    if any(w <= 0 for w in weights) or any(len(g) == 0 for g in groups):
        raise ValueError("every group needs a positive weight and at least one case")
    unit = max(len(g) / w for g, w in zip(groups, weights))
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    for g, w in zip(groups, weights):
        n = int(round(unit * w))
        order = np.concatenate([rng.permutation(len(g)) for _ in range(n // len(g) + 1)])[:n]
        out += [g[int(k)] for k in order]
    return out


def mixed_cases(root: str | Path, mix: str | Sequence[Source], backbone, seed: int = 0,
                progress: bool = True, propagation: bool = False,
                end_repeat: int = END_REPEAT) -> tuple[list, dict[str, Any]]:
    """All sources of ``mix`` (a name in ``MIXES`` or Source list): the balanced case list and
    a record per source (for ``data.json``); ``propagation``, ``end_repeat``: see :func:`source_cases`."""
    sources = MIXES[mix] if isinstance(mix, str) else tuple(mix)
    groups, records = [], {}
    for src in sources:
        cases, rec = source_cases(root, src, backbone, seed=seed, progress=progress, propagation=propagation,
                                  end_repeat=end_repeat)
        if not cases:
            raise ValueError(f"{Path(root) / src.folder}: no training case with a non-empty target for {src.name}")
        groups.append(cases)
        records[src.name] = rec
    return balanced_cases(groups, [s.weight for s in sources], seed=seed), records
