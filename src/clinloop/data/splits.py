"""Patient-grouped splits: no patient's cases in two parts.

All functions use only ``dataset.patient_ids`` (no image is loaded) and are
deterministic for a seed.

:func:`split_patients` is the one two-part (kept / held-out) split every trainer
and protocol uses; :func:`split_by_patient` gives any number of parts by its
``"cases"`` rule.

How parts are sized (rule ``"cases"``): patients are shuffled with ``numpy.random.default_rng(seed)``
and laid end to end (each patient a block of its case count); each cut between
two parts goes at the patient boundary nearest to the target cumulative case
count. So every part's size in *cases* is within half of the largest patient
block of its fraction, and each part gets at least one patient where there are
enough patients.

Paper conventions:

* SPA / MedUHIP: LIDC "80-20 train-test split" (12,077 / 3,019 images).
  :func:`held_back_patients` with ``test=0.2`` reproduces it *by patient* (the
  papers do not say by what; by slice would leak patients).
* QUBIQ tasks come with fixed train / test counts (brain growth 34 / 5, kidney
  20 / 4, prostate 48 / 7, brain tumour 28 / 4); our copies hold training cases
  only, so ``held_back_patients(ds, test=5)`` holds back 5 patients instead.
* LEXU holds back a whole source (RIGA Magrabia); with one source that is
  again a patient hold-out.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from clinloop.data.registry import Dataset, Subset


def _patient_groups(dataset: Dataset) -> tuple[list[str], dict[str, list[int]]]:
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(dataset.patient_ids):
        groups.setdefault(str(p), []).append(i)
    return list(groups), groups


def _cut(sizes: np.ndarray, fractions: np.ndarray) -> list[int]:
    """Patient indices (into ``sizes``' order) where parts 1.. start."""
    cum = np.concatenate([[0], np.cumsum(sizes)])  # cum[j] = cases before patient j
    total, n = cum[-1], len(sizes)
    targets = np.cumsum(fractions)[:-1] * total
    cuts, prev = [], 0
    k = len(fractions)
    for j, t in enumerate(targets):
        # keep >= 1 patient per part where possible: cut in (prev, n - (k-1-j)) when n >= k
        lo = prev + 1 if n >= k else prev
        hi = n - (k - 1 - j) if n >= k else n
        lo, hi = min(lo, hi), hi
        cand = np.arange(lo, hi + 1)
        c = int(cand[np.argmin(np.abs(cum[cand] - t))])
        cuts.append(c)
        prev = c
    return cuts


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) < 2 or (f < 0).any() or not np.isfinite(f).all() or f.sum() <= 0:
        raise ValueError(f"fractions must be >= 2 non-negative numbers, got {tuple(fractions)}")
    if abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {tuple(fractions)} (sum {f.sum():g})")
    return f


SPLIT_RULES = ("cases", "patients", "fill")


