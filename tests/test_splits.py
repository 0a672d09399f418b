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
