"""API tests of the workstation against the real app and a real model.

The model is the shipped SPA model when one is installed, else a freshly built
SPA (our networks on the real pretrained LiteMedSAM backbone, N=8 samples) —
real inference, not a mock. One model and one image per test run: the image
embedding (the slow part on CPU) is computed once and cached by the model.
"""
from __future__ import annotations

import functools
import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@functools.lru_cache(maxsize=1)
def shared_model():
    """The interactive model every server test uses (also imported by test_browser)."""
    import torch

    torch.set_num_threads(2)
    from clinloop.models.registry import DEFAULT_MODEL, load_model, shipped_models

    if DEFAULT_MODEL in shipped_models():  # the workstation's default model (spa-general)
        return load_model(DEFAULT_MODEL)
    from clinloop.models.litemedsam.weights import WeightsNotFoundError, locate_checkpoint

    try:
        locate_checkpoint()
    except WeightsNotFoundError as e:
        pytest.skip(str(e))
    from clinloop.models.spa.config import SPAConfig
    from clinloop.models.spa.model import build_spa

    return build_spa(SPAConfig(n_samples=8))


def test_image() -> np.ndarray:
    """A 96x96 uint8 CT-like slice: a bright disc (the 'nodule') on textured background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    img = 60 + 20 * rng.random((96, 96))
    img[(yy - 50) ** 2 + (xx - 44) ** 2 < 14 ** 2] = 200
    return img.astype(np.uint8)


test_image.__test__ = False  # a helper, not a test


def n_candidates() -> int:
    """K of the shared model (4 for SPA's default config)."""
    return int(getattr(getattr(shared_model(), "config", None), "n_candidates", 4))


def png_bytes(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def nifti_bytes(a: np.ndarray, affine: np.ndarray) -> bytes:
    import nibabel as nib

    import gzip

    return gzip.compress(nib.Nifti1Image(np.ascontiguousarray(a.T.astype(np.float32)), affine).to_bytes())


def dicom_bytes(a: np.ndarray) -> bytes:
    """A minimal but complete CT image (pydicom), pixel values = ``a`` (slope 1, intercept 0)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P1", "Test^Patient", "19700101", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "20240101", "120000", "A1", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
    ds.Rows, ds.Columns = a.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelData = a.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from fastapi.testclient import TestClient

    from clinloop.server.app import Limits, create_app

    state = tmp_path_factory.mktemp("state")
    app = create_app(shared_model(), state_dir=state, limits=Limits(max_upload_bytes=2_000_000, max_voxels=4_000_000))
    with TestClient(app) as c:
        yield c, app, state


@pytest.fixture(scope="module")
def opened(server):
    """One session on the PNG upload, one click done (the embedding is computed here)."""
    c, app, _ = server
    r = c.post("/api/sessions", files={"file": ("slice.png", png_bytes(test_image()), "image/png")})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    p = c.post(f"/api/sessions/{sid}/click", json={"x": 44, "y": 50, "positive": True})
    assert p.status_code == 200, p.text
    return sid, r.json(), p.json()


def decode_png(b64: str) -> np.ndarray:
    import base64

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGBA"))


def test_open_click_and_encoding(server, opened):
    c, app, _ = server
    sid, desc, p = opened
    assert desc["shape"] == [96, 96] and desc["ndim"] == 2 and desc["status"] == "open"
    assert p["iteration"] == 1 and p["seconds"] > 0
    s = app.state.store.session(sid, "local")
    assert s["history"] == [{"action": "click", "point": [44.0, 50.0], "positive": True}]
    # the overlays decode to exactly the live proposal's arrays
    from clinloop.server.app import create_app  # noqa: F401 - the live session lives in the app closure

    r = c.get(f"/api/sessions/{sid}")
    assert r.json()["iteration"] == 1 and r.json()["has_proposal"]
    mask_png = decode_png(p["mask"])
    assert mask_png.shape == (96, 96, 4)
    assert int((mask_png[..., 3] > 0).sum()) == p["area"]
    assert len(p["candidates"]) == n_candidates()
    for cand in p["candidates"]:
        d = decode_png(cand["diff"])
        green = (d[..., 3] > 0) & (d[..., 1] == 220)
        magenta = (d[..., 3] > 0) & (d[..., 0] == 235)
        assert int(green.sum()) == cand["added"] and int(magenta.sum()) == cand["removed"]
        assert cand["area"] == p["area"] + cand["added"] - cand["removed"]
    img = c.get(f"/api/sessions/{sid}/image").json()
    import base64

    arr = np.frombuffer(base64.b64decode(img["data"]), dtype="<f4").reshape(96, 96)
    np.testing.assert_array_equal(arr, test_image().astype(np.float32))
    assert "model;dur=" in r.headers["server-timing"]


def test_choose_undo_accept_export_and_profile(server, opened, tmp_path):
    import nibabel as nib

    c, app, state = server
    sid, _, p1 = opened
    p2 = c.post(f"/api/sessions/{sid}/choose", json={"candidate": 1}).json()
    assert p2["iteration"] == 2
    u = c.post(f"/api/sessions/{sid}/undo").json()
    assert u["iteration"] == 1 and u["mask"] == p1["mask"]  # undo replays exactly
    p2b = c.post(f"/api/sessions/{sid}/choose", json={"candidate": 1}).json()
    assert p2b["mask"] == p2["mask"]  # deterministic for the seed
    assert c.get(f"/api/sessions/{sid}/mask?format=png").status_code == 409  # not accepted yet
    a = c.post(f"/api/sessions/{sid}/accept").json()
    assert a["status"] == "accepted" and a["area"] == p2["area"]
    stored = app.state.store.accepted_mask(sid, "local")
    assert stored.shape == (96, 96) and int(stored.sum()) == a["area"]
    r = c.get(f"/api/sessions/{sid}/mask?format=png")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))) == 255, stored)
    r = c.get(f"/api/sessions/{sid}/mask?format=nii.gz")
    f = tmp_path / "m.nii.gz"
    f.write_bytes(r.content)
    np.testing.assert_array_equal(np.asarray(nib.load(f).dataobj).T.astype(bool), stored)
    assert c.get(f"/api/sessions/{sid}/mask?format=dcm").status_code == 422  # PNG source: no DICOM identity
    assert c.get(f"/api/sessions/{sid}/mask?format=exe").status_code == 400
    assert c.post(f"/api/sessions/{sid}/click", json={"x": 1, "y": 1}).status_code == 400  # accepted: closed
    prof = c.get("/api/profile").json()["profile"]
    assert prof is not None and prof.get("gmm") is not None  # SPA's GMM, carried to the next image
    assert c.get("/api/info").json()["has_profile"] is True
    r = c.post("/api/sessions", files={"file": ("again.png", png_bytes(test_image()), "image/png")})
    assert r.json()["profile_applied"] is True
    assert app.state.store.session(r.json()["session_id"], "local")["profile"] == prof


def test_nifti_upload_keeps_affine_and_dicom_seg(server, tmp_path):
    import nibabel as nib
    import pydicom

    c, app, _ = server
    aff = np.array([[0.8, 0, 0, -40], [0, 0.8, 0, 12], [0, 0, 2.5, 7], [0, 0, 0, 1]])
    r = c.post("/api/sessions", files={"file": ("ct.nii.gz", nifti_bytes(test_image(), aff), "application/gzip")})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    assert c.post(f"/api/sessions/{sid}/click", json={"x": 44, "y": 50}).status_code == 200
    assert c.post(f"/api/sessions/{sid}/accept").status_code == 200
    f = tmp_path / "m.nii.gz"
    f.write_bytes(c.get(f"/api/sessions/{sid}/mask?format=nii.gz").content)
    np.testing.assert_allclose(nib.load(f).affine, aff)  # the source affine, exactly
    mask2d = nib.load(f).get_fdata()
    # one slice stored as (X, Y, 1), as many tools export a 2-D image: a 2-D session, the same mask and place
    r = c.post("/api/sessions", files={"file": ("one.nii.gz", nifti_bytes(test_image()[None], aff), "application/gzip")})
    assert r.status_code == 200 and r.json()["ndim"] == 2, r.text
    sid = r.json()["session_id"]
    assert c.post(f"/api/sessions/{sid}/click", json={"x": 44, "y": 50}).status_code == 200
    assert c.post(f"/api/sessions/{sid}/accept").status_code == 200
    f.write_bytes(c.get(f"/api/sessions/{sid}/mask?format=nii.gz").content)
    np.testing.assert_allclose(nib.load(f).affine, aff)
    np.testing.assert_array_equal(nib.load(f).get_fdata(), mask2d)
    # DICOM in -> DICOM-SEG out, read back with pydicom
    r = c.post("/api/sessions", files={"file": ("ct.dcm", dicom_bytes(test_image()), "application/dicom")})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    assert "dcm" in r.json()["exports"] and r.json()["modality"] == "CT"
    c.post(f"/api/sessions/{sid}/click", json={"x": 44, "y": 50})
    c.post(f"/api/sessions/{sid}/accept")
    seg = pydicom.dcmread(io.BytesIO(c.get(f"/api/sessions/{sid}/mask?format=dcm").content))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    got = seg.pixel_array.astype(bool)
    np.testing.assert_array_equal(got.reshape(96, 96), app.state.store.accepted_mask(sid, "local"))


def test_bad_input_is_4xx(server, opened):
    c, app, _ = server
    sid = c.post("/api/sessions", files={"file": ("s.png", png_bytes(test_image()), "image/png")}).json()["session_id"]
    assert c.post(f"/api/sessions/{sid}/click", json={"x": 44, "y": 50}).status_code == 200
    post = lambda name, data: c.post("/api/sessions", files={"file": (name, data, "application/octet-stream")})  # noqa: E731
    png = png_bytes(test_image())
    cases = {
        "truncated png": (post("x.png", png[: len(png) // 2]), 400),
        "corrupt nifti": (post("x.nii.gz", b"\x1f\x8b" + b"garbage" * 50), 400),
        "truncated dicom": (post("x.dcm", dicom_bytes(test_image())[:400]), 400),
        "unknown type": (post("x.exe", b"MZ" + b"\0" * 100), 415),
        "empty file": (post("x.png", b""), 400),
        "1-D npy": (post("x.npy", _npy(np.arange(10.0))), 400),
        "4-D nifti": (post("x.nii", nifti_bytes_nd(np.zeros((4, 4, 4, 3), np.float32))), 400),
        "NaN npy": (post("x.npy", _npy(np.full((16, 16), np.nan))), 400),
        "zero-size npy": (post("x.npy", _npy(np.zeros((0, 16)))), 400),
        "tiny image": (post("x.npy", _npy(np.zeros((3, 3)))), 422),
        "oversized upload": (post("x.npy", b"\0" * 2_100_000), 413),
        "too many voxels": (post("x.npy", _npy_header_only((4000, 4000))), 413),
        "png claiming 60000x60000": (post("x.png", _png_header_only(60000, 60000)), 413),
        "no file": (c.post("/api/sessions", data={"seed": "1"}), 400),
        "unknown case": (c.post("/api/sessions", json={"case_id": "../../etc/passwd"}), 404),
        "wrong type json": (c.post("/api/sessions", json={"case_id": 5}), 422),
        "text body": (c.post("/api/sessions", content=b"hi", headers={"content-type": "text/plain"}), 415),
        "not json": (c.post("/api/sessions", content=b'{"case_id": "c"}', headers={"content-type": "application/jsonx"}),
                     415),
        "misspelt json field": (c.post("/api/sessions", json={"case_id": "c", "sede": 1}), 422),
        "use_profile maybe": (c.post("/api/sessions", files={"file": ("s.png", png, "image/png")},
                                     data={"use_profile": "maybe"}), 422),
        "case_id as a file": (c.post("/api/sessions", files={"case_id": ("c.txt", b"c1", "text/plain")}), 400),
        "click outside": (c.post(f"/api/sessions/{sid}/click", json={"x": 500, "y": 3}), 422),  # issue 18: 422
        "click NaN": (c.post(f"/api/sessions/{sid}/click", content=b'{"x": NaN, "y": 3}',
                             headers={"content-type": "application/json"}), 422),
        "click string": (c.post(f"/api/sessions/{sid}/click", json={"x": "10", "y": 3}), 422),
        "click z on 2-D": (c.post(f"/api/sessions/{sid}/click", json={"x": 10, "y": 3, "z": 0}), 400),
        "click no body": (c.post(f"/api/sessions/{sid}/click"), 422),
        "candidate range": (c.post(f"/api/sessions/{sid}/choose", json={"candidate": 7}), 400),
        "candidate bool": (c.post(f"/api/sessions/{sid}/choose", json={"candidate": True}), 422),
        "unknown session": (c.post("/api/sessions/AAAAAAAAAAAAAAAAAAAAAAAA/click", json={"x": 1, "y": 1}), 404),
        "path-like session": (c.get("/api/sessions/..%2F..%2Fclinloop.sqlite3"), 404),
        "bad user header": (c.get("/api/info", headers={"X-Clinloop-User": "a/b"}), 400),
    }
    for name, (r, want) in cases.items():
        assert r.status_code == want, f"{name}: {r.status_code} {r.text}"
        assert isinstance(r.json()["detail"], str) and r.json()["detail"], name
    # choose before click (a fresh session on the same, already embedded image)
    s2 = c.post("/api/sessions", files={"file": ("s.png", png, "image/png")}, data={"use_profile": "false"}).json()
    r = c.post(f"/api/sessions/{s2['session_id']}/choose", json={"candidate": 0})
    assert r.status_code == 400 and "click" in r.json()["detail"]
    assert c.get("/api/info").status_code == 200  # still serving


def test_an_upload_names_its_structure(server, opened):
    """An upload's ``structure`` is kept with the image, shown by the session and passed to the model:
    the shipped spa-general decodes a "nodule" with its expert, so the first click's proposal differs from
    the same image's without a structure; a restarted server replays it with the structure."""
    from fastapi.testclient import TestClient

    from clinloop.interaction.session import model_structures
    from clinloop.server.app import create_app

    c, _app, state = server
    known = model_structures(shared_model())
    assert c.get("/api/info").json()["models"][0]["structures"] == known
    png = png_bytes(test_image())
    up = lambda **data: c.post("/api/sessions", files={"file": ("s.png", png, "image/png")}, data=data)  # noqa: E731
    named, plain = up(structure=" Nodule ", use_profile="false"), up(use_profile="false")
    assert named.status_code == 200 and named.json()["structure"] == "Nodule" and plain.json()["structure"] is None
    masks = []
    for r in (named, plain):
        p = c.post(f"/api/sessions/{r.json()['session_id']}/click", json={"x": 44, "y": 50})
        assert p.status_code == 200, p.text
        masks.append(p.json()["mask"])
    assert (masks[0] != masks[1]) == ("nodule" in [k.lower() for k in known])
    with TestClient(create_app(shared_model(), state_dir=state)) as c2:  # rebuilt by replay, structure and all
        again = c2.get(f"/api/sessions/{named.json()['session_id']}/proposal").json()
        assert again["mask"] == masks[0]
        assert c2.get(f"/api/sessions/{named.json()['session_id']}").json()["structure"] == "Nodule"
    # accepted: its profile is kept under the structure; another structure's upload starts from it only when asked
    assert c.post(f"/api/sessions/{named.json()['session_id']}/accept").status_code == 200
    assert up(structure="Nodule").json()["profile_applied"] is True
    assert up(structure=" nodule").json()["profile_applied"] is True  # matched as the model matches it
    from clinloop.server.context import served_name

    assert _app.state.store.profile("local", f"{served_name(shared_model())}::nodule") is not None
    assert up(structure="liver").json()["profile_applied"] is False
    assert up(structure="liver", profile_any_structure="true").json()["profile_applied"] is True
    for bad, code in (("x" * 129, 422), ("a\nb", 422)):
        r = up(structure=bad)
        assert r.status_code == code and "structure" in r.json()["detail"], r.text
    r = c.post("/api/sessions", data={"case_id": "c1", "structure": "nodule"})
    assert r.status_code == 400 and "structure" in r.json()["detail"]


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims ``w x h`` grey pixels (its data: a few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npy_header_only(shape) -> bytes:
    """A .npy whose header claims ``shape`` (uint8) but carries no data: refused on the header."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def nifti_bytes_nd(a: np.ndarray) -> bytes:
    import nibabel as nib

    return nib.Nifti1Image(a, np.eye(4)).to_bytes()


def test_owners_and_tokens(tmp_path):
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app

    tokens = {"tok-alice": "alice", "tok-bob": "bob"}
    app = create_app(shared_model(), state_dir=tmp_path, tokens=tokens)
    with TestClient(app) as c:
        assert c.get("/api/info").status_code == 401
        assert c.get("/api/info", headers={"Authorization": "Bearer nope"}).status_code == 401
        A = {"Authorization": "Bearer tok-alice"}
        B = {"Authorization": "Bearer tok-bob", "X-Clinloop-User": "alice"}  # the header cannot impersonate
        assert c.get("/api/info", headers=A).json()["user"] == "alice"
        r = c.post("/api/sessions", headers=A, files={"file": ("a.png", png_bytes(test_image()), "image/png")})
        sid = r.json()["session_id"]
        for method, path in [("get", ""), ("get", "/image"), ("get", "/proposal"), ("post", "/undo"),
                             ("post", "/accept"), ("get", "/mask?format=png")]:
            rb = getattr(c, method)(f"/api/sessions/{sid}{path}", headers=B)
            assert rb.status_code == 404, (path, rb.status_code)
        assert c.get("/api/sessions", headers=B).json()["sessions"] == []
        assert [s["session_id"] for s in c.get("/api/sessions", headers=A).json()["sessions"]] == [sid]
    app = create_app(shared_model(), state_dir=tmp_path / "t", token="s3cret")
    with TestClient(app) as c:
        assert c.get("/api/cases").status_code == 401
        assert c.get("/api/cases", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/").status_code == 200  # the page itself loads; it asks for the token


def test_restart_resumes_sessions_and_keeps_accepted(tmp_path):
    """A second app on the same state folder (as after a crash) rebuilds open
    sessions by replay and serves every accepted mask."""
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app

    app1 = create_app(shared_model(), state_dir=tmp_path)
    c1 = TestClient(app1)
    png = png_bytes(test_image())
    s_open = c1.post("/api/sessions", files={"file": ("a.png", png, "image/png")}, data={"seed": "3"}).json()["session_id"]
    s_acc = c1.post("/api/sessions", files={"file": ("a.png", png, "image/png")}).json()["session_id"]
    c1.post(f"/api/sessions/{s_open}/click", json={"x": 44, "y": 50})
    before = c1.post(f"/api/sessions/{s_open}/choose", json={"candidate": 2}).json()
    c1.post(f"/api/sessions/{s_acc}/click", json={"x": 40, "y": 52})
    acc_png = c1.get(f"/api/sessions/{s_acc}/proposal").json()["mask"]
    assert c1.post(f"/api/sessions/{s_acc}/accept").status_code == 200
    mask1 = c1.get(f"/api/sessions/{s_acc}/mask?format=png").content
    app2 = create_app(shared_model(), state_dir=tmp_path)  # no shared memory with app1's sessions
    with TestClient(app2) as c2:
        after = c2.get(f"/api/sessions/{s_open}/proposal").json()
        assert after["iteration"] == 2 and after["mask"] == before["mask"]
        assert [cd["diff"] for cd in after["candidates"]] == [cd["diff"] for cd in before["candidates"]]
        assert c2.get(f"/api/sessions/{s_acc}/mask?format=png").content == mask1
        d = c2.get(f"/api/sessions/{s_acc}").json()
        assert d["status"] == "accepted" and c2.get(f"/api/sessions/{s_acc}/proposal").json()["mask"] == acc_png
        assert c2.post(f"/api/sessions/{s_open}/accept").status_code == 200  # resumed session goes on
    # a server restarted with another model refuses to replay (it would not give the same proposals)
    import torch

    from clinloop.models.mecca.config import MECCAConfig
    from clinloop.models.mecca.model import MECCAModel

    torch.manual_seed(0)
    with TestClient(create_app(MECCAModel(MECCAConfig(ndim=2)), state_dir=tmp_path)) as c3:
        r = c3.get(f"/api/sessions/{s_open}")
        assert r.status_code == 409 and "model" in r.json()["detail"]
    # so does another model of the same method (spa-lidc is SPA too): served models go by their folder's name
    import sqlite3

    from clinloop.models.registry import load_model
    from clinloop.server.context import served_name

    with TestClient(create_app(load_model("spa-lidc"), state_dir=tmp_path)) as c4:
        r = c4.get(f"/api/sessions/{s_open}")
        assert r.status_code == 409 and repr(served_name(shared_model())) in r.json()["detail"], r.text
    # a row from before that (it named the method, "spa") replays with the one served SPA model
    with sqlite3.connect(tmp_path / "clinloop.sqlite3") as db:
        db.execute("UPDATE sessions SET model = ? WHERE id = ?", (str(shared_model().name), s_open))
    with TestClient(create_app(shared_model(), state_dir=tmp_path)) as c5:
        assert c5.get(f"/api/sessions/{s_open}/proposal").json()["mask"] == before["mask"]


def test_worklist_from_data_and_volume_slices(tmp_path):
    """``--data`` with a 3-D NIfTI case: the worklist lists it; an SPA model
    (``start_volume``) follows the structure from one (x, y, z) click through
    the slices (three identical slices: all three); slices come back one at a time."""
    from fastapi.testclient import TestClient

    from clinloop.server.app import create_app

    import nibabel as nib

    vol = np.stack([test_image()] * 3).astype(np.float32) * 4 - 1000  # (D, H, W) in "HU"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(vol.T), np.diag([0.7, 0.7, 2.0, 1.0])), tmp_path / "vol.nii.gz")
    app = create_app(shared_model(), state_dir=tmp_path / "state", data=tmp_path / "vol.nii.gz")
    with TestClient(app) as c:
        cases = c.get("/api/cases").json()["cases"]
        assert len(cases) == 1
        d = c.post("/api/sessions", json={"case_id": cases[0]["case_id"]}).json()
        assert d["shape"] == [3, 96, 96] and d["ndim"] == 3
        sid = d["session_id"]
        img = c.get(f"/api/sessions/{sid}/image?z=1").json()
        assert img["kind"] == "grey" and img["min"] == pytest.approx(vol.min())
        assert c.get(f"/api/sessions/{sid}/image?z=3").status_code == 422  # out of range, as a click's z
        assert c.get(f"/api/sessions/{sid}/proposal?z=3").status_code == 422
        assert c.post(f"/api/sessions/{sid}/click", json={"x": 44, "y": 50}).status_code == 400  # z missing
        p = c.post(f"/api/sessions/{sid}/click", json={"x": 44, "y": 50, "z": 1}).json()
        assert p["z"] == 1 and len(p["candidates"]) == n_candidates()
        other = c.get(f"/api/sessions/{sid}/proposal?z=0").json()
        assert int((decode_png(other["mask"])[..., 3] > 0).sum()) > 0  # one click reached slice 0 too
        assert c.get(f"/api/sessions/{sid}/progress").json()["done"] == 3
        assert c.post(f"/api/sessions/{sid}/choose", json={"candidate": 0}).json()["z"] == 1
        c.post(f"/api/sessions/{sid}/accept")
        f = tmp_path / "m.nii.gz"
        f.write_bytes(c.get(f"/api/sessions/{sid}/mask?format=nii.gz").content)
        out = nib.load(f)
        np.testing.assert_allclose(out.affine, np.diag([0.7, 0.7, 2.0, 1.0]))
        m = np.asarray(out.dataobj).T.astype(bool)
        assert m.shape == (3, 96, 96) and m[0].any() and m[1].any() and m[2].any()
        assert c.get(f"/api/sessions/{sid}/mask?format=png").status_code == 422  # 3-D: no PNG


def test_openapi_served(server):
    c, _, _ = server
    paths = c.get("/openapi.json").json()["paths"]
    for p in ["/api/sessions", "/api/sessions/{sid}/click", "/api/sessions/{sid}/choose",
              "/api/sessions/{sid}/accept", "/api/sessions/{sid}/mask", "/api/cases"]:
        assert p in paths, p
    doc = json.loads(json.dumps(c.get("/openapi.json").json()))  # serialisable
    assert doc["paths"] == paths
    click = paths["/api/sessions/{sid}/click"]["post"]["responses"]
    assert click["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ProposalOut"}
    for code in ("400", "404", "409", "422", "503"):  # errors are documented as {"detail": str}
        assert click[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert doc["components"]["schemas"]["ErrorBody"]["properties"]["detail"]["type"] == "string"


def test_mecca_advice_hint_and_native_volume(tmp_path):
    """MECCA (random-initialised networks: real inference, untrained weights)
    segments volumes natively and returns advice regions, sent as overlays."""
    import torch

    from fastapi.testclient import TestClient

    from clinloop.models.mecca.config import MECCAConfig
    from clinloop.models.mecca.model import MECCAModel
    from clinloop.server.app import create_app

    torch.manual_seed(0)
    model = MECCAModel(MECCAConfig(ndim=3))
    vol = np.random.default_rng(1).random((8, 32, 32)).astype(np.float32)
    app = create_app(model, state_dir=tmp_path)
    with TestClient(app) as c:
        sid = c.post("/api/sessions", files={"file": ("v.npy", _npy(vol), "application/octet-stream")}).json()["session_id"]
        p = c.post(f"/api/sessions/{sid}/click", json={"x": 10, "y": 12, "z": 3}).json()
        assert p["z"] == 3 and p["candidates"] == []
        live = app.state.store.session(sid, "local")
        assert live["history"][0]["point"] == [10.0, 12.0, 3.0]
        assert len(p["advice"]) == 5
        for a in p["advice"]:  # each overlay is the advice region on the shown slice (area counts all slices)
            assert decode_png(a["mask"]).shape == (32, 32, 4) and a["area"] > 0
        h = c.post(f"/api/sessions/{sid}/hint", json={"points": [{"x": 5, "y": 5, "z": 3, "positive": False},
                                                                 {"x": 20, "y": 20, "z": 3}]})
        assert h.status_code == 200 and h.json()["iteration"] == 2
        assert c.post(f"/api/sessions/{sid}/hint", json={"points": []}).status_code == 422
        assert c.post(f"/api/sessions/{sid}/choose", json={"candidate": 0}).status_code == 400  # no candidates


def test_cli_serve_parser():
    from clinloop.cli import build_parser

    a = build_parser().parse_args(["serve", "--data", "d", "--model", "m", "--token", "T"])
    assert (a.host, a.port, a.token, a.data, a.model) == ("127.0.0.1", 8000, "T", "d", ["m"])
    a = build_parser().parse_args(["serve", "--model", "spa-general", "--model", "mecca-lidc3d", "--volumes"])
    assert a.model == ["spa-general", "mecca-lidc3d"] and a.volumes
    assert build_parser().parse_args(["serve"]).model is None  # the default model (spa-general)


def test_worklist_ranked_by_lexu(tmp_path):
    """With a LEXU model the worklist is ordered by its predicted disagreement
    (the same numbers ``rank_cases`` gives), highest first."""
    from fastapi.testclient import TestClient

    from _lexu_fixtures import write_tiny_riga
    from clinloop.cli import main
    from clinloop.data import load_dataset
    from clinloop.evaluation.triage import rank_cases
    from clinloop.models.lexu.model import load_lexu
    from clinloop.models.mecca.config import MECCAConfig
    from clinloop.models.mecca.model import MECCAModel
    from clinloop.server.app import create_app

    data = write_tiny_riga(tmp_path / "tiny.npz", n=5)
    assert main(["train", "--method", "lexu", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--size", "32", "--widths", "4,6,8,8", "--structure", "cup", "--threads", "1"]) == 0
    app = create_app(MECCAModel(MECCAConfig(ndim=2)), state_dir=tmp_path / "s", data=data,
                     data_options={"structure": "cup"}, lexu=tmp_path / "m")
    with TestClient(app) as c:
        d = c.get("/api/cases").json()
    assert d["ranked_by"] == "lexu" and len(d["cases"]) == 5
    u = [r["predicted_disagreement"] for r in d["cases"]]
    assert u == sorted(u, reverse=True) and [r["rank"] for r in d["cases"]] == [1, 2, 3, 4, 5]
    ref = rank_cases(load_lexu(tmp_path / "m"), list(load_dataset(data, structure="cup")))
    assert [r["case_id"] for r in d["cases"]] == [r["case_id"] for r in ref]
    np.testing.assert_allclose(u, [r["predicted_disagreement"] for r in ref], rtol=1e-6)


def test_cross_origin_post_refused(server):
    c, _, _ = server
    r = c.post("/api/sessions", json={"case_id": "x"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    r = c.post("/api/sessions", json={"case_id": "x"}, headers={"Origin": "http://testserver"})
    assert r.status_code == 404  # same origin: passes through (no such case)


def test_serve_without_data_serves_the_embedded_example(tmp_path, monkeypatch, capsys):
    """The README's main job: ``clinloop serve`` alone (offline, no ../shared)
    gets a worklist of the embedded synthetic example and segments its cases."""
    import uvicorn
    from fastapi.testclient import TestClient

    from clinloop.cli import main
    from clinloop.data import load_dataset
    from clinloop.metrics import dice

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    assert main(["serve", "--state-dir", str(tmp_path / "state"), "--port", "8123"]) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    assert "embedded example (8 synthetic cases" in capsys.readouterr().out
    assert TestClient(started["app"]).get("/api/cases").status_code == 400  # Host "testserver" is not the bound address
    c = TestClient(started["app"], base_url="http://127.0.0.1:8123")
    cases = c.get("/api/cases").json()["cases"]
    assert [r["case_id"] for r in cases] == [f"synth-{i:04d}" for i in range(8)]
    sample = load_dataset(tmp_path / "state" / "example")[0]
    target = sample.masks.sum(0) * 2 > sample.masks.shape[0]
    sid = c.post("/api/sessions", json={"case_id": "synth-0000"}).json()["session_id"]
    yy, xx = np.nonzero(target)
    p = c.post(f"/api/sessions/{sid}/click", json={"x": float(xx.mean()), "y": float(yy.mean())})
    assert p.status_code == 200, p.text
    assert c.post(f"/api/sessions/{sid}/accept").status_code == 200
    r = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"})
    from PIL import Image

    mask = np.array(Image.open(io.BytesIO(r.content))) > 0
    assert mask.shape == target.shape
    assert dice(mask, target) > 0.4  # the shipped model on the synthetic lesion (0.58 in the demo)


def test_model_gate_runs_at_most_workers_at_once_and_reports_the_wait():
    import threading
    import time
    from types import SimpleNamespace

    from clinloop.server.app import ModelGate

    gate, running, peak, lock = ModelGate(2), [0], [0], threading.Lock()
    requests = [SimpleNamespace(state=SimpleNamespace()) for _ in range(5)]
    start = threading.Barrier(5)

    def work(req):
        start.wait()
        with gate(req):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=work, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2
    assert all(r.state.model_seconds >= 0.05 for r in requests)
    waits = sorted(r.state.queue_seconds for r in requests)
    assert waits[-1] >= 0.04  # five requests, two slots: somebody waited at least one 0.05 s round
    with pytest.raises(ValueError, match="model_workers"):
        ModelGate(0)
