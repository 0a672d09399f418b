"""Dataset-specific readers: LIDC, RIGA, QUBIQ, BU-BIL, ISIC (the 3-D NIfTI
layouts, Decathlon and BraTS, are in test_readers_volumes.py; their detectors
are checked here against every other layout).

Two halves: tiny generated files in each layout (always run), and the real
development copies in ../shared/data (``shared_data`` fixture; skipped when
absent) for the documented counts, shapes and quirks."""
from __future__ import annotations

import numpy as np
import pytest

from clinloop.data import detect_format, load_dataset
from clinloop.data.readers import brats, bubil, decathlon, drishti, isic, lidc, qubiq, riga
from clinloop.errors import DataError
from fixtures_datasets import (
    corrupt_middle,
    make_brats,
    make_bubil_dataset,
    make_decathlon,
    make_drishti,
    make_isic,
    make_lidc_npz,
    make_qubiq,
    make_riga_npz,
    truncate,
)

DETECTORS = {
    "lidc": lidc.detect_lidc,
    "riga": riga.detect_riga,
    "drishti": drishti.detect_drishti,
    "qubiq": qubiq.detect_qubiq,
    "bubil": bubil.detect_bubil,
    "isic": isic.detect_isic,
    "decathlon": decathlon.detect_decathlon,
    "brats": brats.detect_brats,
}


def _load_all(path, **kw):
    """Open and read every case (errors may surface at either step)."""
    ds = load_dataset(path, **kw)
    return [ds[i] for i in range(len(ds))]


# --------------------------------------------------------------------------- LIDC
def test_lidc_fixture_slices(tmp_path):
    p = tmp_path / "crops.npz"
    arr = make_lidc_npz(p)
    ds = load_dataset(p)
    assert ds.format == "lidc" and len(ds) == 9
    # case ids name patient, nodule and slice; patient ids are plain patients
    for i, cid in enumerate(ds.case_ids):
        assert cid == f"{arr['patient'][i]}/n{arr['nodule'][i]}/s{arr['slice'][i]}"
    assert set(ds.patient_ids) == {"P1", "P2"}
    s = ds[4]
    assert s.image.shape == (1, 8, 8) and s.image.dtype == np.float32
    assert s.masks.shape == (4, 8, 8) and s.masks.dtype == bool
    np.testing.assert_array_equal(s.image[0], arr["image"][4].astype(np.float32))
    np.testing.assert_array_equal(s.masks, arr["masks"][4])
    assert s.rater_valid.all() and s.rater_ids == ["rater0", "rater1", "rater2", "rater3"]
    assert s.provenance["path"] == str(p) and s.provenance["format"] == "lidc"


def test_lidc_fixture_volumes_split_at_gaps(tmp_path):
    p = tmp_path / "crops.npz"
    arr = make_lidc_npz(p)  # P2 nodule 0 has slices 3,4,6,7: a gap at 5
    ds = load_dataset(p, volumes=True)
    assert ds.case_ids == ["P1/n0", "P1/n1", "P2/n0/s3-4", "P2/n0/s6-7"]
    assert ds.patient_ids == ["P1", "P1", "P2", "P2"]
    v = ds[0]
    assert v.image.shape == (1, 3, 8, 8) and v.masks.shape == (4, 3, 8, 8)
    # slice k of the volume is the row with slice number k, whatever the file order
    for k in range(3):
        row = int(np.flatnonzero((arr["patient"] == "P1") & (arr["nodule"] == 0) & (arr["slice"] == k))[0])
        np.testing.assert_array_equal(v.image[0, k], arr["image"][row])
        np.testing.assert_array_equal(v.masks[:, k], arr["masks"][row])
    assert ds[3].provenance["slices"] == [6, 7]


def test_lidc_duplicate_slice_is_an_error(tmp_path):
    p = tmp_path / "dup.npz"
    make_lidc_npz(p, groups=(("P1", 0, (0, 1, 1)),))
    assert len(load_dataset(p)) == 3  # fine slice by slice
    with pytest.raises(DataError, match="slice 1 more than once"):
        load_dataset(p, volumes=True)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"masks": None}, "missing array"),
        ({"masks": np.zeros((9, 4, 8, 9), bool)}, r"spatial shape \(8, 9\) but images have \(8, 8\)"),
        ({"masks": np.zeros((8, 4, 8, 8), bool)}, "8 rows but 'image' has 9"),
        ({"masks": np.zeros((9, 0, 8, 8), bool)}, "zero raters"),
        ({"slice": np.arange(4)}, r"'slice' must have shape \(9,\)"),
    ],
)
def test_lidc_bad_arrays(tmp_path, override, message):
    p = tmp_path / "bad.npz"
    make_lidc_npz(p, **override)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(p, format="lidc")
    assert str(p) in str(e.value)


