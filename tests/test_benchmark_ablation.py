"""spa.txt Table 3 at equal budget: the summary over training seeds by hand, the order line,
and the quick stages end to end on LIDC (four variants trained for 2 steps)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clinloop.evaluation.benchmark.spa_ablation import VARIANTS, add_pairs, order_line, stage_name, summarise


def _rec(variant, seed, dice3, dice1=0.5):
    cases = [{"case_id": f"c{i}", "patient_id": f"P{i}", "dice": [dice1, dice1, d]} for i, d in enumerate(dice3)]
    return {"result": {"variant": variant, "train_seed": seed, "steps": 300, "iterations": 3, "cases": cases}}


def test_summary_means_over_seeds_and_pairs_by_hand():
    n = 12
    base = np.linspace(0.6, 0.9, n)
    recs = {}
    for v, off in zip(VARIANTS, (-0.10, -0.05, -0.049, 0.0)):
        for s in (0, 1):
            recs[stage_name(v, s)] = _rec(v, s, base + off + 0.01 * s)
    # a third seed only for one variant: left out so the comparison stays at equal budget
    recs[stage_name("spa", 2)] = _rec("spa", 2, base + 0.5)
    s = summarise(recs, (0, 1, 2), seed=0)
    assert s["seeds"] == [0, 1] and s["steps"] == 300
    spa = s["variants"]["spa"]
    assert spa["per_seed@3"] == pytest.approx([base.mean(), base.mean() + 0.01])
    assert spa["mean@3"]["mean"] == pytest.approx(base.mean() + 0.005) and spa["mean@3"]["n"] == n
    assert s["variants"]["spa-random-gmm"]["diff@3"]["mean"] == pytest.approx(-0.10)
    assert s["variants"]["spa-random-gmm"]["per_seed_diff@3"] == pytest.approx([-0.10, -0.10])
    assert s["variants"]["spa-weights"]["mean@1"]["mean"] == pytest.approx(0.5)
    s = add_pairs(s, recs, seed=0)
    assert s["pairs"]["spa|spa-weights"]["mean"] == pytest.approx(0.049)
    # constant paired gaps have a zero-width interval: every step is established, even 0.001
    assert order_line(s) == "`spa` > `spa-weights` > `spa-mean-variance` > `spa-random-gmm`"
    for v in VARIANTS:  # now make two variants equal on half the cases, unequal on the rest
        for sd in (0, 1):
            recs[stage_name(v, sd)] = _rec(v, sd, base + (0.02 * (np.arange(n) % 2) - 0.01 if v == "spa" else 0))
    s = add_pairs(summarise(recs, (0, 1), seed=0), recs, seed=0)
    assert "≈" in order_line(s)
    assert summarise({}, (0, 1)) == {}


def test_quick_ablation_stages_train_each_variant(shared_data, tmp_path):
    from clinloop.evaluation.benchmark import meduhip, spa_ablation
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context
    from clinloop.evaluation.benchmark.runner import run_stage

    ctx = Context(BenchmarkOptions(quick=True), shared_data, tmp_path, "quick", 0)
    sts = [s for s in meduhip.stages(ctx) if s.name.startswith("ablation-")]
    assert [s.name for s in sts] == [f"ablation-{v}-seed-0" for v in VARIANTS]
    recs = {s.name: run_stage(ctx, "meduhip", s, False)[0] for s in sts}
    for v in VARIANTS:
        folder = tmp_path / "models" / "budget" / f"{v}-seed-0" / "2-steps"
        assert json.loads((folder / "config.json").read_text())["method"] == v
        r = recs[f"ablation-{v}-seed-0"]["result"]
        assert r["variant"] == v and len(r["cases"]) == 2
        assert all(len(c["dice"]) == 3 and all(0 <= d <= 1 for d in c["dice"]) for c in r["cases"])
    text = spa_ablation.section(ctx, recs)
    row = next(x for x in text.splitlines() if x.startswith("| all three (SPA) (`spa`, ours)"))
    want = np.mean([c["dice"][2] for c in recs["ablation-spa-seed-0"]["result"]["cases"]])
    assert float(row.split("|")[2]) == pytest.approx(want, abs=6e-4)
    assert "| Random Gaussian (**published**) | — | — | — | — | 80.29 | 90.05 |" in text
    assert meduhip.figures(ctx, recs) == ["spa_table3_ablation.png"]
    assert (tmp_path / "spa_table3_ablation.png").stat().st_size > 5000


def test_budget_model_trains_every_seed_on_the_evaluated_split(shared_data, tmp_path):
    """A training seed other than 0 must not move the patient split: the ablation evaluates on
    SPLIT_SEED's held-out patients (until 2026-12-03, seeds 1 and 2 trained on 12-13 of them)."""
    from clinloop.data import load_dataset
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context
    from clinloop.evaluation.benchmark.cases import SPLIT_SEED, heldout_lidc, lidc_dir
    from clinloop.evaluation.benchmark.spa_loro import budget_model

    ctx = Context(BenchmarkOptions(quick=True), shared_data, tmp_path, "quick", 0)
    out = budget_model(ctx, tmp_path / "m", seed=2)
    info = json.loads((out / "data.json").read_text())
    assert info["split"]["seed"] == SPLIT_SEED == 0
    ds = load_dataset(lidc_dir(shared_data))
    patient = dict(zip(ds.case_ids, ds.patient_ids))  # no image loads
    evaluated = {patient[ds.case_ids[i]] for i in heldout_lidc(ds, per_nodule=1)}
    trained = {patient[c] for c in info["train_case_ids"]}
    assert trained and evaluated and not trained & evaluated
