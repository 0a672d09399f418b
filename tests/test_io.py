"""clinloop.data.io: every format, axis conventions against nibabel/SimpleITK,
and bad input (missing, truncated, corrupt, wrong rank, NaN, non-binary)."""
from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from clinloop.data.io import is_dicom_series_dir, read_image, read_mask, write_image, write_mask
from clinloop.errors import DataError


# ------------------------------------------------------------------ DICOM maker
def write_dicom(path, pixels, *, position=(0.0, 0.0, 0.0), orientation=(1, 0, 0, 0, 1, 0), spacing=(0.7, 0.8),
                slope=1.0, intercept=0.0, instance=1, series_uid="1.2.826.0.1.3680043.8.498.1", geometry=True):
    """A minimal, standard-conforming CT slice (int16) written with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 2.0
    if geometry:
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = list(position)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.int16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_series(folder, vol, z0=-10.0, dz=2.5, shuffle=True, **kw):
    """Slices of ``vol`` (D,H,W) at z = z0 + k*dz, files named in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(1).permutation(len(vol)) if shuffle else np.arange(len(vol))
    for fname, k in enumerate(order):
        write_dicom(folder / f"f{fname:03d}.dcm", vol[k], position=(-5.0, 3.0, z0 + k * dz), instance=int(k) + 1, **kw)
    return folder


# ------------------------------------------------------------------ PNG / JPEG
@pytest.mark.parametrize("mode,expect_c", [("L", 1), ("RGB", 3), ("RGBA", 3), ("LA", 1), ("P", 3)])
def test_png_modes_to_channels(tmp_path, mode, expect_c):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(rgb, "RGB")
    im = im.convert(mode)
    im.save(tmp_path / "a.png")
    arr, spacing, affine, meta = read_image(tmp_path / "a.png")
    assert arr.shape == (expect_c, 5, 7) and arr.dtype == np.float32
    assert spacing == (1.0, 1.0) and affine is None and meta["spacing_known"] is False
    if mode == "RGB" or mode == "RGBA":
        np.testing.assert_array_equal(arr, np.moveaxis(rgb, -1, 0))  # alpha dropped, values kept
    if mode == "L":
        np.testing.assert_array_equal(arr[0], np.asarray(Image.fromarray(rgb).convert("L")))


def test_png_16bit_values_kept(tmp_path):
    a = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "a.png")
    arr = read_image(tmp_path / "a.png")[0]
    np.testing.assert_array_equal(arr[0], a.astype(np.float32))


def test_jpeg_grey_and_rgb(tmp_path):
    Image.new("L", (6, 4), 100).save(tmp_path / "g.jpg")
    Image.new("RGB", (6, 4), (10, 200, 30)).save(tmp_path / "c.jpeg", quality=100)
    g = read_image(tmp_path / "g.jpg")[0]
    c = read_image(tmp_path / "c.jpeg")[0]
    assert g.shape == (1, 4, 6) and c.shape == (3, 4, 6)
    np.testing.assert_allclose(c[:, 0, 0], [10, 200, 30], atol=3)  # lossy


@pytest.mark.parametrize("name,fmt", [("a.png", "PNG"), ("a.jpg", "JPEG")])
def test_truncated_png_jpeg(tmp_path, name, fmt):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full", format=fmt)
    data = (tmp_path / "full").read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"a\.(png|jpg): cannot decode image"):
        read_image(tmp_path / name)