def test_lidc_non_binary_masks_and_nan(tmp_path):
    p = tmp_path / "nb.npz"
    masks = np.zeros((9, 4, 8, 8), np.uint8)
    masks[2, 1, 3, 3] = 2
    make_lidc_npz(p, masks=masks)
    ds = load_dataset(p)  # header checks pass; values are checked on reading
    with pytest.raises(DataError, match="binary.*2") as e:
        ds[0]
    assert str(p) in str(e.value)

    q = tmp_path / "nan.npz"
    img = np.zeros((9, 8, 8), np.float32)
    img[5, 1, 1] = np.nan
    make_lidc_npz(q, image=img)
    ds = load_dataset(q)
    assert ds[0].image.dtype == np.float32  # other rows are fine
    with pytest.raises(DataError, match="1 NaN/Inf") as e:
        ds[5]
    assert str(q) in str(e.value)


def test_lidc_truncated_and_corrupt(tmp_path):
    p = tmp_path / "t.npz"
    make_lidc_npz(p, size=32)
    truncate(p)
    with pytest.raises(DataError, match="truncated or corrupt") as e:
        load_dataset(p, format="lidc")
    assert str(p) in str(e.value)
    with pytest.raises(DataError):  # without the override: nothing recognises it
        load_dataset(p)

    q = tmp_path / "c.npz"
    make_lidc_npz(q, size=32)
    corrupt_middle(q)
    with pytest.raises(DataError, match="corrupt") as e:
        _load_all(q, format="lidc")
    assert str(q) in str(e.value)


def test_lidc_cache_shared_pickled_and_refreshed(tmp_path):
    import pickle

    p = tmp_path / "crops.npz"
    arr = make_lidc_npz(p, size=16)
    a, b = load_dataset(p), load_dataset(p, volumes=True)
    assert a._cache is b._cache
    a[0]
    assert set(a._cache.arrays) == {"image", "masks"}
    blob = pickle.dumps(a)
    assert len(blob) < arr["image"].nbytes  # the cached arrays are not pickled
    c = pickle.loads(blob)
    np.testing.assert_array_equal(c[3].masks, a[3].masks)
    # a rewritten file (new size) is read afresh, not served from the old cache
    arr2 = make_lidc_npz(p, size=12, seed=1)
    d = load_dataset(p)
    assert d._cache is not a._cache
    np.testing.assert_array_equal(d[0].image[0], arr2["image"][0])


def test_lidc_object_arrays_are_refused(tmp_path):
    p = tmp_path / "obj.npz"
    make_lidc_npz(p, patient=np.array(["P1"] * 9, dtype=object))
    with pytest.raises(DataError, match="'patient' holds pickled Python objects"):
        load_dataset(p)


# --------------------------------------------------------------------------- RIGA
def test_riga_fixture_structures(tmp_path):
    p = tmp_path / "riga.npz"
    arr = make_riga_npz(p)
    both = load_dataset(p)
    assert both.format == "riga"
    assert both.case_ids == ["case01/disc", "case01/cup", "case02/disc", "case02/cup", "case03/disc", "case03/cup"]
    assert both.patient_ids == ["case01", "case01", "case02", "case02", "case03", "case03"]
    cup = load_dataset(p, structure="cup")
    assert cup.case_ids == ["case01", "case02", "case03"]
    s = cup[1]
    assert s.structure == "cup" and s.image.shape == (3, 12, 12) and s.masks.shape == (6, 12, 12)
    np.testing.assert_array_equal(s.image, np.moveaxis(arr["image"][1], -1, 0))
    np.testing.assert_array_equal(s.masks, arr["cup"][1].astype(bool))
    assert s.rater_valid.tolist() == [True, True, False, True, True, True]
    assert s.valid_masks.shape == (5, 12, 12)
    with pytest.raises(ValueError, match="structure"):
        load_dataset(p, structure="vessel")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"rater_ok": None}, "missing array.*rater_ok"),
        ({"cup": np.zeros((3, 6, 12, 10), np.uint8)}, "spatial shape"),
        ({"rater_ok": np.ones((3, 5), bool)}, r"'rater_ok' must have shape \(3, 6\)"),
        ({"disc": np.zeros((3, 0, 12, 12), np.uint8), "cup": np.zeros((3, 0, 12, 12), np.uint8)}, "zero raters"),
    ],
)
def test_riga_bad_arrays(tmp_path, override, message):
    p = tmp_path / "bad.npz"
    make_riga_npz(p, **override)
    with pytest.raises(DataError, match=message):
        load_dataset(p, format="riga")


