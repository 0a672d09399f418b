"""Patient-grouped splits: no leakage, determinism, sizes close to the fractions."""
from __future__ import annotations

import numpy as np
import pytest

from clinloop.data.registry import Dataset
from clinloop.data.splits import check_no_leak, held_back_patients, kfold_by_patient, split_by_patient


class IdsOnly(Dataset):
    """Case and patient ids without images: splits must never load a case."""

    def _load(self, i):
        raise AssertionError("a split loaded an image")


def _ids(sizes):
    cases, pats = [], []
    for p, n in enumerate(sizes):
        for k in range(n):
            cases.append(f"p{p}/c{k}")
            pats.append(f"p{p}")
    return IdsOnly(cases, pats)


@pytest.fixture
def ragged():
    # 60 patients with 1..9 cases each (seeded), 300-odd cases in all
    rng = np.random.default_rng(0)
    return _ids(rng.integers(1, 10, 60).tolist())


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.7, 0.15, 0.15), (0.5, 0.25, 0.125, 0.125)])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_partitions_without_leak_and_near_fractions(ragged, fractions, seed):
    parts = split_by_patient(ragged, fractions, seed=seed)
    assert len(parts) == len(fractions)
    check_no_leak(*parts)
    pats = [set(p.patient_ids) for p in parts]
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            assert not pats[a] & pats[b]
    all_idx = sorted(i for p in parts for i in p.indices)
    assert all_idx == list(range(len(ragged)))  # every case exactly once
    biggest = 9
    for p, f in zip(parts, fractions):
        assert len(p) > 0
        # each cut is at most half a patient block from its target, two cuts per part
        assert abs(len(p) - f * len(ragged)) <= biggest
    # subsets carry the parent's ids
    assert parts[0].case_ids == [ragged.case_ids[i] for i in parts[0].indices]


def test_split_is_deterministic_and_seed_dependent(ragged):
    a = split_by_patient(ragged, (0.8, 0.2), seed=3)
    b = split_by_patient(ragged, (0.8, 0.2), seed=3)
    c = split_by_patient(ragged, (0.8, 0.2), seed=4)
    assert a[1].indices == b[1].indices
    assert set(a[1].patient_ids) != set(c[1].patient_ids)


def test_split_hand_computed():
    # 10 patients of one case each: 0.8/0.2 must give exactly 8/2 cases
    ds = _ids([1] * 10)
    tr, va = split_by_patient(ds, (0.8, 0.2), seed=0)
    assert (len(tr), len(va)) == (8, 2)
    # one patient of 6 cases and 4 of one: 0.5/0.5 of 10 cases. Whatever the
    # order, the best patient boundary is within 3 cases (half of 6) of 5.
    ds = _ids([6, 1, 1, 1, 1])
    for seed in range(5):
        tr, va = split_by_patient(ds, (0.5, 0.5), seed=seed)
        assert abs(len(tr) - 5) <= 3 and len(tr) + len(va) == 10
        assert ("p0" in tr.patient_ids) != ("p0" in va.patient_ids)


def test_split_multi_case_patients_stay_together():
    ds = _ids([3, 3, 3, 3])
    for seed in range(4):
        tr, va = split_by_patient(ds, (0.5, 0.5), seed=seed)
        assert len(tr) == 6 and len(va) == 6  # exactly two patients each
        assert all(tr.patient_ids.count(p) == 3 for p in set(tr.patient_ids))


def test_split_bad_fractions(ragged):
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_patient(ragged, (0.8, 0.3))
    with pytest.raises(ValueError, match="non-negative"):
        split_by_patient(ragged, (1.2, -0.2))
    with pytest.raises(ValueError, match=">= 2"):
        split_by_patient(ragged, (1.0,))
    with pytest.raises(ValueError, match="empty"):
        split_by_patient(_ids([]), (0.5, 0.5))


def test_kfold(ragged):
    folds = kfold_by_patient(ragged, k=5, seed=0)
    assert len(folds) == 5
    vals = []
    for tr, va in folds:
        check_no_leak(tr, va)
        assert len(tr) + len(va) == len(ragged)
        vals.extend(va.indices)
        assert abs(len(va) - len(ragged) / 5) <= 9
    assert sorted(vals) == list(range(len(ragged)))  # each case validated once
    assert [f[1].indices for f in kfold_by_patient(ragged, 5, seed=0)] == [f[1].indices for f in folds]
    with pytest.raises(ValueError, match="at least 5 patients"):
        kfold_by_patient(_ids([2, 2, 2]), k=5)


def test_held_back_patients(ragged):
    dev, back = held_back_patients(ragged, test=5, seed=0)
    assert len(set(back.patient_ids)) == 5
    check_no_leak(dev, back)
    assert len(dev) + len(back) == len(ragged)
    dev2, back2 = held_back_patients(ragged, test=0.2, seed=0)
    check_no_leak(dev2, back2)
    assert abs(len(back2) - 0.2 * len(ragged)) <= 9
    with pytest.raises(ValueError, match="hold back 60 of 60"):
        held_back_patients(ragged, test=60)
    with pytest.raises(ValueError, match="fraction"):
        held_back_patients(ragged, test=1.5)


def test_check_no_leak_names_the_patient():
    ds = _ids([2, 2])
    with pytest.raises(ValueError, match="'p0' is in part 0 and part 1"):
        check_no_leak(ds.subset([0]), ds.subset([1]))