def test_garbage_png_and_missing_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="x.png: cannot decode"):
        read_image(tmp_path / "x.png")
    with pytest.raises(DataError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(DataError, match="nope.png: no such file"):
        read_mask(tmp_path / "nope.png")
    (tmp_path / "a.tif").write_bytes(b"II*\0")
    with pytest.raises(DataError, match="unsupported image type .tif"):
        read_image(tmp_path / "a.tif")


# ------------------------------------------------------------------------- NPY
def test_npy_rank_rule(tmp_path):
    rng = np.random.default_rng(0)
    a2, a3, a4 = rng.random((4, 5)), rng.random((3, 4, 5)), rng.random((2, 3, 4, 5))
    for n, a in (("a2", a2), ("a3", a3), ("a4", a4), ("a1", rng.random(5))):
        np.save(tmp_path / f"{n}.npy", a)
    assert read_image(tmp_path / "a2.npy")[0].shape == (1, 4, 5)
    img, sp, _, _ = read_image(tmp_path / "a3.npy")  # (D,H,W) grey volume by default
    assert img.shape == (1, 3, 4, 5) and sp == (1.0, 1.0, 1.0)
    img, sp, _, _ = read_image(tmp_path / "a3.npy", channels_first=True)  # (C,H,W)
    assert img.shape == (3, 4, 5) and sp == (1.0, 1.0)
    np.testing.assert_allclose(img, a3.astype(np.float32))
    assert read_image(tmp_path / "a4.npy", channels_first=True)[0].shape == (2, 3, 4, 5)
    with pytest.raises(DataError, match=r"a4.npy: .npy image must be \(H,W\) or \(D,H,W\), got shape \(2, 3, 4, 5\)"):
        read_image(tmp_path / "a4.npy")
    with pytest.raises(DataError, match=r"a1.npy: .*got shape \(5,\)"):
        read_image(tmp_path / "a1.npy")
    with pytest.raises(DataError, match="channels-first"):
        read_image(tmp_path / "a2.npy", channels_first=True)


def test_npy_nan_inf_empty_corrupt(tmp_path):
    a = np.ones((4, 4))
    a[1, 2] = np.nan
    a[0, 0] = np.inf
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(DataError, match="nan.npy: image has 2 NaN/Inf values"):
        read_image(tmp_path / "nan.npy")
    np.save(tmp_path / "huge.npy", np.full((4, 4), 1e302))  # finite, but not in float32
    with pytest.raises(DataError, match=r"huge.npy: image has values up to 1e\+302, beyond float32's range"):
        read_image(tmp_path / "huge.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 4)))
    with pytest.raises(DataError, match=r"empty.npy: image is empty \(shape \(0, 4\)\)"):
        read_image(tmp_path / "empty.npy")
    np.save(tmp_path / "full.npy", np.ones((50, 50)))
    raw = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(raw[:300])
    with pytest.raises(DataError, match="trunc.npy: cannot read .npy"):
        read_image(tmp_path / "trunc.npy")
    np.save(tmp_path / "obj.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match="obj.npy: unsupported .npy content"):
        read_image(tmp_path / "obj.npy")


# ----------------------------------------------------------------------- NIfTI
def test_nifti_3d_axis_order_against_nibabel(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((6, 5, 4)).astype(np.float32)  # nibabel (i,j,k)
    aff = np.array([[0, -0.8, 0, 10], [0.7, 0, 0, -3], [0, 0, 2.5, 7], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "v.nii.gz")
    img, spacing, affine, meta = read_image(tmp_path / "v.nii.gz")
    assert img.shape == (1, 4, 5, 6)  # (C, D=k, H=j, W=i)
    assert spacing == (2.5, 0.8, 0.7)  # zooms reversed
    i, j, k = 5, 3, 2
    assert img[0, k, j, i] == data[i, j, k]
    np.testing.assert_allclose(affine @ [k, j, i, 1], aff @ [i, j, k, 1], atol=1e-5)  # sform is float32
    assert meta["spacing_known"] is True


def test_nifti_2d_and_trailing_singleton(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(4, 3)  # (i, j)
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.6, 1, 1])), tmp_path / "a.nii")
    img, spacing, affine, _ = read_image(tmp_path / "a.nii")
    assert img.shape == (1, 3, 4) and spacing == (0.6, 0.5)
    np.testing.assert_array_equal(img[0], data.T)
    np.testing.assert_allclose(affine @ [2, 1, 0, 1], [0.5 * 1, 0.6 * 2, 0, 1])  # (row, col, 0)
    aff = np.array([[0.5, 0, 0, 10], [0, 0.6, 0, 20], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    for extra in ((None,), (None, None)):  # (4,3,1) and (4,3,1,1): one slice is a 2-D image, its place kept
        nib.save(nib.Nifti1Image(data[(..., *extra)], aff), tmp_path / "b.nii.gz")
        img, spacing, affine, _ = read_image(tmp_path / "b.nii.gz")
        assert img.shape == (1, 3, 4) and spacing == (0.6, 0.5)
        np.testing.assert_array_equal(img[0], data.T)
        np.testing.assert_allclose(affine @ [2, 1, 0, 1], aff @ [1, 2, 0, 1])  # (row, col) -> the same point


def test_nifti_bad_inputs(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), tmp_path / "four.nii.gz")
    with pytest.raises(DataError, match=r"four.nii.gz: NIfTI must be 2-D or 3-D, got shape \(3, 3, 3, 2\)"):
        read_image(tmp_path / "four.nii.gz")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), np.eye(4)),
             tmp_path / "ok.nii.gz")
    raw = (tmp_path / "ok.nii.gz").read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="trunc.nii.gz: cannot read NIfTI"):
        read_image(tmp_path / "trunc.nii.gz")
    unz = gzip.decompress(raw)
    (tmp_path / "trunc.nii").write_bytes(unz[: len(unz) // 2])
    with pytest.raises(DataError, match="trunc.nii: cannot read NIfTI"):
        read_image(tmp_path / "trunc.nii")
    (tmp_path / "junk.nii").write_bytes(b"\0" * 10)
    with pytest.raises(DataError, match="junk.nii: cannot read NIfTI"):
        read_image(tmp_path / "junk.nii")
    d = np.ones((3, 3, 3), np.float32)
    d[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(d, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(DataError, match="nan.nii.gz: image has 1 NaN/Inf"):
        read_image(tmp_path / "nan.nii.gz")


@pytest.mark.parametrize("suffix", ["nii.gz", "nii", "npy", "png"])
def test_mask_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(3)
    m = rng.random((5, 7)) > 0.5
    if suffix != "png":
        m = rng.random((3, 5, 7)) > 0.5
    aff = np.array([[0, 0, 1.5, 4], [0, 2.0, 0, 5], [3.0, 0, 0, 6], [0, 0, 0, 1]]) if m.ndim == 3 else None
    write_mask(tmp_path / f"m.{suffix}", m, affine=aff)
    back = read_mask(tmp_path / f"m.{suffix}", like_shape=m.shape)
    np.testing.assert_array_equal(back, m)
    if suffix.startswith("nii"):
        _, spacing, affine, _ = read_image(tmp_path / f"m.{suffix}")
        np.testing.assert_allclose(affine, aff)
        assert spacing == (3.0, 2.0, 1.5)
    if suffix == "png":  # written as 0/255
        assert set(np.unique(np.asarray(Image.open(tmp_path / "m.png")))) == {0, 255}


def test_write_mask_spacing_without_affine(tmp_path):
    write_mask(tmp_path / "m.nii.gz", np.ones((2, 3, 4), bool), spacing=(2.5, 0.7, 0.6))
    assert nib.load(tmp_path / "m.nii.gz").shape == (4, 3, 2)
    assert read_image(tmp_path / "m.nii.gz")[1] == (2.5, 0.7, 0.6)


def test_read_mask_binary_rules(tmp_path):
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(tmp_path / "v.png")
    Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.array([[0, 1], [255, 0]], np.uint8)).save(tmp_path / "mixed.png")
    expect = np.array([[0, 1], [1, 0]], bool)
    np.testing.assert_array_equal(read_mask(tmp_path / "v.png"), expect)
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), expect)
    with pytest.raises(DataError, match=r"mixed.png: mask is not binary: values 0, 1, 255 \(expected 0/1 or 0/255\)"):
        read_mask(tmp_path / "mixed.png")
    np.save(tmp_path / "m255.npy", np.array([[0, 255]], np.uint8))
    with pytest.raises(DataError, match=r"m255.npy: mask is not binary: values 0, 255 \(expected 0/1\)"):
        read_mask(tmp_path / "m255.npy")
    np.save(tmp_path / "soft.npy", np.array([[0, 0.5, 1.0]]))
    with pytest.raises(DataError, match="soft.npy: mask is not binary: values 0, 0.5, 1"):
        read_mask(tmp_path / "soft.npy")
    np.save(tmp_path / "nan.npy", np.array([[0, np.nan]]))
    with pytest.raises(DataError, match="nan.npy: mask has 1 NaN/Inf"):
        read_mask(tmp_path / "nan.npy")
    np.save(tmp_path / "ok.npy", np.array([[0, 1.0]]))
    with pytest.raises(DataError, match=r"ok.npy: mask shape \(1, 2\) does not match the image's spatial shape \(2, 2\)"):
        read_mask(tmp_path / "ok.npy", like_shape=(2, 2))
    np.save(tmp_path / "one.npy", np.zeros(4))
    with pytest.raises(DataError, match=r"one.npy: mask must be 2-D \(H,W\) or 3-D"):
        read_mask(tmp_path / "one.npy")
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="rgb.png: mask PNG has 3 differing colour channels"):
        read_mask(tmp_path / "rgb.png")
    (tmp_path / "m.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported mask type .jpg"):
        read_mask(tmp_path / "m.jpg")