def test_riga_non_binary_and_truncated(tmp_path):
    p = tmp_path / "nb.npz"
    disc = np.zeros((3, 6, 12, 12), np.uint8)
    disc[0, 0, 0, 0] = 7
    make_riga_npz(p, disc=disc)
    with pytest.raises(DataError, match="binary.*7") as e:
        load_dataset(p, structure="disc")[0]
    assert str(p) in str(e.value)
    q = tmp_path / "t.npz"
    make_riga_npz(q)
    truncate(q, 0.7)
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(q, format="riga")


# --------------------------------------------------------------------------- QUBIQ
def test_qubiq_fixture(tmp_path):
    root = make_qubiq(tmp_path / "q", splits=("Training", "Validation"), tasks=(2, 3),
                      missing={("Training", 2, 2, 3)})
    ds = load_dataset(root)
    assert ds.format == "qubiq" and ds.task == 2 and ds.tasks == [2, 3]
    assert ds.case_ids[:2] == ["Training/case01", "Training/case02"] and ds.case_ids[-1] == "Validation/case03"
    s = ds[1]
    assert s.image.shape == (1, 8, 10) and s.masks.shape == (3, 8, 10)
    assert s.spacing == pytest.approx((0.5, 0.8))
    np.testing.assert_allclose(np.diag(s.affine), [0.5, 0.8, 1.0, 1.0])
    assert s.rater_ids == ["seg01", "seg02", "seg03"]
    assert s.rater_valid.tolist() == [True, True, False] and not s.masks[2].any()
    assert s.structure == "task02"
    # the values are nibabel's
    import nibabel as nib

    ref = np.asanyarray(nib.load(str(root / "Training/case02/image.nii.gz")).dataobj)
    np.testing.assert_array_equal(s.image[0], ref)
    assert load_dataset(root, task=3)[1].rater_valid.all()
    with pytest.raises(DataError, match="task 5 not present; tasks found: 2, 3"):
        load_dataset(root, task=5)
    # root pointing at the folder of cases: ids without the split
    assert load_dataset(root / "Training").case_ids == ["case01", "case02", "case03"]


def test_qubiq_volumes_channels_and_masks(tmp_path):
    root = make_qubiq(tmp_path / "v", shape=(6, 7, 5), zooms=(1.0, 1.0, 2.5))
    s = load_dataset(root)[0]
    assert s.image.shape == (1, 6, 7, 5) and s.masks.shape == (3, 6, 7, 5)
    assert s.spacing == pytest.approx((1.0, 1.0, 2.5))
    # 0/255 masks are accepted as binary
    r255 = make_qubiq(tmp_path / "w", mask_values=(0, 255))
    assert load_dataset(r255)[0].masks.any()
    # non-binary masks are not
    r3 = make_qubiq(tmp_path / "x", mask_values=(0, 3))
    with pytest.raises(DataError, match="binary.*3") as e:
        load_dataset(r3)[0]
    assert "task01_seg01.nii.gz" in str(e.value)


