"""3-D NIfTI layouts: the Medical Segmentation Decathlon (MSD / nnU-Net) and
BraTS case folders. Tiny generated folders with hand-checked values (axes,
spacing, affine, label merging, ids, errors), the lazy header path, and the
real ../shared/data/left_atrium and brats2018_flair (skipped when absent)."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from clinloop.data import detect_format, load_dataset
from clinloop.data.readers import _nifti_cases
from clinloop.errors import DataError
from fixtures_datasets import _save_vol, coded_labels, make_brats, make_decathlon, truncate, volume_affine

# volume_affine(): x flipped, zooms (0.5, 0.75, 2.0), origin (10, -20, 30); in
# clinloop index order (d, h, w) = (k, j, i) its columns are permuted:
CLINLOOP_AFFINE = np.array([[0, 0, -0.5, 10], [0, 0.75, 0, -20], [2.0, 0, 0, 30], [0, 0, 0, 1]])


# ------------------------------------------------------------------ Decathlon
@pytest.mark.parametrize("v2", [False, True])
def test_decathlon_axes_spacing_affine_values(tmp_path, v2):
    root = make_decathlon(tmp_path / "Task", v2=v2)
    assert detect_format(root) == "decathlon"
    ds = load_dataset(root)
    assert ds.format == "decathlon" and ds.name == "TinyTask" and len(ds) == 2
    assert ds.case_ids == ds.patient_ids == ["case_000", "case_001"]
    s = ds[1]
    # file (X, Y, Z, C) = (6, 5, 4, 2) -> (C, D, H, W) = (2, 4, 5, 6)
    assert s.image.shape == (2, 4, 5, 6) and s.image.dtype == np.float32
    assert s.masks.shape == (1, 4, 5, 6) and s.rater_ids == ["0"] and s.n_raters == 1
    # coded_volume: 1000 c + 100 x + 10 y + z (+ 10000 for case 1); (c, d, h, w) = (1, 3, 2, 4)
    assert s.image[1, 3, 2, 4] == 10000 + 1000 + 400 + 20 + 3
    assert s.spacing == (2.0, 0.75, 0.5)
    np.testing.assert_allclose(s.affine, CLINLOOP_AFFINE)
    # voxel (d, h, w) = (3, 2, 4) lies at x = 10 - 0.5*4, y = -20 + 0.75*2, z = 30 + 2*3
    np.testing.assert_allclose(s.affine @ [3, 2, 4, 1], [8.0, -18.5, 36.0, 1.0])
    assert s.structure == "edema+tumour"  # default: every foreground label merged
    assert s.provenance["modality"] == "mod0,mod1" and s.provenance["label_values"] == [1, 2]


def test_decathlon_label_option_picks_values(tmp_path):
    root = make_decathlon(tmp_path / "Task")
    # coded_labels: value 1 where x < 2 (2*5*4 = 40 voxels), value 2 where x >= 4 and
    # shift <= y < shift + 2 (2*2*4 = 16 voxels)
    cases = {None: (56, "edema+tumour"), 1: (40, "edema"), "tumour": (16, "tumour"), "TUMOUR": (16, "tumour"),
             "1,2": (56, "edema+tumour"), "edema+2": (56, "edema+tumour"), (2,): (16, "tumour")}
    for label, (n, name) in cases.items():
        s = load_dataset(root, label=list(label) if isinstance(label, tuple) else label)[1]
        assert (int(s.masks.sum()), s.structure) == (n, name), label
    s = load_dataset(root, label=1)[0]
    assert s.masks[0, :, :, :2].all() and not s.masks[0, :, :, 2:].any()  # x < 2 is w < 2
    t = load_dataset(root, label="tumour")[1]
    assert t.masks[0, :, 1:3, 4:].all() and t.masks.sum() == 16  # y in [1, 3) for case 1 (shift 1)
    with pytest.raises(DataError, match=r"label 'liver' is not a foreground label.*1 edema"):
        load_dataset(root, label="liver")
    with pytest.raises(DataError, match="label 0 is not a foreground label"):
        load_dataset(root, label=0)


def test_decathlon_regions_and_single_label_names(tmp_path):
    """nnU-Net v2 regions: a region whose values are exactly the chosen ones names the structure."""
    root = make_decathlon(tmp_path / "Task", v2=True)
    doc = json.loads((root / "dataset.json").read_text())
    doc["labels"] = {"background": 0, "edema": 1, "tumour": 2, "whole": [1, 2]}
    (root / "dataset.json").write_text(json.dumps(doc))
    s = load_dataset(root)[0]
    assert s.structure == "whole" and int(s.masks.sum()) == 56
    assert load_dataset(root, label="whole")[0].structure == "whole"
    one = make_decathlon(tmp_path / "LA", channels=None, label_names={"0": "background", "1": "left atrium", "2": "x"})
    s = load_dataset(one, label="left atrium")[0]
    assert s.image.shape == (1, 4, 5, 6) and s.structure == "left atrium" and int(s.masks.sum()) == 40


def test_decathlon_splits(tmp_path):
    root = make_decathlon(tmp_path / "Task", test=2)
    te = load_dataset(root, split="test")
    assert te.case_ids == ["case_100", "case_101"]
    s = te[0]
    assert s.n_raters == 0 and s.image.shape == (2, 4, 5, 6)
    assert len(load_dataset(root, split="all")) == 4
    with pytest.raises(DataError, match="split must be one of"):
        load_dataset(root, split="val")
    assert load_dataset(make_decathlon(tmp_path / "v2", v2=True, test=1), split="test").case_ids == ["case_100"]


def test_listing_and_headers_read_no_voxels(tmp_path, monkeypatch):
    root = make_decathlon(tmp_path / "Task")
    ds = load_dataset(root)

    def no_voxels(*a, **k):
        raise AssertionError("header() read voxel data")

    monkeypatch.setattr(_nifti_cases, "read_nifti_volume", no_voxels)
    monkeypatch.setattr(_nifti_cases, "read_nifti_labels", no_voxels)
    h = ds.header(1)
    assert h.shape == (2, 4, 5, 6) and h.spatial_shape == (4, 5, 6) and h.n_voxels == 120
    assert h.spacing == (2.0, 0.75, 0.5) and h.n_raters == 1 and h.structure == "edema+tumour"
    np.testing.assert_allclose(h.affine, CLINLOOP_AFFINE)
    assert ds.subset([1]).header(0).case_id == "case_001" and ds.header(-1).case_id == "case_001"
    with pytest.raises(IndexError):
        ds.header(2)
    monkeypatch.undo()
    # opening and listing do not open the volumes either: damaged files surface only when read
    for f in (root / "imagesTr").iterdir():
        truncate(f, 0.6)
    ds = load_dataset(root)
    assert len(ds) == 2 and ds.case_ids == ["case_000", "case_001"]
    with pytest.raises(DataError, match=r"case_001\.nii\.gz: cannot read NIfTI"):
        ds[1]


def test_header_matches_loaded_sample(tmp_path):
    make_brats(tmp_path / "b")
    ds = load_dataset(tmp_path / "b")
    h, s = ds.header(0), ds[0]
    assert h.shape == s.image.shape and h.spacing == s.spacing and h.patient_id == s.patient_id
    np.testing.assert_array_equal(h.affine, s.affine)
    assert s.header().shape == h.shape  # the in-memory sample gives the same header


def test_decathlon_missing_and_mismatched_files(tmp_path):
    root = make_decathlon(tmp_path / "Task")
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case_001\.nii\.gz: training\[1\] label listed in dataset.json does not exist"):
        load_dataset(root)

    root = make_decathlon(tmp_path / "Shape")
    _save_vol(root / "labelsTr" / "case_001.nii.gz", coded_labels((6, 5, 3)), volume_affine())
    ds = load_dataset(root)
    ds[0]  # the other case is fine
    with pytest.raises(DataError, match=r"labelsTr/case_001\.nii\.gz: label map geometry does not match the image: "
                                        r"shape \(3, 5, 6\).*image's shape \(4, 5, 6\)"):
        ds[1]

    root = make_decathlon(tmp_path / "Origin")
    _save_vol(root / "labelsTr" / "case_000.nii.gz", coded_labels(), volume_affine(origin=(10.0, -20.0, 32.0)))
    with pytest.raises(DataError, match=r"case_000\.nii\.gz: label map geometry.*origin \(10\.0, -20\.0, 32\.0\)"):
        load_dataset(root)[0]

    root = make_decathlon(tmp_path / "V2", v2=True)
    (root / "imagesTr" / "case_000_0001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case_000_0001\.nii\.gz: channel file of case 'case_000' is missing"):
        load_dataset(root)


@pytest.mark.parametrize("override, message", [
    ({"labels": None}, r"Task/dataset.json: dataset.json: 'labels' must be a non-empty object"),
    ({"labels": {"0": "background", "1": 3}}, r"labels\['1'\] must be a name"),
    ({"labels": {"background": 0, "x": "one"}}, r"labels\['x'\] must be a label value"),
    ({"training": [{"image": "./imagesTr/case_000.nii.gz"}]}, r"training\[0\] must be an object with 'image' and 'label'"),
    ({"training": "imagesTr"}, r"'training' must be a list"),
    ({"numTraining": 5}, r"numTraining is 5 but 2 training cases"),
    ({"modality": {"1": "T1"}}, r"'modality' must map channel numbers 0\.\.C-1"),
    ({"labels": {"0": "background"}}, r"declares no foreground label"),
])
def test_decathlon_bad_dataset_json(tmp_path, override, message):
    root = make_decathlon(tmp_path / "Task", **override)
    with pytest.raises(DataError, match=message):
        load_dataset(root)


def test_decathlon_bad_json_and_content_errors(tmp_path):
    root = make_decathlon(tmp_path / "Task")
    (root / "dataset.json").write_text('{"labels": {"0": "background",}')
    with pytest.raises(DataError, match=r"Task/dataset.json: cannot parse JSON"):
        load_dataset(root)
    (root / "dataset.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"dataset.json: dataset.json must be an object, got list"):
        load_dataset(root)
    # a label value the file does not declare; a channel count that differs from 'modality'
    root = make_decathlon(tmp_path / "Undeclared", label_names={"0": "background", "1": "edema"})
    with pytest.raises(DataError, match=r"case_000\.nii\.gz: label map holds value\(s\) \[2\] not declared in "
                                        r"dataset.json labels \(declared: \[0, 1\]\)"):
        load_dataset(root)[0]
    root = make_decathlon(tmp_path / "Channels", modality={"0": "MRI"})
    with pytest.raises(DataError, match=r"imagesTr/case_000\.nii\.gz: image has 2 channel\(s\).*but 1 are declared"):
        load_dataset(root)[0]
    with pytest.raises(DataError, match="takes only label and split"):
        load_dataset(root, task=1)


# ---------------------------------------------------------------------- BraTS
@pytest.mark.parametrize("naming", ["deepvoxnet", "challenge"])
def test_brats_case_folders(tmp_path, naming):
    written = make_brats(tmp_path / "brats", cases=("case_10", "case_2"), naming=naming)
    assert detect_format(tmp_path / "brats") == "brats"
    ds = load_dataset(tmp_path / "brats")
    assert ds.format == "brats" and ds.case_ids == ["case_2", "case_10"]  # natural order
    if naming == "deepvoxnet":
        assert ds.patient_ids == ["Brats18_TEST_1_1", "Brats18_TEST_0_1"]  # from subject_id.txt
    else:
        assert ds.patient_ids == ["case_2", "case_10"]  # the <id> of <id>_flair.nii.gz
    s = ds[1]  # case_10, written first (n = 0)
    assert s.image.shape == (1, 4, 5, 6) and s.masks.shape == (1, 4, 5, 6)
    assert s.image[0, 3, 2, 4] == 423.0  # 100 x + 10 y + z at (x, y, z) = (4, 2, 3)
    # labels 2 (edema block of 2x2x2), 1 and 4 inside it: the whole tumour is 8 voxels
    assert int(s.masks.sum()) == 8
    np.testing.assert_array_equal(s.masks[0], written["case_10"].T)
    assert s.spacing == (1.0, 1.0, 1.0) and s.structure == "whole tumour" and s.n_raters == 1
    np.testing.assert_allclose(s.affine, [[0, 0, -1, 0], [0, 1, 0, 239], [1, 0, 0, 0], [0, 0, 0, 1]])
    assert s.provenance["modality"] == "FLAIR"


def test_brats_errors(tmp_path):
    make_brats(tmp_path / "a")
    (tmp_path / "a" / "case_1" / "GT_W.nii.gz").unlink()
    with pytest.raises(DataError, match=r"a/case_1: case folder has no tumour label"):
        load_dataset(tmp_path / "a")

    make_brats(tmp_path / "b")
    gt = np.zeros((6, 5, 4), np.float32)
    gt[0, 0, 0] = 2
    _save_vol(tmp_path / "b" / "case_0" / "GT_W.nii.gz", gt, volume_affine((1.0, 1.0, 1.0), (0.0, 239.0, 0.0)))
    with pytest.raises(DataError, match=r"GT_W\.nii\.gz: label map holds value\(s\) \[2\] not declared"):
        load_dataset(tmp_path / "b")[0]

    make_brats(tmp_path / "c")
    _save_vol(tmp_path / "c" / "case_0" / "GT_W.nii.gz", np.zeros((6, 5, 4), np.float32), volume_affine())
    with pytest.raises(DataError, match=r"GT_W\.nii\.gz: label map geometry does not match the image: "
                                        r"shape \(4, 5, 6\), spacing \(2\.0, 0\.75, 0\.5\)"):
        load_dataset(tmp_path / "c")[0]

    make_brats(tmp_path / "d")
    (tmp_path / "d" / "notes").mkdir()
    with pytest.raises(DataError, match=r"d/notes: case folder has no FLAIR image"):
        load_dataset(tmp_path / "d", format="brats")
    with pytest.raises(DataError, match="takes no options"):
        load_dataset(tmp_path / "a", format="brats", label=1)


def test_detectors_claim_only_their_layout(tmp_path):
    from clinloop.data.readers.brats import detect_brats
    from clinloop.data.readers.canonical import detect as detect_canonical
    from clinloop.data.readers.decathlon import detect_decathlon
    from clinloop.data.readers.qubiq import detect_qubiq

    msd = make_decathlon(tmp_path / "msd")
    make_brats(tmp_path / "brats")
    assert detect_decathlon(msd) and not detect_brats(msd) and not detect_canonical(msd) and not detect_qubiq(msd)
    assert detect_brats(tmp_path / "brats") and not detect_decathlon(tmp_path / "brats")
    assert not detect_canonical(tmp_path / "brats") and not detect_qubiq(tmp_path / "brats")
    assert not detect_decathlon(msd / "dataset.json") and not detect_brats(msd / "imagesTr")


# -------------------------------------------------------------- real datasets
@pytest.fixture(scope="module")
def real(shared_data):
    def get(name):
        d = shared_data / name
        if not d.is_dir():
            pytest.skip(f"{d} is not present")
        return d

    return get


@pytest.mark.shared
def test_real_left_atrium(real):
    root = real("left_atrium")
    ds = load_dataset(root)
    assert ds.format == "decathlon" and len(ds) == 30 and len(set(ds.patient_ids)) == 30
    assert ds.case_ids[0] == "la_000" and ds.case_ids[-1] == "la_029"
    heads = [ds.header(i) for i in range(len(ds))]  # all 30 from headers only
    assert all(h.spacing == (0.625, 0.625, 0.625) and h.shape[:2] == (1, 88) for h in heads)
    assert {h.structure for h in heads} == {"left atrium"}
    s = ds[1]
    nii = nib.load(str(root / "imagesTr" / "la_001.nii.gz"))
    assert s.image.shape == (1, 88, 143, 199) == heads[1].shape  # file (199, 143, 88)
    np.testing.assert_allclose(s.image[0, 40, 70, 100], np.asarray(nii.dataobj)[100, 70, 40], rtol=1e-6)
    np.testing.assert_allclose(s.affine, [[0, 0, 0.625, 0], [0, 0.625, 0, 0], [0.625, 0, 0, 0], [0, 0, 0, 1]])
    lab = np.asarray(nib.load(str(root / "labelsTr" / "la_001.nii.gz")).dataobj)
    assert int(s.masks.sum()) == int((lab == 1).sum()) and 0.06 < s.masks.mean() < 0.11


@pytest.mark.shared
def test_real_brats2018_flair(real):
    root = real("brats2018_flair")
    ds = load_dataset(root)
    assert ds.format == "brats" and len(ds) == 7 and ds.case_ids == [f"case_{k}" for k in range(7)]
    subjects = [(root / c / "subject_id.txt").read_text().split("Subject_id:")[1].strip() for c in ds.case_ids]
    assert ds.patient_ids == subjects and ds.patient_ids[0] == "Brats18_CBICA_AOO_1"
    heads = [ds.header(i) for i in range(7)]
    assert all(h.shape == (1, 155, 240, 240) and h.spacing == (1.0, 1.0, 1.0) for h in heads)
    s = ds[0]
    gt = np.asarray(nib.load(str(root / "case_0" / "GT_W.nii.gz")).dataobj)
    np.testing.assert_array_equal(s.masks[0], gt.T > 0)
    assert 0.004 <= s.masks.mean() <= 0.015 and s.structure == "whole tumour"
    np.testing.assert_allclose(s.affine[:3, 3], [0, 239, 0])
    json.dumps(s.summary())  # JSON-ready


def test_nifti_volume_and_label_helpers(tmp_path):
    from clinloop.data.nifti import nifti_header, read_nifti_labels, read_nifti_volume
    from fixtures_datasets import coded_volume

    a = coded_volume()  # (6, 5, 4, 2)
    _save_vol(tmp_path / "v5.nii.gz", a[:, :, :, None, :], volume_affine())  # NIfTI's (X, Y, Z, T=1, C)
    img, spacing, aff, meta = read_nifti_volume(tmp_path / "v5.nii.gz")
    assert img.shape == (2, 4, 5, 6) and img[1, 3, 2, 4] == 1423.0 and meta["channels"] == 2
    assert spacing == (2.0, 0.75, 0.5) and nifti_header(tmp_path / "v5.nii.gz")["shape"] == (2, 4, 5, 6)
    np.testing.assert_allclose(aff, CLINLOOP_AFFINE)
    _save_vol(tmp_path / "v2d.nii.gz", a[:, :, 0, 0], np.eye(4))
    with pytest.raises(DataError, match=r"v2d\.nii\.gz: expected a 3-D volume"):
        read_nifti_volume(tmp_path / "v2d.nii.gz")
    lab = coded_labels().astype(np.float32)
    _save_vol(tmp_path / "ok.nii.gz", lab, np.eye(4))
    got, _, _ = read_nifti_labels(tmp_path / "ok.nii.gz")
    assert got.shape == (4, 5, 6) and got[0, 0, 5] == 2 and got[3, 4, 1] == 1  # (z, y, x) of lab[x, y, z]
    lab[0, 0, 0] = 0.5
    _save_vol(tmp_path / "half.nii.gz", lab, np.eye(4))
    with pytest.raises(DataError, match=r"half\.nii\.gz: label map has 1 non-integer values \(e\.g\. 0\.5\)"):
        read_nifti_labels(tmp_path / "half.nii.gz")
    _save_vol(tmp_path / "neg.nii.gz", -coded_labels().astype(np.int16), np.eye(4))
    with pytest.raises(DataError, match=r"neg\.nii\.gz: label map has negative values \(min -2\)"):
        read_nifti_labels(tmp_path / "neg.nii.gz")