def test_write_mask_rejects(tmp_path):
    with pytest.raises(ValueError, match="PNG holds 2-D masks only"):
        write_mask(tmp_path / "m.png", np.zeros((2, 3, 3), bool))
    with pytest.raises(ValueError, match="mask is not binary"):
        write_mask(tmp_path / "m.npy", np.array([[0, 2]]))
    with pytest.raises(ValueError, match="unsupported mask type"):
        write_mask(tmp_path / "m.tif", np.zeros((3, 3), bool))
    assert list(tmp_path.iterdir()) == []  # nothing (not even temp files) left behind


def test_write_image_round_trip_and_rejects(tmp_path):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    write_image(tmp_path / "f.npy", f)
    np.testing.assert_array_equal(read_image(tmp_path / "f.npy", channels_first=True)[0], f)
    hu = rng.integers(-1000, 2000, (1, 3, 4, 5)).astype(np.float32)
    write_image(tmp_path / "v.nii.gz", hu, spacing=(2.0, 0.5, 0.5))
    img, sp, _, _ = read_image(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(img, hu)
    assert sp == (2.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="non-negative integer"):
        write_image(tmp_path / "x.png", f[:1, 0])
    with pytest.raises(ValueError, match="single-channel"):
        write_image(tmp_path / "x.nii.gz", f)
    with pytest.raises(ValueError, match="NaN/Inf"):
        write_image(tmp_path / "x.npy", np.full((1, 2, 2), np.nan))
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.nii.gz").exists()


# ----------------------------------------------------------------------- DICOM
def test_dicom_file_hu_spacing_affine(tmp_path):
    px = np.array([[0, 100, 200], [300, 400, 500]], np.int16)
    write_dicom(tmp_path / "s.dcm", px, position=(-5.0, 3.0, 7.0), spacing=(0.7, 0.8), slope=2.0, intercept=-1024.0)
    img, spacing, affine, meta = read_image(tmp_path / "s.dcm")
    np.testing.assert_array_equal(img[0], px * 2.0 - 1024.0)  # HU
    assert img.shape == (1, 2, 3) and spacing == (0.7, 0.8) and meta["modality"] == "CT"
    # pixel (row 1, col 2) sits at IPP + col*dc*X + row*dr*Y in LPS; clinloop is RAS
    lps = np.array([-5.0, 3.0, 7.0]) + 2 * 0.8 * np.array([1, 0, 0]) + 1 * 0.7 * np.array([0, 1, 0])
    np.testing.assert_allclose((affine @ [1, 2, 0, 1])[:3], lps * [-1, -1, 1])


def test_dicom_without_suffix_detected_by_magic(tmp_path):
    px = np.array([[1, 2], [3, 40]], np.int16)
    write_dicom(tmp_path / "IM0001", px)
    img, _, _, meta = read_image(tmp_path / "IM0001")
    assert img.shape == (1, 2, 2) and meta["format"] == "dicom"
    np.testing.assert_array_equal(img[0], px)  # pixel values intact


def test_dicom_truncated_and_garbage(tmp_path):
    write_dicom(tmp_path / "ok.dcm", np.arange(64 * 64, dtype=np.int16).reshape(64, 64))
    raw = (tmp_path / "ok.dcm").read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(raw[: len(raw) - 4000])
    with pytest.raises(DataError, match=r"trunc.dcm: cannot (read DICOM|decode DICOM pixel data)"):
        read_image(tmp_path / "trunc.dcm")
    (tmp_path / "head.dcm").write_bytes(raw[:200])
    with pytest.raises(DataError, match=r"head.dcm: (cannot read DICOM|DICOM file has no pixel data)"):
        read_image(tmp_path / "head.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"hello")
    with pytest.raises(DataError, match="junk.dcm: cannot read DICOM"):
        read_image(tmp_path / "junk.dcm")


def test_dicom_series_sorted_by_position_vs_simpleitk(tmp_path):
    vol = (np.arange(5)[:, None, None] * 100 + np.arange(12).reshape(3, 4)).astype(np.int16)
    folder = write_series(tmp_path / "ser", vol, z0=-10.0, dz=2.5, intercept=-1024.0)
    (folder / "notes.xml").write_text("<xml/>")  # non-DICOM files are skipped
    assert is_dicom_series_dir(folder)
    img, spacing, affine, meta = read_image(folder)
    assert img.shape == (1, 5, 3, 4) and meta["sorted_by"] == "ImagePositionPatient"
    np.testing.assert_array_equal(img[0], vol - 1024.0)
    assert spacing == (2.5, 0.7, 0.8)
    # independent reader: SimpleITK's GDCM series reader (LPS, numpy order z,y,x)
    sitk = pytest.importorskip("SimpleITK")
    r = sitk.ImageSeriesReader()
    r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
    ref = r.Execute()
    np.testing.assert_allclose(img[0], sitk.GetArrayFromImage(ref))
    np.testing.assert_allclose(spacing[::-1], ref.GetSpacing())
    for idx in [(0, 0, 0), (4, 2, 3), (2, 1, 0)]:  # (d, h, w)
        world_lps = ref.TransformIndexToPhysicalPoint(tuple(int(v) for v in idx[::-1]))
        np.testing.assert_allclose((affine @ [*idx, 1])[:3], np.array(world_lps) * [-1, -1, 1], atol=1e-6)


def test_dicom_series_oblique_normal_and_instance_fallback(tmp_path):
    vol = (np.arange(4)[:, None, None] * 10 + np.zeros((2, 2))).astype(np.int16)
    # sagittal slices: rows along -z, columns along y, normal along x
    folder = tmp_path / "sag"
    folder.mkdir()
    for f, k in enumerate([2, 0, 3, 1]):
        write_dicom(folder / f"{f}.dcm", vol[k], position=(k * 3.0, 0, 0), orientation=(0, 1, 0, 0, 0, -1),
                    instance=10 - k)  # instance numbers deliberately reversed
    img, spacing, affine, meta = read_image(folder)
    # normal = row cosine x column cosine = (0,1,0) x (0,0,-1) = (-1,0,0): slices go
    # along decreasing patient x, so the volume starts with the slice at x = 9
    np.testing.assert_array_equal(img[0, :, 0, 0], [30, 20, 10, 0])
    assert spacing[0] == 3.0
    lps = [(affine @ [d, 0, 0, 1])[:3] * [-1, -1, 1] for d in range(4)]
    np.testing.assert_allclose([p[0] for p in lps], [9, 6, 3, 0])
    nogeo = tmp_path / "nogeo"
    nogeo.mkdir()
    for f, k in enumerate([2, 0, 3, 1]):
        write_dicom(nogeo / f"{f}.dcm", vol[k], instance=k + 1, geometry=False)
    img, spacing, affine, meta = read_image(nogeo)
    assert meta["sorted_by"] == "InstanceNumber" and affine is None
    np.testing.assert_array_equal(img[0, :, 0, 0], [0, 10, 20, 30])
    assert spacing == (2.0, 0.7, 0.8)  # SliceThickness when positions are unknown


def test_dicom_series_errors(tmp_path):
    vol = np.zeros((3, 4, 4), np.int16)
    dup = tmp_path / "dup"
    dup.mkdir()
    for f in range(2):
        write_dicom(dup / f"{f}.dcm", vol[f], position=(0, 0, 5.0))
    with pytest.raises(DataError, match="dup: two slices share one position"):
        read_image(dup)
    two = tmp_path / "two"
    write_dicom(two.mkdir() or two / "a.dcm", vol[0], series_uid="1.2.3")
    write_dicom(two / "b.dcm", vol[1], series_uid="1.2.4", position=(0, 0, 1))
    with pytest.raises(DataError, match="two: folder holds 2 DICOM series"):
        read_image(two)
    shp = tmp_path / "shape"
    shp.mkdir()
    write_dicom(shp / "a.dcm", vol[0], position=(0, 0, 0))
    write_dicom(shp / "b.dcm", np.zeros((5, 4), np.int16), position=(0, 0, 1))
    with pytest.raises(DataError, match=r"b.dcm: slice shape \(5, 4\) differs"):
        read_image(shp)
    tr = write_series(tmp_path / "trunc", np.arange(3 * 32 * 32, dtype=np.int16).reshape(3, 32, 32))
    raw = (tr / "f001.dcm").read_bytes()
    (tr / "f001.dcm").write_bytes(raw[:-500])
    with pytest.raises(DataError, match="f001.dcm: cannot"):
        read_image(tr)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(DataError, match="empty: folder is not a DICOM series"):
        read_image(empty)