def test_qubiq_errors(tmp_path):
    import nibabel as nib

    # a mask whose shape differs from the image
    root = make_qubiq(tmp_path / "a", cases=1)
    nib.save(nib.Nifti1Image(np.zeros((8, 9), np.uint8), np.eye(4)), str(root / "Training/case01/task01_seg02.nii.gz"))
    with pytest.raises(DataError, match="differs from the case's other masks"):
        load_dataset(root)[0]
    # NaN intensities
    root = make_qubiq(tmp_path / "b", cases=1)
    a = np.ones((8, 10), np.float32)
    a[0, 0] = np.nan
    nib.save(nib.Nifti1Image(a, np.eye(4)), str(root / "Training/case01/image.nii.gz"))
    with pytest.raises(DataError, match="NaN") as e:
        load_dataset(root)[0]
    assert "image.nii.gz" in str(e.value)
    # a corrupt NIfTI
    root = make_qubiq(tmp_path / "c", cases=1)
    truncate(root / "Training/case01/task01_seg01.nii.gz", 0.3)
    with pytest.raises(DataError, match="task01_seg01"):
        load_dataset(root)[0]
    # zero raters: images only
    root = make_qubiq(tmp_path / "d", cases=2, raters=0)
    with pytest.raises(DataError, match="zero raters"):
        load_dataset(root, format="qubiq")
    # a case without masks for the task is left out and reported
    root = make_qubiq(tmp_path / "e", cases=2, raters=1, missing={("Training", 2, 1, 1)})
    ds = load_dataset(root, format="qubiq")
    assert ds.case_ids == ["Training/case01"] and ds.skipped == [("Training/case02", "no masks for task 1")]


# --------------------------------------------------------------------------- BU-BIL
def test_bubil_fixture(tmp_path):
    root = tmp_path / "bubil"
    w1 = make_bubil_dataset(root / "BU-BIL_Dataset1", missing={("B02", "Person2_ImageJ")})
    make_bubil_dataset(root / "BU-BIL_Dataset6", names=("TPre01",), ann_folder="ExpertAnnotations")
    ds = load_dataset(root)
    assert ds.format == "bubil"
    assert ds.case_ids == ["BU-BIL_Dataset1/B01", "BU-BIL_Dataset1/B02", "BU-BIL_Dataset6/TPre01"]
    assert ds.rater_ids == ["Person1_Amira", "Person1_ImageJ", "Person2_Amira", "Person2_ImageJ"]
    s = ds[1]
    assert s.image.shape == (1, 12, 16) and s.masks.shape == (4, 12, 16)
    # upper-case file names (Person1_ImageJ) and RGB masks (Person2_Amira) are read
    for r, rid in enumerate(s.rater_ids[:3]):
        np.testing.assert_array_equal(s.masks[r], w1[f"B02/{rid}"])
    assert s.rater_valid.tolist() == [True, True, True, False] and not s.masks[3].any()
    one = load_dataset(root / "BU-BIL_Dataset6")
    assert one.case_ids == ["TPre01"]
    assert ds.patient_ids == ds.case_ids
    assert load_dataset(root, group="dataset").patient_ids == ["BU-BIL_Dataset1"] * 2 + ["BU-BIL_Dataset6"]
    with pytest.raises(ValueError, match="group"):
        load_dataset(root, group="cell")


def test_bubil_larger_mask_frame_is_cropped_around_the_cell(tmp_path):
    d = tmp_path / "BU-BIL_Dataset6"
    w = make_bubil_dataset(d, names=("TPre01",), size=(9, 11), mask_size=(40, 50), ann_folder="ExpertAnnotations")
    s = load_dataset(d)[0]
    assert s.masks.shape == (4, 9, 11)
    # union of masks spans rows 18..22, cols 22..26 of the frame -> centre (20, 24)
    assert s.provenance["mask_offset"] == [16, 19] and s.provenance["aligned"] == "estimated"
    np.testing.assert_array_equal(s.masks[1], w["TPre01/Person1_ImageJ"][16:25, 19:30])
    assert s.masks.sum() == sum(m.sum() for m in w.values())  # nothing lost
    with pytest.raises(DataError, match=r"mask size \(40, 50\) does not match the image size \(9, 11\)"):
        load_dataset(d, size_mismatch="error")[0]


def test_bubil_bad_masks(tmp_path):
    from PIL import Image

    d = tmp_path / "BU-BIL_Dataset1"
    make_bubil_dataset(d, names=("B01",))
    f = d / "ExpertsAnnotations/Person1_Amira/seg_B01.png"
    a = np.asarray(Image.open(f)).copy()
    a[0, 0] = 128
    Image.fromarray(a).save(f)
    with pytest.raises(DataError, match="grey values 128") as e:
        load_dataset(d)[0]
    assert "seg_B01.png" in str(e.value)
    # a mask smaller than the image
    make_bubil_dataset(tmp_path / "s", names=("B01",), size=(12, 16), mask_size=(6, 8))
    with pytest.raises(DataError, match="does not match the image size"):
        load_dataset(tmp_path / "s")[0]
    # no rater folders at all
    z = tmp_path / "z"
    (z / "RawImages").mkdir(parents=True)
    (z / "ExpertsAnnotations").mkdir()
    with pytest.raises(DataError, match="zero raters"):
        load_dataset(z, format="bubil")


