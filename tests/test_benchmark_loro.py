"""Leave-one-rater-out (spa.txt §4.3.2): the training-set change, the paired summary by
hand, and the quick stages end to end on LIDC."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clinloop.evaluation.benchmark.spa_loro import excluded, paired
from clinloop.training.spa import exclude_rater
from clinloop.training.spa_trainer import TrainCase


def _case(cid, drawn):
    masks = np.zeros((4, 4, 4), bool)
    for r in drawn:
        masks[r, 1:3, 1:3] = True
    return TrainCase(None, masks, np.ones(4, bool), cid)


def test_exclude_rater_marks_it_missing_and_drops_slices_only_it_drew():
    cases = [_case("a", (0, 1, 2, 3)), _case("b", (2,)), _case("c", (1, 2))]
    out = exclude_rater(cases, 2)
    assert [c.case_id for c in out] == ["a", "c"]  # "b": only rater 2 drew
    assert all(c.valid.tolist() == [True, True, False, True] for c in out)
    with pytest.raises(ValueError, match="--exclude-rater 5: case a has raters 0..3"):
        exclude_rater([_case("a", (0,))], 5)
    assert excluded("without-3") == 2 and excluded("all") is None


def test_paired_difference_by_hand():
    seen = [{"case_id": c, "patient_id": p, "rater": r, "dice": [d1, d6]}
            for c, p, r, d1, d6 in (("s1", "P1", 0, 0.8, 0.9), ("s1", "P1", 1, 0.7, 0.8), ("s2", "P2", 0, 0.6, 0.6))]
    unseen = [{"case_id": "s1", "patient_id": "P1", "rater": 0, "dice": [0.7, 0.85]},
              {"case_id": "s2", "patient_id": "P2", "rater": 0, "dice": [0.6, 0.7]},
              {"case_id": "s9", "patient_id": "P9", "rater": 0, "dice": [0.1, 0.1]}]  # no control row: left out
    p = paired(seen, unseen, seed=0)
    assert p["n"] == 2
    assert p["seen@1"]["mean"] == pytest.approx(0.7) and p["unseen@1"]["mean"] == pytest.approx(0.65)
    assert p["diff@1"]["mean"] == pytest.approx(-0.05) and p["diff@last"]["mean"] == pytest.approx(0.025)
    assert paired(seen, [], seed=0) == {}


def test_quick_loro_stages_train_without_the_rater_and_report_pairs(shared_data, tmp_path):
    from clinloop.evaluation.benchmark import meduhip, spa_loro
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context
    from clinloop.evaluation.benchmark.runner import run_stage

    ctx = Context(BenchmarkOptions(quick=True), shared_data, tmp_path, "quick", 0)
    sts = {s.name: s for s in meduhip.stages(ctx) if s.name.startswith("loro-")}
    assert list(sts) == ["loro-all", "loro-without-1", "loro-without-2", "loro-without-3", "loro-without-4"]
    recs = {n: run_stage(ctx, "meduhip", sts[n], False)[0] for n in ("loro-all", "loro-without-2")}
    info = json.loads((tmp_path / "models" / "budget" / "spa-seed-0-without-2" / "2-steps" / "data.json").read_text())
    assert info["excluded_rater"] == 1 and info["steps"] == 2 and "--exclude-rater 1" in info["command"]
    ctrl, un = recs["loro-all"]["result"], recs["loro-without-2"]["result"]
    assert len(ctrl["cases"]) == 2 * 4 and [c["rater"] for c in un["cases"]] == [1, 1]
    for c in ctrl["cases"] + un["cases"]:
        assert len(c["dice"]) == 6 and all(0 <= d <= 1 for d in c["dice"])
    text = spa_loro.section(ctx, recs)
    row = next(x for x in text.splitlines() if x.startswith("| rater 2 | 2 |"))
    want = np.mean([u["dice"][0] for u in un["cases"]])
    assert float(row.split("|")[4].split()[0]) == pytest.approx(want, abs=6e-4)
    assert "| **all raters** | 2 |" in text


def test_loro_control_is_the_ablation_spa_seed_0_model(tmp_path):
    """One folder per equal-budget recipe: the control is trained once for both tables."""
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context
    from clinloop.evaluation.benchmark.spa_loro import budget_dir

    ctx = Context(BenchmarkOptions(), tmp_path, tmp_path, "default", 0)
    assert budget_dir(ctx) == budget_dir(ctx, "spa", 0, None) == tmp_path / "models/budget/spa-seed-0/300-steps"
    assert budget_dir(ctx, exclude_rater=1).name == "300-steps"
    assert budget_dir(ctx, exclude_rater=1).parent.name == "spa-seed-0-without-2"
    assert budget_dir(ctx, "spa-weights", 2).parent.name == "spa-weights-seed-2"
