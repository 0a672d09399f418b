"""The workstation on volumes with a model that has ``start_volume``: one click
on one slice answers the 3-D result, ``GET .../progress`` counts its slices,
candidates on any slice, ``choose`` changes the 3-D mask, NIfTI export keeps
the case's affine, eviction + replay is exact, a case over ``--max-voxels`` is
a 422. The model is :mod:`_volume_stub` (its discs are counted by hand there)."""
from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("fastapi")

from _volume_stub import StubVolumeModel, discs  # noqa: E402

from clinloop.data.registry import ListDataset  # noqa: E402
from clinloop.data.sample import MultiRaterSample  # noqa: E402

D, H, W = 12, 64, 64
AFFINE = np.array([[0.0, 0.0, -0.8, 10.0], [0.0, 0.7, 0.0, -5.0], [2.5, 0.0, 0.0, 3.0], [0, 0, 0, 1]])


def _ellipsoid() -> MultiRaterSample:
    zz, yy, xx = np.mgrid[:D, :H, :W]
    inside = ((zz - 6) / 4.0) ** 2 + ((yy - 30) / 12.0) ** 2 + ((xx - 34) / 12.0) ** 2 <= 1
    rng = np.random.default_rng(0)
    img = (30 + 10 * rng.random((1, D, H, W)) + 120 * inside[None]).astype(np.float32)
    return MultiRaterSample(img, inside[None], case_id="ell", structure="nodule", spacing=(2.5, 0.7, 0.8),
                            affine=AFFINE, provenance={"modality": "CT"})


def _client(tmp_path, **limits):
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app
    from clinloop.server.context import Limits
    from clinloop.server.worklist import worklist_from_dataset

    model = StubVolumeModel()
    app = create_app(model, state_dir=tmp_path / "state", limits=Limits(**limits),
                     worklist=worklist_from_dataset(ListDataset([_ellipsoid()], name="vol3d")))
    return TestClient(app), app, model


U = {"X-Clinloop-User": "ana"}


def _open(c) -> str:
    r = c.post("/api/sessions", json={"case_id": "ell"}, headers=U)
    assert r.status_code == 200, r.text
    assert r.json()["shape"] == [D, H, W]
    return r.json()["session_id"]


def _mask(app, sid) -> np.ndarray:
    return app.state.ctx.live.cached(sid).session.proposal.mask.copy()


def test_one_click_segments_several_slices_with_progress(tmp_path):
    c, app, model = _client(tmp_path)
    with c:
        sid = _open(c)
        assert c.get(f"/api/sessions/{sid}/progress", headers=U).json()["done"] == 0
        r = c.post(f"/api/sessions/{sid}/click", json={"x": 34, "y": 30, "z": 6}, headers=U)
        assert r.status_code == 200, r.text
        m = _mask(app, sid)
        assert m.shape == (D, H, W)
        want = discs((D, H, W), 34, 30, 6, 5)  # radii 5,4,3,2 on slices 6, 5/7, 4/8, 3/9
        assert np.array_equal(m, want)
        assert sorted(np.nonzero(m.any(axis=(1, 2)))[0].tolist()) == [3, 4, 5, 6, 7, 8, 9]
        pr = c.get(f"/api/sessions/{sid}/progress", headers=U).json()
        assert pr["running"] is False and pr["done"] == 7 and pr["total"] == D and pr["axis"] == 0
        # disc areas by hand: r=5 -> 81, r=4 -> 49, r=3 -> 29, r=2 -> 13
        assert pr["slice_areas"] == [0, 0, 0, 13, 29, 49, 81, 49, 29, 13, 0, 0]
        # the slice strip's areas agree
        v = c.get(f"/api/sessions/{sid}/view?z=6", headers=U).json()
        assert v["slice_areas"] == pr["slice_areas"]
        # the session is native 3-D: the model got the case's spacing (s_z, s_y, s_x) in its config
        assert model.configs[-1].spacing == (2.5, 0.7, 0.8)
        # candidates on another slice than the clicked one
        p4 = c.get(f"/api/sessions/{sid}/proposal?z=4", headers=U).json()
        assert p4["z"] == 4 and [k["slice_area"] for k in p4["candidates"]] == [13, 29, 49]
        assert c.get(f"/api/sessions/{sid}/progress", headers={"X-Clinloop-User": "bo"}).status_code == 404


