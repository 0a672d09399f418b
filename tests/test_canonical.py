"""Canonical folder layout and the single-image reader: round trips (2-D, 3-D),
dataset.json semantics (missing vs empty raters), validation, all-or-nothing writes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clinloop.data import MultiRaterSample, load_dataset
from clinloop.data.readers.canonical import validate_dataset_json, write_canonical
from clinloop.errors import DataError
from test_io import write_series


def _samples_2d():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 12, 10)).astype(np.float32)
    grey_float = rng.normal(size=(1, 12, 10)).astype(np.float32)
    masks = rng.random((3, 12, 10)) > 0.6
    masks[2] = False  # an empty but valid rater
    return [
        MultiRaterSample(rgb, masks, case_id="P1/a", patient_id="P1", structure="cup", spacing=(0.5, 0.25),
                         rater_valid=np.array([True, False, True]), rater_ids=["r1", "r2", "r10"]),
        MultiRaterSample(grey_float, masks[:2], case_id="P1-b", patient_id="P1", rater_ids=["r1", "r2"]),
        MultiRaterSample(rgb[:1], np.zeros((0, 12, 10), bool), case_id="unlabeled"),
    ]


def _assert_same(a: MultiRaterSample, b: MultiRaterSample):
    assert a.case_id == b.case_id and a.patient_id == b.patient_id and a.structure == b.structure
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.rater_valid, b.rater_valid)
    np.testing.assert_array_equal(a.masks[a.rater_valid], b.masks[b.rater_valid])
    assert not b.masks[~b.rater_valid].any()  # a missing rater loads as an all-false, invalid mask
    assert list(a.rater_ids) == list(b.rater_ids)
    np.testing.assert_allclose(a.spacing, b.spacing)
    if a.affine is None:
        assert b.affine is None
    else:
        np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)


@pytest.mark.parametrize("mask_format", ["png", "npy", "nii.gz"])
def test_round_trip_2d(tmp_path, mask_format):
    samples = _samples_2d()
    write_canonical(samples, tmp_path / "out", mask_format=mask_format, name="demo", modality="fundus")
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert files == ["P1-b/image.npy", f"P1-b/rater_r1.{mask_format}", f"P1-b/rater_r2.{mask_format}",
                     "P1_a/image.png", f"P1_a/rater_r1.{mask_format}", f"P1_a/rater_r10.{mask_format}",
                     "dataset.json", "unlabeled/image.png"]  # invalid rater r2 of P1/a: no file
    ds = load_dataset(tmp_path / "out")
    assert ds.format == "canonical" and ds.name == "demo"
    assert ds.case_ids == ["P1-b", "P1/a", "unlabeled"]  # folder order; original ids from dataset.json
    assert ds.patient_ids == ["P1", "P1", "unlabeled"]
    back = {s.case_id: s for s in ds}
    for s in samples:
        _assert_same(s, back[s.case_id])
    assert back["unlabeled"].n_raters == 0


def test_round_trip_3d_affine_and_npy(tmp_path):
    rng = np.random.default_rng(1)
    aff = np.array([[-0.7, 0, 0, 90], [0, 0, 0.8, -20], [0, 2.5, 0, 11], [0, 0, 0, 1.0]])
    aff = aff[:, [2, 1, 0, 3]]  # columns: d, h, w
    ct = rng.integers(-1000, 1500, (1, 4, 6, 5)).astype(np.float32)
    m = rng.random((2, 4, 6, 5)) > 0.5
    s1 = MultiRaterSample(ct, m, case_id="ct", spacing=(0.8, 2.5, 0.7), affine=aff)
    s2 = MultiRaterSample(rng.random((2, 4, 6, 5)).astype(np.float32), m[:1], case_id="mc", spacing=(3.0, 1.0, 1.0))
    for fmt in ("nii.gz", "npy"):
        out = tmp_path / fmt
        write_canonical([s1, s2], out, mask_format=fmt)
        assert (out / "ct" / "image.nii.gz").exists() and (out / "mc" / "image.npy").exists()
        ds = load_dataset(out)
        _assert_same(s1, ds[0])
        _assert_same(s2, ds[1])
    # the NIfTI itself carries the geometry: dropping dataset.json keeps spacing and affine
    (tmp_path / "nii.gz" / "dataset.json").unlink()
    s = load_dataset(tmp_path / "nii.gz")[0]
    np.testing.assert_allclose(s.affine, aff, atol=1e-5)
    np.testing.assert_allclose(s.spacing, (0.8, 2.5, 0.7), rtol=1e-6)  # column norms of aff


def test_3d_png_masks_rejected_nothing_written(tmp_path):
    s = MultiRaterSample(np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 3, 4, 4), bool), case_id="v")
    with pytest.raises(DataError, match="case 'v' is 3-D; PNG masks are 2-D only"):
        write_canonical([s], tmp_path / "out", mask_format="png")
    assert list(tmp_path.iterdir()) == []  # no output, no temporary folder


def test_failure_midway_leaves_nothing(tmp_path):
    good = _samples_2d()[0]
    bad = MultiRaterSample(np.zeros((1, 4, 4), np.float32), np.zeros((1, 4, 4), bool), case_id="b",
                           rater_ids=["a/b"])
    with pytest.raises(DataError, match="rater id 'a/b' of case 'b' cannot be a file name"):
        write_canonical([good, bad], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    dup = [good, MultiRaterSample(good.image, good.masks, case_id="P1_a", rater_ids=good.rater_ids)]
    with pytest.raises(DataError, match="two cases map to the folder name 'P1_a'"):
        write_canonical(dup, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="no cases"):
        write_canonical([], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "exists").mkdir()
    with pytest.raises(DataError, match="exists: destination already exists"):
        write_canonical([good], tmp_path / "exists")


def _hand_made(root, dataset_json=None):
    """Two cases written by hand: PNG 0/255 masks, rater ids needing natural order."""
    for cid in ("case10", "case2"):
        d = root / cid
        d.mkdir(parents=True)
        Image.fromarray(np.full((4, 5), 7, np.uint8)).save(d / "image.png")
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 1:4] = 255
    Image.fromarray(m).save(root / "case2" / "rater_10.png")
    Image.fromarray(m).save(root / "case2" / "rater_2.png")
    (root / "case2" / "notes.txt").write_text("ignored")
    if dataset_json is not None:
        (root / "dataset.json").write_text(json.dumps(dataset_json))
    return root


def test_hand_made_folder_natural_order_and_unlabeled(tmp_path):
    ds = load_dataset(_hand_made(tmp_path / "c"))
    assert ds.case_ids == ["case2", "case10"] and ds.name == "c"
    s = ds[0]
    assert s.rater_ids == ["2", "10"] and s.masks.sum() == 12 and s.rater_valid.all()
    assert s.spacing == (1.0, 1.0) and s.affine is None
    assert ds[1].n_raters == 0  # no rater files: unlabeled, allowed
    with pytest.raises(DataError, match="no rater masks"):
        ds[1].require_raters()


def test_dataset_json_missing_vs_empty_and_spacing(tmp_path):
    doc = {"name": "x", "spacing": [0.3, 0.4], "raters": ["2", "10", "7"],
           "cases": {"case10": {"spacing": [1.5, 2.0], "patient_id": "p9", "structure": "disc"}}}
    ds = load_dataset(_hand_made(tmp_path / "c", doc))
    s2, s10 = ds[0], ds[1]
    assert s2.rater_ids == ["2", "10", "7"]
    np.testing.assert_array_equal(s2.rater_valid, [True, True, False])  # 7 listed, no file: missing
    assert s2.spacing == (0.3, 0.4)  # top-level default (PNG has no spacing)
    assert s10.spacing == (1.5, 2.0) and s10.patient_id == "p9" and s10.structure == "disc"
    assert not s10.rater_valid.any() and s10.n_raters == 3
    assert ds.patient_ids == ["case2", "p9"]


@pytest.mark.parametrize("doc,msg", [
    ({"nmae": "typo"}, "unknown key.*nmae"),
    ({"spacing": [1, -1]}, "spacing must be a list of 2 or 3 positive numbers"),
    ({"raters": ["a b"]}, "raters must be a list of rater ids"),
    ({"raters": ["a", "a"]}, "lists a rater twice"),
    ({"cases": {"case2": {"affine": [[1, 0], [0, 1]]}}}, "cases.case2.affine must be a 4x4"),
    ({"cases": {"case2": {"colour": 1}}}, "cases.case2: unknown key"),
    ({"clinloop_canonical": 2}, "unsupported clinloop_canonical version 2"),
    ([1, 2], "dataset.json must be an object"),
])
def test_dataset_json_schema_errors(tmp_path, doc, msg):
    with pytest.raises(DataError, match=msg):
        validate_dataset_json(doc)
    root = _hand_made(tmp_path / "c", doc)
    with pytest.raises(DataError, match=msg):
        load_dataset(root, format="canonical")


def test_dataset_json_inconsistencies(tmp_path):
    root = _hand_made(tmp_path / "c", {"raters": ["2"]})
    with pytest.raises(DataError, match=r"case2: rater file\(s\) rater_10 not listed in dataset.json"):
        load_dataset(root)[0]
    (root / "dataset.json").write_text(json.dumps({"cases": {"case99": {}}}))
    with pytest.raises(DataError, match="dataset.json describes case folder.*case99"):
        load_dataset(root)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset.json: cannot parse JSON"):
        load_dataset(root)


def test_bad_case_folders(tmp_path):
    root = _hand_made(tmp_path / "c")
    np.save(root / "case2" / "rater_3.npy", np.zeros((4, 6), bool))
    with pytest.raises(DataError, match=r"rater_3.npy: mask shape \(4, 6\) does not match the image's spatial shape \(4, 5\)"):
        load_dataset(root)[0]
    np.save(root / "case2" / "rater_3.npy", np.array([[0, 2, 0, 0, 0]] * 4))
    with pytest.raises(DataError, match="rater_3.npy: mask is not binary: values 0, 2"):
        load_dataset(root)[0]
    (root / "case2" / "rater_3.npy").unlink()
    (root / "case2" / "rater_4.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="rater_4.jpg: unsupported rater mask type .jpg"):
        load_dataset(root)[0]
    (root / "case2" / "rater_4.jpg").unlink()
    np.save(root / "case2" / "image.npy", np.zeros((4, 5)))
    with pytest.raises(DataError, match=r"case2: case has 2 images \(image.npy, image.png\)"):
        load_dataset(root)[0]
    (root / "case2" / "image.npy").unlink()
    raw = (root / "case10" / "image.png").read_bytes()
    (root / "case10" / "image.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="case10/image.png: cannot decode image"):
        load_dataset(root)[1]
    (root / "empty_case").mkdir()
    with pytest.raises(DataError, match="empty_case: case folder has no image"):
        load_dataset(root, format="canonical")
    with pytest.raises(DataError, match="takes no options"):
        load_dataset(tmp_path / "c", format="canonical", structure="cup")


def test_dicom_series_case(tmp_path):
    vol = np.arange(3 * 4 * 4, dtype=np.int16).reshape(3, 4, 4)
    write_series(tmp_path / "c" / "ct1" / "image", vol, intercept=-1000.0)
    m = np.zeros((3, 4, 4), bool)
    m[1, 1:3, 1:3] = True
    np.save(tmp_path / "c" / "ct1" / "rater_a.npy", m)
    ds = load_dataset(tmp_path / "c")
    assert ds.format == "canonical"
    s = ds[0]
    np.testing.assert_array_equal(s.image[0], vol - 1000.0)
    assert s.spacing == (2.5, 0.7, 0.8) and s.masks.sum() == 4 and s.affine is not None
    write_canonical(ds, tmp_path / "nii")  # DICOM -> NIfTI keeps HU, spacing and geometry
    _assert_same(s, load_dataset(tmp_path / "nii")[0])


def test_unknown_layout(tmp_path):
    (tmp_path / "x" / "sub").mkdir(parents=True)
    (tmp_path / "x" / "sub" / "readme.txt").write_text("?")
    with pytest.raises(DataError, match="x: unknown layout; pass --format"):
        load_dataset(tmp_path / "x")


# ------------------------------------------------------------------ single
def test_single_reader(tmp_path):
    Image.new("RGB", (5, 4), (1, 2, 3)).save(tmp_path / "photo.png")
    ds = load_dataset(tmp_path / "photo.png")
    assert ds.format == "single" and len(ds) == 1 and ds.case_ids == ["photo"]
    s = ds[0]
    assert s.image.shape == (3, 4, 5) and s.masks.shape == (0, 4, 5) and s.n_raters == 0
    write_series(tmp_path / "series", np.zeros((3, 4, 4), np.int16))
    ds = load_dataset(tmp_path / "series")
    assert ds.format == "single" and ds[0].image.shape == (1, 3, 4, 4) and ds[0].provenance["format"] == "single"
    assert ds[0].provenance["file_format"] == "dicom-series"
    np.save(tmp_path / "rgb.npy", np.zeros((3, 4, 5)))
    assert load_dataset(tmp_path / "rgb.npy")[0].image.shape == (1, 3, 4, 5)
    assert load_dataset(tmp_path / "rgb.npy", channels_first=True)[0].image.shape == (3, 4, 5)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt: unknown layout"):
        load_dataset(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="notes.txt: not an image file"):
        load_dataset(tmp_path / "notes.txt", format="single")
    with pytest.raises(DataError, match="takes only channels_first"):
        load_dataset(tmp_path / "photo.png", format="single", task=1)


def test_single_reader_brats(shared_data):
    s = load_dataset(shared_data / "brats_sample" / "BraTS2021_01646_flair.nii.gz")[0]
    assert s.image.shape == (1, 104, 160, 160) and s.spacing == (1.5, 1.5, 1.5)  # README: 160x160x104 @ 1.5 mm
    assert s.n_raters == 0
