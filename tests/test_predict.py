"""``clinloop predict`` (issue 16): outputs, resume, bad cases, shards, workers, prompts."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest

from fixtures_datasets import make_brats, make_lidc_npz, truncate

import clinloop
from clinloop.inference.cases import case_folder_name, read_prompts
from clinloop.inference.predict import parse_shard, shard_indices


def _photos(root: Path, n: int = 4, bad: tuple[int, ...] = ()) -> Path:
    """A canonical folder of ``n`` RGB 16x16 photos (case ``c0``..), ``bad`` ones truncated."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(n):
        d = root / f"c{k}"
        d.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d / "image.png")
        if k in bad:
            truncate(d / "image.png", 0.3)
    return root


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "predictions.csv", newline="") as f:
        return {r["case_id"]: r for r in csv.DictReader(f)}


def _digest(out: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``out/cases``: (mtime_ns, sha1)."""
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted((out / "cases").rglob("*")) if p.is_file()}


def test_shards_partition_every_case_exactly_once():
    ids = [f"id{k}" for k in (5, 3, 11, 0, 7, 2, 9)]
    for n in (1, 2, 3, 7, 10):
        parts = [shard_indices(ids, i, n) for i in range(n)]
        flat = sorted(k for p in parts for k in p)
        assert flat == list(range(len(ids)))  # a partition: each index once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    # deterministic and independent of the listing order: shard 0/2 of the sorted ids id0,id11,id2,id3,id5,id7,id9
    assert {ids[k] for k in shard_indices(ids, 0, 2)} == {"id0", "id2", "id5", "id9"}
    with pytest.raises(ValueError, match="0-based"):
        parse_shard("2/2")
    with pytest.raises(ValueError, match="i/n"):
        parse_shard("half")


def test_photos_png_bad_case_reported_and_resume_never_rewrites(tmp_path):
    data, out = _photos(tmp_path / "photos", n=4, bad=(2,)), tmp_path / "out"
    s = clinloop.predict(data, out, progress=False)
    assert (s["cases"], s["ok"], list(s["errors"])) == (4, 3, ["c2"])
    rows = _rows(out)
    assert rows["c2"]["status"] == "error" and rows["c2"]["message"]  # reported, the others went on
    from PIL import Image

    for cid in ("c0", "c1", "c3"):
        r = rows[cid]
        assert r["status"] == "ok" and float(r["predicted_disagreement"]) > 0
        m = np.asarray(Image.open(out / r["mask"]))
        p = np.asarray(Image.open(out / r["probability"]))
        assert m.shape == p.shape == (16, 16) and set(np.unique(m)) <= {0, 255}
        assert ((p >= 128) == (m == 255)).mean() > 0.95  # mask = probability >= 0.5 (up to 8-bit rounding)
        # LEXU's image-level score is Σ Ĥ: recompute it with the shipped predictor
        pred = clinloop.load_model("lexu-lidc")
        from clinloop.data import load_dataset

        ds = load_dataset(data)
        _, _, score = pred.predict(ds[ds.case_ids.index(cid)].image)
        assert float(r["predicted_disagreement"]) == pytest.approx(score, rel=1e-5)
    before = _digest(out)

    # a killed run: c1's marker never written, a half-written temp file and a stale mask left behind
    c1 = out / "cases" / case_folder_name("c1")
    (c1 / "done.json").unlink()
    (c1 / "mask.png").write_bytes(b"\x89PNG half")
    (c1 / ".mask.png.abc.png").write_bytes(b"partial")
    s2 = clinloop.predict(data, out, progress=False)
    assert (s2["skipped"], s2["ok"], list(s2["errors"])) == (2, 1, ["c2"])  # c0, c3 skipped; c1 redone; c2 retried
    after = _digest(out)
    for name in before:
        if "/c0/" in f"/{name}" or "/c3/" in f"/{name}":
            assert after[name] == before[name], name  # finished cases untouched (mtime and bytes)
    assert after[f"cases/{c1.name}/mask.png"][1] == before[f"cases/{c1.name}/mask.png"][1]  # redone identically
    assert _rows(out)["c1"]["status"] == "ok" and len(_rows(out)) == 4


def test_volumes_keep_the_source_affine(tmp_path):
    import nibabel as nib

    make_brats(tmp_path / "brats", cases=("case_0", "case_1"), shape=(6, 5, 4))
    out = tmp_path / "out"
    s = clinloop.predict(tmp_path / "brats", out, progress=False)
    assert s["ok"] == 2, s
    for cid, r in _rows(out).items():
        src = nib.load(str(next((tmp_path / "brats").glob(f"{cid}*/FLAIR.nii.gz"))))
        for key in ("mask", "probability", "uncertainty"):
            img = nib.load(str(out / r[key]))
            assert r[key].endswith(".nii.gz")
            np.testing.assert_allclose(img.affine, src.affine, atol=1e-6)
            assert img.shape == src.shape
    # the image-level score of a volume is the sum over its axial slices of LEXU's Σ Ĥ
    from clinloop.data import load_dataset

    pred, ds = clinloop.load_model("lexu-lidc"), load_dataset(tmp_path / "brats")
    for k, cid in enumerate(ds.case_ids):
        img = ds[k].image
        want = sum(pred.predict(img[:, z])[2] for z in range(img.shape[1]))
        assert float(_rows(out)[cid]["predicted_disagreement"]) == pytest.approx(want, rel=1e-5)
        prob = nib.load(str(out / _rows(out)[cid]["probability"])).get_fdata()
        mask = nib.load(str(out / _rows(out)[cid]["mask"])).get_fdata()
        np.testing.assert_array_equal(mask > 0, prob >= 0.5)


def test_interactive_model_needs_prompts_and_workers_agree(tmp_path):
    make_lidc_npz(tmp_path / "lidc.npz")
    from clinloop.data import load_dataset

    ids = load_dataset(tmp_path / "lidc.npz").case_ids
    (tmp_path / "p.csv").write_text(f"case_id,x,y\n{ids[0]},4,4\n{ids[1]},3,5\n")
    assert read_prompts(tmp_path / "p.csv")[ids[1]] == {"point": (3.0, 5.0)}
    out1 = tmp_path / "one"
    s = clinloop.predict(tmp_path / "lidc.npz", out1, model="mecca-lidc", prompts=tmp_path / "p.csv", progress=False)
    rows = _rows(out1)
    assert s["ok"] == 2 and {rows[i]["status"] for i in ids[2:]} == {"error"}
    assert all(rows[i]["message"].startswith("NoPrompt: no prompt") for i in ids[2:])
    # two spawned workers, two shards into one folder: the same rows as one process
    out2 = tmp_path / "two"
    for shard in ("0/2", "1/2"):
        clinloop.predict(tmp_path / "lidc.npz", out2, model="mecca-lidc", prompts=str(tmp_path / "p.csv"),
                         workers=2, shard=shard, progress=False)
    rows2 = _rows(out2)
    assert list(rows2) == list(rows)
    for i in ids:
        assert rows2[i]["status"] == rows[i]["status"]
        if rows[i]["status"] == "ok":
            assert float(rows2[i]["predicted_disagreement"]) == pytest.approx(float(rows[i]["predicted_disagreement"]))


def test_cli_predict(tmp_path, capsys):
    from clinloop.cli import main

    data = _photos(tmp_path / "photos", n=2)
    assert main(["predict", "--data", str(data), "--out", str(tmp_path / "o"), "--shard", "1/2"]) == 0
    assert "1 done" in capsys.readouterr().out
    assert len(_rows(tmp_path / "o")) == 1
    assert main(["predict", "--data", str(data), "--out", str(tmp_path / "o"), "--shard", "3/2"]) == 2
    with pytest.raises(TypeError, match="unknown option"):
        clinloop.predict(data, tmp_path / "o", wokers=2)


def test_bad_model_is_a_clear_error(tmp_path):
    data = _photos(tmp_path / "photos", n=1)
    with pytest.raises(ValueError, match="no model folder or shipped model"):
        clinloop.predict(data, tmp_path / "o", model="no-such-model", workers=2)
    (tmp_path / "p.csv").write_text("case_id,x\nc0,1\n")
    with pytest.raises(ValueError, match="line 2"):
        clinloop.predict(data, tmp_path / "o", prompts=tmp_path / "p.csv")


def test_interactive_models_get_the_cases_structure(tmp_path):
    """As a session does, ``segment`` passes the sample's structure to a model that takes one
    (spa-general decodes a nodule with its expert) and nothing to one that does not."""
    from clinloop.data import load_dataset
    from clinloop.inference.cases import segment
    from clinloop.interaction.proposal import Proposal

    make_lidc_npz(tmp_path / "lidc.npz")
    sample = load_dataset(tmp_path / "lidc.npz")[0]
    assert sample.structure == "nodule"

    class Model:
        def __init__(self, takes):
            self.takes_structure, self.seen = takes, []

        def start(self, image, *, seed=0, **options):
            self.seen.append(options)
            shape = image.shape[1:]
            p = Proposal(mask=np.ones(shape, bool), probability=np.full(shape, 0.75, np.float32),
                         uncertainty=np.zeros(shape, np.float32))
            return type("State", (), {"click": lambda _s, point, positive: p})()

    for takes, want in ((True, [{"profile": None, "structure": "nodule"}]), (False, [{"profile": None}])):
        m = Model(takes)
        mask, prob, _unc, _score = segment(m, sample, {"point": (3.0, 4.0)}, seed=0)
        assert m.seen == want and mask.all() and float(prob.max()) == 0.75


def test_spa_segments_a_volume_from_one_click(tmp_path):
    """A volume with an (x, y, z) click goes through the session's start_volume (SPA follows the click
    through the slices), as in the workstation; the row's foreground fraction is the session's."""
    import nibabel as nib

    from clinloop.data import load_dataset
    from clinloop.interaction.session import Session

    make_brats(tmp_path / "brats", cases=("case_0",), shape=(40, 40, 6))
    ds = load_dataset(tmp_path / "brats")
    (tmp_path / "p.csv").write_text(f"case_id,x,y,z\n{ds.case_ids[0]},20,20,3\n")
    s = clinloop.predict(tmp_path / "brats", tmp_path / "out", model="spa-general", prompts=tmp_path / "p.csv",
                         progress=False)
    assert s["ok"] == 1, s
    row = _rows(tmp_path / "out")[ds.case_ids[0]]
    mask = nib.load(str(tmp_path / "out" / row["mask"])).get_fdata() > 0
    assert mask.shape == (40, 40, 6) and (mask.sum(axis=(0, 1)) > 0).sum() >= 2  # more than the clicked slice
    want = Session(clinloop.load_model("spa-general"), ds[0], seed=0).click((20, 20, 3), True).mask
    assert float(row["foreground_fraction"]) == pytest.approx(float(want.mean()), abs=1e-6)


def test_exit_status_and_run_record_refuse_another_run_in_the_same_folder(tmp_path, capsys):
    """Exit 1 when every attempted case failed, 0 when one succeeded; ``run.json`` records the model (its
    weights' sha256), prompts, seed and reader options, and a rerun with another of them is refused."""
    import json

    from clinloop.cli import main
    from clinloop.data import load_dataset
    from clinloop.models.registry import resolve_model_dir

    make_lidc_npz(tmp_path / "lidc.npz")
    ids = load_dataset(tmp_path / "lidc.npz").case_ids
    out, base = tmp_path / "out", ["predict", "--data", str(tmp_path / "lidc.npz"), "--model", "mecca-lidc"]
    assert main([*base, "--out", str(out)]) == 1  # an interactive model, no prompts: every case failed
    err = capsys.readouterr().err
    assert f"predict: every one of the {len(ids)} case(s) attempted failed" in err and "NoPrompt" in err
    (tmp_path / "p.csv").write_text(f"case_id,x,y\n{ids[0]},4,4\n")
    assert main([*base, "--out", str(out), "--prompts", str(tmp_path / "p.csv")]) == 0  # prompts added: 1 done
    assert f"1 done, 0 already finished, {len(ids) - 1} errors" in capsys.readouterr().out
    rec = json.loads((out / "run.json").read_text())
    sha = hashlib.sha256((resolve_model_dir("mecca-lidc") / "weights.pt").read_bytes()).hexdigest()
    assert rec["model"] == "mecca-lidc" and rec["weights_sha256"] == sha and rec["seed"] == 0
    assert rec["prompts_sha256"] == hashlib.sha256((tmp_path / "p.csv").read_bytes()).hexdigest()
    assert rec["prompt_by_case"] == {ids[0]: {"point": [4.0, 4.0]}} and rec["format"] == "lidc"
    assert (rec["structure"], rec["task"]) == (None, None)
    before = _digest(out)
    (tmp_path / "q.csv").write_text(f"case_id,x,y\n{ids[0]},5,4\n")
    changed = f"another prompt for 1 finished case(s), e.g. {ids[0]}"
    for model, prompts, seed, why in (("mecca-lidc", "p.csv", "1", "seed 0, now 1"),
                                      ("mecca-lidc", "q.csv", "0", changed),
                                      ("lexu-lidc", "p.csv", "0", f"weights_sha256 '{sha[:12]}', now '")):
        assert main(["predict", "--data", str(tmp_path / "lidc.npz"), "--model", model, "--out", str(out),
                     "--prompts", str(tmp_path / prompts), "--seed", seed]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} holds the predictions of another run (model 'mecca-lidc'; " in err and why in err
    assert _digest(out) == before and json.loads((out / "run.json").read_text()) == rec  # untouched
    (tmp_path / "file").write_text("")
    assert main([*base, "--out", str(tmp_path / "file")]) == 2
    assert f"--out {tmp_path / 'file'}: exists and is not a folder; choose another --out" in capsys.readouterr().err


def test_bad_prompts_files_are_clear_errors(tmp_path):
    p = tmp_path / "p.csv"
    for content, msg in ((b"", f"{p}: empty prompts file"),
                         (b"case_id,x,y\na,1,2\nb,3,4\n\na,5,6\n", f"{p}: case 'a' has two prompts (lines 2 and 5)"),
                         ("case_id,x,y\ncaf\u00e9,1,2\n".encode("latin-1"),
                          f"{p}: not UTF-8 text (byte 0xe9 at offset 15)"),
                         (b"id,x,y\na,1,2\n", f"{p} line 1: header 'id,x,y' has no case_id column")):
        p.write_bytes(content)
        with pytest.raises(ValueError) as e:
            read_prompts(p)
        assert str(e.value).startswith(msg)
    p.write_bytes("\ufeffcase_id,x,y\na,1,2\n".encode())  # a byte-order mark (spreadsheet export) is fine
    assert read_prompts(p) == {"a": {"point": (1.0, 2.0)}}