def test_split_real_lidc_by_patient(shared_data):
    from clinloop.data import load_dataset

    ds = load_dataset(shared_data / "lidc" / "lidc_crops_dev.npz")  # ids only: no image is read
    tr, va = split_by_patient(ds, (0.8, 0.2), seed=0)
    check_no_leak(tr, va)
    assert len(tr) + len(va) == 6214
    assert abs(len(va) - 0.2 * 6214) < 30
    assert len(set(tr.patient_ids)) + len(set(va.patient_ids)) == 350


# ---------------------------------------------------------------- the one split function
from pathlib import Path  # noqa: E402

from clinloop.data.splits import split_patients  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODELS = ROOT / "src" / "clinloop" / "assets" / "models"


def _old_spa_patient_split(patient_ids, val_fraction, seed):
    """Reference: the SPA split as it was (training/spa_data.py before unification)."""
    pats = sorted(set(patient_ids))
    order = np.random.default_rng(seed).permutation(len(pats))
    n_val = max(1, int(round(val_fraction * len(pats))))
    val = {pats[i] for i in order[:n_val]}
    return {p: ("val" if p in val else "train") for p in pats}


def _old_mecca_tune_split(patient_ids, train_idx, fraction, seed):
    """Reference: MECCA's tuning split as it was (training/mecca.py before unification)."""
    groups = {}
    for i in train_idx:
        groups.setdefault(str(patient_ids[int(i)]), []).append(int(i))
    pats = sorted(groups)
    order = np.random.default_rng(seed + 7919).permutation(len(pats))
    want, tune = fraction * len(train_idx), []
    for j in order:
        if len(tune) >= want:
            break
        tune += groups[pats[j]]
    keep = set(tune)
    return [int(i) for i in train_idx if int(i) not in keep], sorted(tune)


@pytest.mark.parametrize("seed", [0, 1, 5])
@pytest.mark.parametrize("f", [0.1, 0.2, 0.3])
def test_split_patients_reproduces_the_three_old_rules(ragged, seed, f):
    pids = ragged.patient_ids
    # "cases" == split_by_patient's two-part split (LEXU, MECCA, click-LiteMedSAM)
    kept, held = split_patients(pids, f, seed, rule="cases")
    a, b = split_by_patient(ragged, (1 - f, f), seed=seed)
    assert (kept, held) == (a.indices, b.indices)
    # "patients" == SPA's old patient_split
    kept, held = split_patients(pids, f, seed, rule="patients")
    old = _old_spa_patient_split(pids, f, seed)
    assert held == [i for i, p in enumerate(pids) if old[p] == "val"]
    assert kept == [i for i, p in enumerate(pids) if old[p] == "train"]
    assert len({pids[i] for i in held}) == max(1, round(f * len(set(pids))))  # sized by patients
    # "fill" on a subset == MECCA's old tuning split
    sub = kept[::-1][: len(kept) // 2]  # any order: the kept part follows it
    assert split_patients(pids, f, seed + 7919, rule="fill", indices=sub) == _old_mecca_tune_split(pids, sub, f, seed)


def test_split_patients_rejects_bad_input(ragged):
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="held_out_fraction"):
            split_patients(ragged.patient_ids, bad)
    with pytest.raises(ValueError, match="unknown split rule"):
        split_patients(ragged.patient_ids, 0.2, rule="slices")
    with pytest.raises(ValueError, match="empty"):
        split_patients([], 0.2)


def _shipped(name):
    import json

    return json.loads((MODELS / name / "data.json").read_text())


@pytest.mark.skipif(not (DATA / "lidc").is_dir(), reason="LIDC not available")
def test_shipped_models_held_back_cases_unchanged():
    """The held-back / training cases recorded by the shipped models come out of the
    unified split exactly (LEXU: test_cases; MECCA 2-D: train/val patients; MECCA 3-D:
    its tuning patients; SPA and click-LiteMedSAM: the selected training slices)."""
    from clinloop.data import load_dataset
    from clinloop.training.mecca import split_training_patients
    from clinloop.training.spa_data import select_cases

    lidc = load_dataset(DATA / "lidc")
    d = _shipped("lexu-lidc")
    _, te = split_patients(lidc.patient_ids, 0.3, 0, rule="cases")
    assert [lidc.case_ids[i] for i in te] == d["test_cases"]
    riga = load_dataset(DATA / "riga_binrushed2", structure="cup")
    _, te = split_patients(riga.patient_ids, 0.3, 0, rule="cases")
    assert [riga.case_ids[i] for i in te] == _shipped("lexu-riga-cup")["test_cases"]
    for name, opts in (("mecca-lidc", {}), ("mecca-unet-lidc", {}), ("mecca-lidc3d", {"volumes": True})):
        d = _shipped(name)
        ds = load_dataset(DATA / "lidc" / "lidc_crops_dev.npz", **opts)
        tr, va = split_patients(ds.patient_ids, 0.2, 0, rule="cases")
        assert sorted({ds.patient_ids[i] for i in tr}) == d["train_patients"]
        if d.get("tune_fraction"):
            tr, va = split_training_patients(ds, tr, d["tune_fraction"], 0)
        assert sorted({ds.patient_ids[i] for i in va}) == d["val_patients"]
    d = _shipped("spa-lidc")
    idx = select_cases(lidc, "train", limit=d["split"]["train_cases"], val_fraction=0.2, seed=0, per_group=1)
    assert [lidc.case_ids[i] for i in idx] == d["train_case_ids"]
    d = _shipped("click-litemedsam-lidc")
    va = select_cases(lidc, "val", val_fraction=0.2, seed=0, per_group=1)
    assert set(d["val_cases"]) <= {lidc.case_ids[i] for i in va}
    assert not {c.split("/")[0] for c in d["train_cases"]} & {lidc.patient_ids[i] for i in va}
