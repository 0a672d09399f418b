"""Drishti-GS1 (expert-agreement maps) reader: generated folders, the errors, the
official split, and the real development copy (``shared_data``)."""
from __future__ import annotations

import numpy as np
import pytest

from clinloop.data import load_dataset, reader_accepts
from clinloop.data.readers.drishti import agreement_masks
from clinloop.data.splits import folder_split, split_patients
from clinloop.errors import DataError
from fixtures_datasets import _png, make_drishti


def test_agreement_counts_become_nested_raters_with_the_exact_soft_label_and_variance():
    counts = np.array([[0, 1, 2], [3, 4, 2]], dtype=np.uint8)
    m = agreement_masks(counts, "x.png")
    assert m.shape == (4, 2, 3) and m.dtype == bool
    assert (m.sum(0) == counts).all()  # the count is recovered
    p = m.mean(0)
    assert np.allclose(p, counts / 4) and np.allclose(m.var(0), p * (1 - p))  # S(M) and the rater variance
    assert (m[1:] <= m[:-1]).all()  # nested
    with pytest.raises(DataError, match=r"x\.png: .*expert counts 0\.\.4, found 0\.\.7"):
        agreement_masks(np.array([[0, 7]]), "x.png")


def test_fixture_layout_structures_ids_and_official_split(tmp_path):
    root = make_drishti(tmp_path / "drishti")
    both = load_dataset(root)
    assert both.format == "drishti"
    assert both.case_ids == ["Test/drishtiGS_001/disc", "Test/drishtiGS_001/cup", "Training/drishtiGS_002/disc",
                             "Training/drishtiGS_002/cup", "Training/drishtiGS_004/disc", "Training/drishtiGS_004/cup"]
    assert both.patient_ids[:2] == ["drishtiGS_001", "drishtiGS_001"]
    cup = load_dataset(root, structure="cup")
    assert cup.case_ids == ["Test/drishtiGS_001", "Training/drishtiGS_002", "Training/drishtiGS_004"]
    s = cup[1]
    assert s.image.shape == (3, 16, 16) and s.masks.shape == (4, 16, 16) and s.structure == "cup"
    assert s.rater_ids == ["agree>=1", "agree>=2", "agree>=3", "agree>=4"] and s.rater_valid.all()
    assert s.provenance["split"] == "Training" and s.provenance["cup_to_disc_ratios"] == [0.5, 0.6, 0.55, 0.5]
    disc = load_dataset(root, structure="disc")[1]
    assert (s.masks & ~disc.masks).sum() == 0 and s.masks[0].sum() < disc.masks[0].sum()
    assert folder_split(cup) == ([1, 2], [0])
    # one split folder on its own: ids without the folder, still its split name
    test = load_dataset(root / "Test", structure="cup")
    assert test.case_ids == ["drishtiGS_001"] and test.folder_split == ["Test"]
    assert reader_accepts("drishti", "structure") and not reader_accepts("lidc", "structure")


def test_errors_name_the_file(tmp_path):
    root = make_drishti(tmp_path / "d")
    with pytest.raises(ValueError, match="structure must be 'disc', 'cup' or None"):
        load_dataset(root, structure="rim")
    bad = root / "Test" / "drishtiGS_001" / "cup_agreement.png"
    _png(bad, np.full((16, 16), 9, dtype=np.uint8))
    with pytest.raises(DataError, match=r"cup_agreement\.png: .*expert counts 0\.\.4"):
        load_dataset(root, structure="cup")[0]
    _png(bad, np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"is \(8, 8\) but the photo is \(16, 16\)"):
        load_dataset(root, structure="cup")[0]
    (root / "Test" / "drishtiGS_001" / "disc_agreement.png").unlink()
    with pytest.raises(DataError, match="no disc agreement map"):
        load_dataset(root, structure="disc")[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Drishti-GS1 case folder"):
        load_dataset(tmp_path / "empty", format="drishti")


def test_folder_split_needs_both_folders(tmp_path):
    root = make_drishti(tmp_path / "d", splits=(("Training", ("drishtiGS_002",)),))
    with pytest.raises(ValueError, match="need cases in both 'Training' and 'Test'.*found folders: Training"):
        folder_split(load_dataset(root, structure="cup"))
    subset = load_dataset(make_drishti(tmp_path / "e"), structure="cup").subset([0])
    with pytest.raises(ValueError, match="records no split folders"):
        folder_split(subset)


@pytest.mark.shared
def test_real_drishti(shared_data):
    ds = load_dataset(shared_data / "drishti_gs1", structure="cup")
    assert len(ds) == 101
    train, test = folder_split(ds)
    assert (len(train), len(test)) == (50, 51)
    s = ds[0]  # Test/drishtiGS_001: counts 0..4 on a 512² crop
    assert s.case_id == "Test/drishtiGS_001" and s.image.shape == (3, 512, 512) and s.masks.shape == (4, 512, 512)
    assert s.masks.sum((1, 2)).tolist() == [22634, 20927, 19890, 17984]
    assert s.provenance["cup_to_disc_ratios"] == [0.85, 0.82, 0.8, 0.82]
    # a random patient split never separates a photo's disc and cup
    both = load_dataset(shared_data / "drishti_gs1")
    tr, te = split_patients(both.patient_ids, 0.3, 0, rule="cases")
    assert not {both.patient_ids[i] for i in tr} & {both.patient_ids[i] for i in te}