def test_progress_streams_each_slice_mask_in_order(tmp_path):
    """GET .../progress?since=N sends the masks of the slices finished from the N-th on, as overlay
    PNGs, in the order SPA visits them (the anchor, then up, then down)."""
    import base64
    import io

    from PIL import Image

    c, app, _ = _client(tmp_path)
    with c:
        sid = _open(c)
        empty = c.get(f"/api/sessions/{sid}/progress?since=0", headers=U).json()
        assert empty["slices"] == [] and empty["run"] == 0
        c.post(f"/api/sessions/{sid}/click", json={"x": 34, "y": 30, "z": 6}, headers=U)
        pr = c.get(f"/api/sessions/{sid}/progress?since=0", headers=U).json()
        assert [s["index"] for s in pr["slices"]] == [6, 7, 8, 9, 5, 4, 3]
        assert [s["area"] for s in pr["slices"]] == [81, 49, 29, 13, 49, 29, 13]
        want = discs((D, H, W), 34, 30, 6, 5)
        for s in pr["slices"]:
            rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(s["mask"]))).convert("RGBA"))
            assert rgba.shape == (H, W, 4) and s["axis"] == 0
            assert np.array_equal(rgba[..., 3] > 0, want[s["index"]])  # painted exactly on the disc
        tail = c.get(f"/api/sessions/{sid}/progress?since=5", headers=U).json()
        assert [s["index"] for s in tail["slices"]] == [4, 3] and tail["run"] == pr["run"]
        assert "slices" not in c.get(f"/api/sessions/{sid}/progress", headers=U).json()
        c.post(f"/api/sessions/{sid}/choose", json={"candidate": 0}, headers=U)  # a new run: its own slices
        nxt = c.get(f"/api/sessions/{sid}/progress?since=0", headers=U).json()
        assert nxt["run"] != pr["run"] and [s["index"] for s in nxt["slices"]] == [6, 7, 8, 5, 4]
        assert c.get(f"/api/sessions/{sid}/progress?since=-1", headers=U).status_code == 422


def test_choose_changes_the_3d_mask_and_replay_is_exact(tmp_path):
    c, app, _ = _client(tmp_path, live_sessions=1)
    with c:
        sid = _open(c)
        c.post(f"/api/sessions/{sid}/click", json={"x": 34, "y": 30, "z": 6}, headers=U)
        before = _mask(app, sid)
        r = c.post(f"/api/sessions/{sid}/choose", json={"candidate": 2}, headers=U)
        assert r.status_code == 200, r.text
        after = _mask(app, sid)
        assert np.array_equal(after, discs((D, H, W), 34, 30, 6, 6))  # one more slice each way: 2 .. 10
        assert after.sum() > before.sum() and after.any(axis=(1, 2)).sum() == 9
        assert c.get(f"/api/sessions/{sid}/progress", headers=U).json()["done"] == 9
        # evict (a second session fills the one-session cache), then the replay gives the same mask
        _open(c)
        assert app.state.ctx.live.cached(sid) is None
        r = c.get(f"/api/sessions/{sid}/proposal", headers=U)  # no z: the slice last acted on, as before
        assert r.status_code == 200 and r.json()["z"] == 6
        _open(c)
        r = c.get(f"/api/sessions/{sid}/proposal?z=2", headers=U)
        assert r.status_code == 200 and r.json()["area"] == int(after.sum())
        assert np.array_equal(_mask(app, sid), after)
        # undo goes back to the one-click mask exactly
        c.post(f"/api/sessions/{sid}/undo", headers=U)
        assert np.array_equal(_mask(app, sid), before)


def test_export_nifti_keeps_the_case_affine(tmp_path):
    nib = pytest.importorskip("nibabel")
    c, _, _ = _client(tmp_path)
    with c:
        sid = _open(c)
        c.post(f"/api/sessions/{sid}/click", json={"x": 34, "y": 30, "z": 6}, headers=U)
        assert c.post(f"/api/sessions/{sid}/accept", headers=U).status_code == 200
        r = c.get(f"/api/sessions/{sid}/mask?format=nii.gz", headers=U)
        assert r.status_code == 200, r.text
        from clinloop.data.io import read_image

        p = tmp_path / "m.nii.gz"
        p.write_bytes(r.content)
        arr, _, affine, _ = read_image(p)
        assert np.allclose(affine, AFFINE)
        assert arr.reshape(D, H, W).astype(bool).sum() == discs((D, H, W), 34, 30, 6, 5).sum()
        assert np.array_equal(arr.reshape(D, H, W) > 0, discs((D, H, W), 34, 30, 6, 5))
        assert nib.load(str(p)).shape  # a readable NIfTI
        # DICOM-SEG needs a DICOM source: a clear 422 for this NIfTI-like case
        assert c.get(f"/api/sessions/{sid}/mask?format=dcm", headers=U).status_code == 422