# --------------------------------------------------------------------------- ISIC
def test_isic_fixture(tmp_path):
    root = tmp_path / "isic"
    w = make_isic(root, drop={("002", "str_chrys", "Bob"), ("002", "str_chrys", "Cy")})
    ds = load_dataset(root)
    assert ds.format == "isic"
    assert ds.case_ids == ["UDA2_pilot_001/net_atyp", "UDA2_pilot_001/str_chrys",
                           "UDA2_pilot_002/net_atyp", "UDA2_pilot_002/str_chrys"]
    assert ds.patient_ids == ["UDA2_pilot_001"] * 2 + ["UDA2_pilot_002"] * 2
    s = ds[1]
    assert s.image.shape == (3, 9, 13) and s.structure == "str_chrys" and s.rater_ids == ["Ann", "Bob", "Cy"]
    for r, rid in enumerate(s.rater_ids):  # the bit-packing round trip is exact
        np.testing.assert_array_equal(s.masks[r], w[f"001/str_chrys__{rid}"])
    assert ds[3].rater_ids == ["Ann"]
    assert load_dataset(root, min_raters=2).case_ids == ds.case_ids[:3]
    assert load_dataset(root, feature="net_atyp").case_ids == ds.case_ids[::2]
    with pytest.raises(DataError, match="feature.*vessels"):
        load_dataset(root, feature="vessels")


def test_isic_errors(tmp_path):
    import json

    root = tmp_path / "isic"
    make_isic(root)
    idx = json.loads((root / "index.json").read_text())
    idx.append({"image": "001", "feature": "net_atyp", "rater": "Dee"})
    (root / "index.json").write_text(json.dumps(idx))
    with pytest.raises(DataError, match="missing mask 'net_atyp__Dee'") as e:
        load_dataset(root)[0]
    assert "UDA2_pilot_001_masks.npz" in str(e.value)
    # zero raters
    (root / "index.json").write_text("[]")
    with pytest.raises(DataError, match="zero raters"):
        load_dataset(root)
    (root / "index.json").write_text("{not json")
    with pytest.raises(DataError, match="index.json"):
        load_dataset(root)
    # a mask array with the wrong packed width
    root2 = tmp_path / "isic2"
    make_isic(root2, images=("001",))
    z = dict(np.load(root2 / "UDA2_pilot_001_masks.npz"))
    z["net_atyp__Ann"] = np.zeros((9, 5), np.uint8)
    np.savez(root2 / "UDA2_pilot_001_masks.npz", **z)
    with pytest.raises(DataError, match=r"bit-packed uint8 of shape \(9, 2\)"):
        load_dataset(root2)[0]


# --------------------------------------------------------------- detection (fixtures)
@pytest.fixture
def layouts(tmp_path):
    """One tiny example of each layout, plus things none of them should accept."""
    out = {}
    out["lidc"] = tmp_path / "lidc.npz"
    make_lidc_npz(out["lidc"])
    out["riga"] = tmp_path / "riga.npz"
    make_riga_npz(out["riga"])
    out["qubiq"] = make_qubiq(tmp_path / "qubiq")
    out["drishti"] = make_drishti(tmp_path / "drishti")
    out["bubil"] = tmp_path / "BU-BIL_Dataset1"
    make_bubil_dataset(out["bubil"])
    out["isic"] = tmp_path / "isic"
    make_isic(out["isic"])
    out["decathlon"] = make_decathlon(tmp_path / "Task01")
    out["brats"] = tmp_path / "brats"
    make_brats(out["brats"])
    return out


