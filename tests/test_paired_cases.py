"""benchmarks/paired_cases.py: paired A − B over the cases two evaluation runs share."""
import numpy as np
import pytest

from tests._benchmarks import load_script


@pytest.fixture(scope="module")
def mod():
    return vars(load_script("paired_cases"))


def _csv(path, rows):
    cols = list(rows[0])
    path.write_text("\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]) + "\n")
    return path


def test_matches_cases_and_seeds_and_resamples_groups(tmp_path, mod):
    a = [{"case_id": "p1/a", "patient_id": "p1", "seed": 0, "dice_1": 0.9},
         {"case_id": "p1/b", "patient_id": "p1", "seed": 1, "dice_1": 0.7},
         {"case_id": "p2/a", "patient_id": "p2", "seed": 2, "dice_1": 0.5},
         {"case_id": "p3/a", "patient_id": "p3", "seed": 3, "dice_1": 0.5}]  # not in B
    b = [{"case_id": "p1/a", "patient_id": "p1", "seed": 0, "dice_1": 0.8},
         {"case_id": "p1/b", "patient_id": "p1", "seed": 1, "dice_1": 0.6},
         {"case_id": "p2/a", "patient_id": "p2", "seed": 2, "dice_1": 0.7}]
    rows = mod["read_rows"]
    res = mod["paired"](rows(_csv(tmp_path / "a.csv", a)), rows(_csv(tmp_path / "b.csv", b)), ["dice_1"], group="patient_id",
                        n_boot=400)
    ci = res["columns"]["dice_1"]
    assert res["n_matched"] == 3 and ci["n_groups"] == 2
    assert ci["mean"] == pytest.approx((0.1 + 0.1 - 0.2) / 3)
    # draws of 2 patients: p1 p1 -> 0.1, p1 p2 -> 0, p2 p2 -> -0.2: the interval spans exactly those ends
    assert ci["lo"] == pytest.approx(-0.2) and ci["hi"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="dice_9"):
        mod["paired"](rows(tmp_path / "a.csv"), rows(tmp_path / "b.csv"), ["dice_9"])
    assert mod["main"]([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "p.json")]) == 0
    assert np.isclose(__import__("json").loads((tmp_path / "p.json").read_text())["columns"]["dice_1"]["mean"], 0.0)
