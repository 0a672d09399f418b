import numpy as np
import pytest

from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError


def make(shape=(8, 10), r=3):
    img = np.arange(np.prod(shape), dtype=np.float32).reshape(1, *shape)
    masks = np.zeros((r, *shape), bool)
    masks[:, 2:5, 3:7] = True
    return MultiRaterSample(img, masks, spacing=(2.0,) * len(shape), affine=np.diag([2.0] * len(shape) + [1.0] * (4 - len(shape))))


def test_single_mask_promoted_and_ids():
    s = MultiRaterSample(np.zeros((1, 4, 4)), np.zeros((4, 4), np.uint8))
    assert s.n_raters == 1 and s.rater_ids == ["0"] and s.spacing == (1.0, 1.0)


@pytest.mark.parametrize(
    "image,masks,msg",
    [
        (np.zeros((4, 4)), np.zeros((1, 4, 4)), "channels-first"),
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 5)), "spatial shape"),
        (np.zeros((1, 4, 4)), np.full((1, 4, 4), 2), "binary"),
        (np.full((1, 4, 4), np.nan), np.zeros((1, 4, 4)), "NaN"),
        (np.zeros((1, 0, 4)), np.zeros((1, 0, 4)), "empty"),
    ],
)
def test_bad_input(image, masks, msg):
    with pytest.raises(DataError, match=msg):
        MultiRaterSample(image, masks)


def test_zero_raters_allowed_but_require_raters_refuses():
    s = MultiRaterSample(np.zeros((1, 4, 4)), np.zeros((0, 4, 4)))
    with pytest.raises(DataError, match="zero valid raters"):
        s.require_raters()


def test_transforms_move_image_and_raters_together():
    s = make()
    c = s.crop((slice(2, 6), slice(3, 9)))
    assert c.image.shape == (1, 4, 6) and c.masks.shape == (3, 4, 6)
    assert c.image[0, 0, 0] == s.image[0, 2, 3]
    # the crop's first voxel sits at the same world position as before
    np.testing.assert_allclose(c.affine @ [0, 0, 0, 1], s.affine @ [2, 3, 0, 1])
    f = s.flip(1)
    np.testing.assert_array_equal(f.masks[:, :, ::-1], s.masks)
    np.testing.assert_allclose(f.affine @ [0, 0, 0, 1], s.affine @ [0, 9, 0, 1])
    r = s.resize((16, 20))
    assert r.masks.shape == (3, 16, 20) and r.spacing == (1.0, 1.0)
    assert r.masks.sum() == 4 * s.masks.sum()


def test_3d():
    s = make((4, 6, 6), r=2)
    f = s.flip(0)
    assert s.spatial_ndim == 3 and f.masks.shape == (2, 4, 6, 6)
    # depth reversed: slice k of the flip is slice 3 - k of the original, for image and masks
    np.testing.assert_array_equal(f.image[0, 0], s.image[0, 3])
    np.testing.assert_array_equal(f.masks[:, 1], s.masks[:, 2])
    assert f.image[0, 0, 0, 0] == 3 * 36  # np.arange over (4, 6, 6): first voxel of the last slice
    # the flipped affine maps voxel 0 of axis 0 to where voxel 3 was (spacing 2)
    np.testing.assert_allclose(f.affine @ [0, 0, 0, 1], s.affine @ [3, 0, 0, 1])


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os

    from clinloop.atomic import atomic_dir, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_atomic_errors_name_the_destination_never_the_temporary(tmp_path):
    from clinloop.atomic import atomic_dir, atomic_path, atomic_write_text
    from clinloop.errors import DataError

    with pytest.raises(DataError) as e, atomic_dir(tmp_path / "out") as d:
        raise DataError("bad image", d / "c1" / "image.png")  # a writer's error about a file in the folder
    assert str(e.value) == f"{tmp_path / 'out' / 'c1' / 'image.png'}: bad image"
    with pytest.raises(OSError) as e, atomic_path(tmp_path / "f.json") as t:
        raise OSError(28, "No space left on device", str(t))  # e.g. the disk filled while writing
    assert str(e.value) == f"[Errno 28] No space left on device: '{tmp_path / 'f.json'}'" and e.value.errno == 28
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError, match=f"^{tmp_path / 'dir'}: is a folder; expected the name of a file"):
        atomic_write_text(tmp_path / "dir", "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as e:
        atomic_write_text(tmp_path / "file" / "a.json", "x")
    assert str(e.value) == f"cannot write {tmp_path / 'file' / 'a.json'} ({tmp_path / 'file'} is a file, not a folder)"
    assert e.value.errno == 20 and e.value.destination == str(tmp_path / "file" / "a.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]  # no temporaries left


def test_finished_model_guard(tmp_path):
    from clinloop.training import finished_model

    assert finished_model(tmp_path, resume=False) is False  # empty folder: train
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="already holds a trained model"):
        finished_model(tmp_path, resume=False)
    assert finished_model(tmp_path, resume=True) is True  # finished: nothing to do
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert finished_model(tmp_path, resume=True) is False  # interrupted: resume


def test_file_sha256_matches_hashlib_across_chunk_boundaries(tmp_path):
    import hashlib

    from clinloop.atomic import file_sha256

    # 0 bytes, one byte, exactly one 1 MiB chunk, and a chunk plus a remainder
    for n in (0, 1, 1 << 20, (1 << 20) + 7):
        data = bytes(i % 251 for i in range(n))
        (tmp_path / "f").write_bytes(data)
        assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert len(file_sha256(str(tmp_path / "f"))) == 64  # a str path as well
