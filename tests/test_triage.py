"""``clinloop triage``: worklist ordered by LEXU's image-level uncertainty."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from clinloop.cli import main

from _lexu_fixtures import write_tiny_riga


def test_triage_csv_ordering_matches_uncertainty(tmp_path):
    data = write_tiny_riga(tmp_path / "tiny.npz")
    assert main(["train", "--method", "lexu", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "2",
                 "--size", "32", "--widths", "4,6,8,8", "--structure", "cup", "--threads", "1"]) == 0
    out = tmp_path / "worklist.csv"
    assert main(["triage", "--model", str(tmp_path / "m"), "--data", str(data), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10
    assert [int(r["rank"]) for r in rows] == list(range(1, 11))
    u = [float(r["predicted_disagreement"]) for r in rows]
    assert u == sorted(u, reverse=True)
    # the values are the predictor's own image-level uncertainties
    from clinloop.data import load_dataset
    from clinloop.models.lexu.model import load_lexu

    pred = load_lexu(tmp_path / "m")
    ds = load_dataset(data, structure="cup")
    by_id = {s.case_id: pred.predict(s.image)[2] for s in ds}
    for r in rows:
        assert float(r["predicted_disagreement"]) == pytest.approx(by_id[r["case_id"]], rel=1e-4)
    # case01 has a missing rater: 2 valid raters counted
    assert {r["case_id"]: int(r["n_raters"]) for r in rows}["case02"] == 2
    # rater disagreement is Σ H = Σ p (1 - p) over the valid raters' masks at the model's size
    # (p = the raters' mean), computed here by hand
    samples = {s.case_id: s for s in ds}
    for r in rows:
        s = samples[r["case_id"]]
        m = pred.prepare_masks(s.masks).numpy().astype(bool)[s.rater_valid]
        p = m.mean(0)
        assert float(r["rater_disagreement"]) == pytest.approx(float((p * (1 - p)).sum()), rel=1e-4, abs=1e-6)
    assert any(float(r["rater_disagreement"]) > 0 for r in rows)
    # JSON output and held-out selection
    assert main(["triage", "--model", str(tmp_path / "m"), "--data", str(data), "--out", str(tmp_path / "w.json"),
                 "--split", "test"]) == 0
    import json

    assert len(json.loads((tmp_path / "w.json").read_text())) == 3
    assert main(["triage", "--model", str(tmp_path / "m"), "--data", str(data), "--out", str(out), "--limit", "4"]) == 0
    assert len(list(csv.DictReader(out.open()))) == 4


@pytest.mark.parametrize("limit", ["0", "-36"])
def test_triage_limit_below_one_is_a_clear_error(tmp_path, capsys, limit):
    out = tmp_path / "w.csv"
    assert main(["triage", "--data", str(tmp_path), "--out", str(out), "--limit", limit]) == 2
    assert capsys.readouterr().err == f"clinloop: error: --limit must be >= 1, got {limit}\n"
    assert not out.exists()


def test_triage_refuses_a_model_of_another_family_and_a_folder_out(tmp_path, capsys):
    data = write_tiny_riga(tmp_path / "tiny.npz", n=2)
    assert main(["triage", "--model", "spa-lidc", "--data", str(data), "--out", str(tmp_path / "w.csv")]) == 2
    assert capsys.readouterr().err == "clinloop: error: triage needs a LEXU model; spa-lidc is a spa model\n"
    assert main(["triage", "--model", "mecca-lidc", "--data", str(data), "--out", str(tmp_path / "w.csv")]) == 2
    assert capsys.readouterr().err == "clinloop: error: triage needs a LEXU model; mecca-lidc is a mecca model\n"
    (tmp_path / "dir").mkdir()  # --out an existing folder: said so before any work, the folder untouched
    assert main(["triage", "--data", str(data), "--out", str(tmp_path / "dir")]) == 2
    assert capsys.readouterr().err == (f"clinloop: error: --out {tmp_path / 'dir'} is a folder; triage writes a file "
                                       f"(e.g. --out {tmp_path / 'dir' / 'worklist.csv'})\n")
    assert not (tmp_path / "w.csv").exists() and not list((tmp_path / "dir").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_predict_api_shapes(tmp_path):
    data = write_tiny_riga(tmp_path / "tiny.npz", n=4)
    assert main(["train", "--method", "lexu", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--size", "32", "--widths", "4,6,8,8", "--structure", "cup", "--test-fraction", "0.25"]) == 0
    from clinloop.models.registry import load_model

    pred = load_model(tmp_path / "m")
    img = np.random.default_rng(0).random((3, 50, 40)).astype(np.float32)
    prob, unc, u = pred.predict(img)
    assert prob.shape == unc.shape == (50, 40)
    assert 0 <= prob.min() and prob.max() <= 1 and unc.min() >= -1e-6 and u >= 0
    with pytest.raises(ValueError, match="channels"):
        pred.predict(np.zeros((2, 8, 8), np.float32))