def test_each_detector_accepts_only_its_layout(layouts, tmp_path):
    for name, path in layouts.items():
        accepted = [d for d, fn in DETECTORS.items() if fn(path)]
        assert accepted == [name], (name, accepted)
        assert detect_format(path) == name
    # look-alikes and other formats: no dataset detector claims them
    np.savez(tmp_path / "other.npz", image=np.zeros((2, 4, 4)), masks=np.zeros((2, 1, 4, 4)))
    (tmp_path / "plain.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "notzip.npz").write_bytes(b"hello")
    canon = tmp_path / "canon" / "case1"
    canon.mkdir(parents=True)
    np.save(canon / "image.npy", np.zeros((1, 4, 4)))
    np.save(canon / "rater_0.npy", np.zeros((4, 4)))
    for p in (tmp_path / "other.npz", tmp_path / "plain.png", tmp_path / "notzip.npz", tmp_path / "canon"):
        assert not any(fn(p) for fn in DETECTORS.values()), p


def test_wrong_format_override_fails_clearly(layouts):
    with pytest.raises(DataError, match="missing array.*masks"):
        load_dataset(layouts["riga"], format="lidc")
    with pytest.raises(DataError, match="missing array.*rater_ok"):
        load_dataset(layouts["lidc"], format="riga")
    with pytest.raises(DataError, match="QUBIQ dataset is a folder"):
        load_dataset(layouts["lidc"], format="qubiq")
    with pytest.raises(DataError, match="no QUBIQ case folders"):
        load_dataset(layouts["bubil"], format="qubiq")
    with pytest.raises(DataError, match="not a BU-BIL folder"):
        load_dataset(layouts["isic"], format="bubil")
    with pytest.raises(DataError, match="index.json"):
        load_dataset(layouts["qubiq"], format="isic")


# ------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def lidc_real(shared_data):
    """One LIDC dataset for the module: its arrays are read once (~2 s)."""
    return load_dataset(shared_data / "lidc" / "lidc_crops_dev.npz")


def test_real_lidc_counts(lidc_real):
    ds = lidc_real
    assert len(ds) == 6214
    assert len(set(ds.patient_ids)) == 350
    assert len({c.rsplit("/", 1)[0] for c in ds.case_ids}) == 1044  # (patient, nodule)
    a = ds.arrays()
    packed = a["masks"]  # (N, 4, 128, 16) bit-packed
    nonempty = packed.reshape(len(ds), 4, -1).any(-1)
    assert int(nonempty.all(1).sum()) == 1882
    assert int((~nonempty.any(1)).sum()) == 17
    s = ds[100]
    assert s.image.shape == (1, 128, 128) and s.image.dtype == np.float32
    assert s.masks.shape == (4, 128, 128) and s.masks.dtype == bool
    assert s.patient_id == s.case_id.split("/")[0] and s.patient_id.startswith("LIDC-IDRI-")
    # the image is the file's uint8 crop, read independently with numpy
    with np.load(ds.path) as z:
        np.testing.assert_array_equal(s.image[0], z["image"][100])


def test_real_lidc_volumes(lidc_real, shared_data):
    vol = load_dataset(shared_data / "lidc", volumes=True)
    assert len(vol) == 1044  # no slice gaps in this file: one volume per nodule
    assert len(set(vol.patient_ids)) == 350
    assert vol._cache is lidc_real._cache  # same file: arrays read once
    v = vol[0]
    rows = v.provenance["rows"]
    assert v.image.shape == (1, len(rows), 128, 128) and v.masks.shape == (4, len(rows), 128, 128)
    assert v.provenance["slices"] == list(range(v.provenance["slices"][0], v.provenance["slices"][0] + len(rows)))
    for k, r in enumerate(rows):
        np.testing.assert_array_equal(v.masks[:, k], lidc_real[r].masks)


def test_real_riga(shared_data):
    path = shared_data / "riga_binrushed2" / "riga_binrushed2_512crop.npz"
    both = load_dataset(path)
    assert len(both) == 94 and len(set(both.patient_ids)) == 47
    disc = load_dataset(path, structure="disc")
    assert len(disc) == 47
    bad = {(disc.case_ids[i], k + 1) for i, k in zip(*np.nonzero(~disc.rater_ok))}
    assert bad == {("case20", 3), ("case20", 4), ("case20", 5), ("case23", 1), ("case23", 3), ("case23", 5), ("case23", 6)}
    d20, c20 = both[38], both[39]
    assert (d20.case_id, c20.case_id) == ("case20/disc", "case20/cup")
    assert d20.image.shape == (3, 512, 512) and d20.masks.shape == (6, 512, 512)
    assert d20.rater_valid.tolist() == [True, True, False, False, False, True]
    assert not d20.masks[~d20.rater_valid].any()
    # every valid rater's cup lies inside that rater's disc
    v = c20.rater_valid
    assert (c20.masks[v] & ~d20.masks[v]).sum() == 0 and c20.masks[v].sum() > 0


def test_real_qubiq(shared_data):
    ds = load_dataset(shared_data / "qubiq_brain_growth")
    assert ds.format == "qubiq" and len(ds) == 39 and ds.raters == list(range(1, 8))
    s = ds[0]
    assert s.case_id == "Training/case01"
    assert s.image.shape == (1, 128, 128) and s.masks.shape == (7, 128, 128)
    assert s.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(s.affine, np.eye(4))
    assert s.rater_valid.all() and 0 < s.masks.mean() < 0.5
    with pytest.raises(DataError, match="tasks found: 1"):
        load_dataset(shared_data / "qubiq_brain_growth", task=2)


def test_real_bubil(shared_data):
    ds = load_dataset(shared_data / "bubil")
    assert len(ds) == 70 and len(ds.rater_ids) == 10 and ds.rater_ids[0] == "Person1_Amira"
    assert sum(c.startswith("BU-BIL_Dataset1/") for c in ds.case_ids) == 35
    assert sum(c.startswith("BU-BIL_Dataset6/") for c in ds.case_ids) == 35
    b1 = ds[ds.case_ids.index("BU-BIL_Dataset1/B01")]
    assert b1.image.shape == (1, 811, 1024) and b1.masks.shape == (10, 811, 1024) and b1.rater_valid.all()
    # B02 is a palette PNG of another size; Person5_Amira/seg_B04 has 3 pixels of value 24
    assert ds[ds.case_ids.index("BU-BIL_Dataset1/B02")].image.shape == (1, 1030, 1300)
    b4 = ds[ds.case_ids.index("BU-BIL_Dataset1/B04")]
    assert b4.rater_valid.all()
    t1 = ds[ds.case_ids.index("BU-BIL_Dataset6/TPre01")]
    assert t1.image.shape == (1, 24, 25) and t1.masks.shape == (10, 24, 25)
    assert t1.provenance["mask_frame"] == [512, 512] and t1.provenance["aligned"] == "estimated"
    assert t1.masks.sum(axis=(1, 2)).tolist() == [119, 92, 113, 113, 141, 247, 132, 131, 144, 106]


def test_real_isic(shared_data):
    ds = load_dataset(shared_data / "isic_uda2_features")
    assert len(set(ds.patient_ids)) == 40
    assert sum(len(r) for *_, r in ds.items) == 198
    assert len(ds) == 74 and len(load_dataset(shared_data / "isic_uda2_features", min_raters=2)) == 57
    s = ds[0]
    assert s.case_id == "UDA2_pilot_002/net_atyp" and s.rater_ids == ["Braun", "Carrera", "Marghoob"]
    assert s.image.shape == (3, 923, 960) and s.masks.shape == (3, 923, 960)
    assert s.masks.sum(axis=(1, 2)).tolist() == [149870, 22671, 15247]


def test_real_detection_and_override(shared_data):
    expect = {
        "lidc/lidc_crops_dev.npz": "lidc",
        "lidc": "lidc",
        "riga_binrushed2/riga_binrushed2_512crop.npz": "riga",
        "qubiq_brain_growth": "qubiq",
        "qubiq_brain_growth/Training": "qubiq",
        "bubil": "bubil",
        "bubil/BU-BIL_Dataset6": "bubil",
        "isic_uda2_features": "isic",
        "left_atrium": "decathlon",
        "brats2018_flair": "brats",
    }
    for rel, name in expect.items():
        assert detect_format(shared_data / rel) == name, rel
    with pytest.raises(DataError, match="missing array"):
        load_dataset(shared_data / "riga_binrushed2/riga_binrushed2_512crop.npz", format="lidc")
    with pytest.raises(DataError, match="no QUBIQ case folders"):
        load_dataset(shared_data / "bubil", format="qubiq")


def test_detection_order_does_not_depend_on_import_order(monkeypatch):
    """A QUBIQ 'Training' folder is also a valid canonical folder; the specific
    layout must win even when the generic readers registered first."""
    from clinloop.data import registry

    registry._ensure_loaded()
    # simulate canonical/single having been imported (registered) before qubiq
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "READERS", dict(registry.READERS))
    registry.READERS["qubiq"] = registry.READERS.pop("qubiq")
    registry._ensure_loaded()
    names = list(registry.READERS)
    assert names.index("qubiq") < names.index("canonical") < names.index("single")
    assert names.index("decathlon") < names.index("brats") < names.index("canonical")