def test_a_volume_over_max_voxels_is_a_clear_422(tmp_path):
    c, _, _ = _client(tmp_path, max_voxels=D * H * W - 1)
    with c:
        r = c.post("/api/sessions", json={"case_id": "ell"}, headers=U)
        assert r.status_code == 422
        assert "max-voxels" in r.json()["detail"] and "12x64x64" in r.json()["detail"]


def test_spa_lidc_one_click_follows_the_ellipsoid_and_replays_exactly(tmp_path):
    """The shipped SPA model through the server: one click at the ellipsoid's
    centre slice gives a mask on several slices; after an eviction the replay
    (same volume config: the case's spacing) gives the same 3-D mask."""
    from clinloop.models.registry import shipped_models

    if "spa-lidc" not in shipped_models():
        pytest.skip("spa-lidc is not shipped in this checkout")
    from fastapi.testclient import TestClient
    from test_server import shared_model

    from clinloop.server.app import create_app
    from clinloop.server.context import Limits
    from clinloop.server.worklist import worklist_from_dataset

    app = create_app(shared_model(), state_dir=tmp_path / "state", limits=Limits(live_sessions=1),
                     worklist=worklist_from_dataset(ListDataset([_ellipsoid()], name="vol3d")))
    with TestClient(app) as c:
        sid = _open(c)
        r = c.post(f"/api/sessions/{sid}/click", json={"x": 34, "y": 30, "z": 6}, headers=U)
        assert r.status_code == 200, r.text
        m = _mask(app, sid)
        slices = np.nonzero(m.any(axis=(1, 2)))[0].tolist()
        assert len(slices) >= 3 and 6 in slices and (min(slices) < 6 < max(slices)), slices
        pr = c.get(f"/api/sessions/{sid}/progress", headers=U).json()
        assert pr["done"] == len(slices) and pr["slice_areas"] == m.sum(axis=(1, 2)).tolist()
        _open(c)  # evicts the first session
        assert app.state.ctx.live.cached(sid) is None
        assert c.get(f"/api/sessions/{sid}/proposal?z=6", headers=U).status_code == 200
        assert np.array_equal(_mask(app, sid), m)


def test_dicom_seg_of_a_multiframe_volume_places_each_slice(tmp_path):
    """A legacy multi-frame CT (one ImagePositionPatient, 1 mm slices along z):
    the DICOM-SEG of the 3-D mask has one frame per slice, each at its slice's
    position, holding that slice's mask."""
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("highdicom")
    from fastapi.testclient import TestClient
    from test_server import dicom_bytes

    from clinloop.server.app import create_app

    zz, yy, xx = np.mgrid[:6, :32, :32]
    vol = (100 + 400 * (((zz - 3) / 2.5) ** 2 + ((yy - 16) / 8) ** 2 + ((xx - 16) / 8) ** 2 <= 1)).astype(np.uint16)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(vol[0])))
    ds.NumberOfFrames, ds.PixelData = 6, vol.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf)
    app = create_app(StubVolumeModel(), state_dir=tmp_path / "state")
    with TestClient(app) as c:
        r = c.post("/api/sessions", files={"file": ("ct.dcm", buf.getvalue(), "application/dicom")}, headers=U)
        assert r.status_code == 200 and r.json()["shape"] == [6, 32, 32] and "dcm" in r.json()["exports"]
        sid = r.json()["session_id"]
        c.post(f"/api/sessions/{sid}/click", json={"x": 16, "y": 16, "z": 3}, headers=U)
        assert c.post(f"/api/sessions/{sid}/accept", headers=U).status_code == 200
        r = c.get(f"/api/sessions/{sid}/mask?format=dcm", headers=U)
        assert r.status_code == 200, r.text
    want = discs((6, 32, 32), 16, 16, 3, 5)  # slice areas 13, 29, 49, 81, 49, 29
    seg = pydicom.dcmread(io.BytesIO(r.content))
    assert seg.Modality == "SEG" and int(seg.NumberOfFrames) == 6
    frames = seg.pixel_array.astype(bool)
    for i, f in enumerate(seg.PerFrameFunctionalGroupsSequence):
        z = int(round(float(f.PlanePositionSequence[0].ImagePositionPatient[2])))  # 1 mm slices from z = 0
        assert np.array_equal(frames[i], want[z]), (i, z)