def _cases_parts(patient_ids: Sequence, fractions: np.ndarray, seed: int) -> list[list[int]]:
    """Rule "cases" for any number of parts: patients in order of first appearance,
    shuffled with ``default_rng(seed)``, laid end to end and cut at the patient
    boundary nearest each target cumulative case count (see the module docstring)."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(patient_ids):
        groups.setdefault(str(p), []).append(i)
    order = list(groups)
    rng = np.random.default_rng(seed)
    perm = [order[j] for j in rng.permutation(len(order))]
    sizes = np.array([len(groups[p]) for p in perm])
    bounds = [0, *_cut(sizes, fractions), len(perm)]
    return [sorted(i for p in perm[a:b] for i in groups[p]) for a, b in zip(bounds[:-1], bounds[1:])]


def split_patients(patient_ids: Sequence, held_out_fraction: float = 0.2, seed: int = 0, rule: str = "cases",
                   indices: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """THE patient split of every trainer and protocol: ``(kept, held_out)`` indices,
    no patient in both.

    ``patient_ids``: one id per case (``dataset.patient_ids``); ``indices``: split
    only these cases (default: all), returned as indices into ``patient_ids``.
    ``held_out_fraction`` in (0, 1) is the held-out share (the trainers'
    ``--held-out-fraction``, alias ``--val-fraction`` / ``--test-fraction``);
    ``rule`` says what it is a fraction *of* and how whole patients are drawn:

    * ``"cases"`` (LEXU, MECCA, click-LiteMedSAM): of the cases; patients in order
      of first appearance, permuted by ``default_rng(seed)``, cut at the patient
      boundary nearest ``(1 - f)`` of the cases (:func:`split_by_patient`'s rule);
    * ``"patients"`` (SPA, MedUHIP): of the patients; ``max(1, round(f · P))`` of the
      sorted unique ids, the first ones of ``default_rng(seed).permutation(P)``;
    * ``"fill"`` (MECCA's tuning subset of its training patients): of the cases;
      whole patients (sorted ids, ``default_rng(seed)`` order) are held out until
      they hold at least ``f`` of the cases.

    ``kept`` follows the order of ``indices``; ``held_out`` is sorted. The three
    rules are kept because the shipped models were trained with them: their
    held-back cases must not change (tests check against their ``data.json``).
    """
    f = float(held_out_fraction)
    if not 0.0 < f < 1.0:
        raise ValueError(f"held_out_fraction must lie in (0, 1), got {held_out_fraction}")
    if rule not in SPLIT_RULES:
        raise ValueError(f"unknown split rule {rule!r}; choose from {', '.join(SPLIT_RULES)}")
    idx = list(range(len(patient_ids))) if indices is None else [int(i) for i in indices]
    pids = [patient_ids[i] for i in idx]
    if not idx:
        raise ValueError("cannot split an empty set of cases")
    if rule == "cases":
        held = _cases_parts(pids, np.array([1.0 - f, f]), seed)[1]
        held_set = {idx[j] for j in held}
    elif rule == "patients":
        pats = sorted(set(pids))
        order = np.random.default_rng(seed).permutation(len(pats))
        n_held = max(1, int(round(f * len(pats))))
        held_p = {pats[j] for j in order[:n_held]}
        held_set = {i for i, p in zip(idx, pids) if p in held_p}
    else:  # fill
        groups: dict[str, list[int]] = {}
        for i, p in zip(idx, pids):
            groups.setdefault(str(p), []).append(i)
        pats = sorted(groups)
        order = np.random.default_rng(seed).permutation(len(pats))
        want, held_list = f * len(idx), []
        for j in order:
            if len(held_list) >= want:
                break
            held_list += groups[pats[j]]
        held_set = set(held_list)
    return [i for i in idx if i not in held_set], sorted(held_set)


def split_by_patient(dataset: Dataset, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0) -> tuple[Subset, ...]:
    """Split ``dataset`` into ``len(fractions)`` :class:`Subset` s (e.g. train/val
    or train/val/test) with no patient in two of them and sizes, in cases, as
    close to ``fractions`` as whole patients allow. Case order inside a part
    follows the dataset's order."""
    f = _check_fractions(fractions)
    if len(dataset) == 0:
        raise ValueError("cannot split an empty dataset")
    return tuple(Subset(dataset, idx) for idx in _cases_parts(dataset.patient_ids, f, seed))


def kfold_by_patient(dataset: Dataset, k: int = 5, seed: int = 0) -> list[tuple[Subset, Subset]]:
    """``k`` (train, validation) pairs; the validation parts are disjoint by
    patient, cover every case once and are balanced in cases."""
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    n_pat = len(set(map(str, dataset.patient_ids)))
    if n_pat < k:
        raise ValueError(f"{k}-fold split needs at least {k} patients, the dataset has {n_pat}")
    folds = split_by_patient(dataset, [1.0 / k] * k, seed=seed)
    out = []
    for j, val in enumerate(folds):
        train = sorted(i for m, f in enumerate(folds) if m != j for i in f.indices)
        out.append((Subset(dataset, train), val))
    return out


def held_back_patients(dataset: Dataset, test: float | int = 0.2, seed: int = 0) -> tuple[Subset, Subset]:
    """(development, held-back) — the "held-back patients" convention of SPA /
    LEXU evaluation: ``test`` is a fraction of the *cases* (float in (0, 1)) or a
    number of *patients* (int >= 1) that never enter training or model
    selection. Split the development part further with :func:`split_by_patient`."""
    if isinstance(test, (int, np.integer)) and not isinstance(test, bool):
        order, groups = _patient_groups(dataset)
        if not 1 <= test < len(order):
            raise ValueError(f"cannot hold back {test} of {len(order)} patients")
        rng = np.random.default_rng(seed)
        perm = [order[j] for j in rng.permutation(len(order))]
        held = {p for p in perm[len(perm) - int(test):]}
        dev = [i for i, p in enumerate(dataset.patient_ids) if str(p) not in held]
        back = [i for i, p in enumerate(dataset.patient_ids) if str(p) in held]
        return Subset(dataset, dev), Subset(dataset, back)
    t = float(test)
    if not 0.0 < t < 1.0:
        raise ValueError(f"test must be a fraction in (0, 1) or a patient count, got {test!r}")
    dev, back = split_by_patient(dataset, (1.0 - t, t), seed=seed)
    return dev, back


def check_no_leak(*parts: Dataset) -> None:
    """Raise ValueError if any patient appears in two of ``parts``."""
    seen: dict[str, int] = {}
    for j, part in enumerate(parts):
        for p in set(map(str, part.patient_ids)):
            if p in seen and seen[p] != j:
                raise ValueError(f"patient {p!r} is in part {seen[p]} and part {j}")
            seen[p] = j


def folder_split(dataset: Dataset, train: str = "Training", test: str = "Test") -> tuple[list[int], list[int]]:
    """Indices (train, test) of a dataset's *own* split, from the split folder its
    reader records per case (``dataset.folder_split``; Drishti-GS1: 50 Training /
    51 Test photos). Cases in other folders are in neither part. A ValueError
    names what is missing when the dataset has no such folders."""
    folders = getattr(dataset, "folder_split", None)
    if folders is None:
        raise ValueError(f"{dataset.name}: its reader records no split folders; use a random patient split instead")
    tr = [i for i, f in enumerate(folders) if f == train]
    te = [i for i, f in enumerate(folders) if f == test]
    if not tr or not te:
        found = ", ".join(sorted(set(map(str, folders)))) or "none"
        raise ValueError(f"{dataset.name}: need cases in both '{train}' and '{test}' folders; found folders: {found}")
    return tr, te
