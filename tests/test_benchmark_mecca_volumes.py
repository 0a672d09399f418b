"""The MECCA suite's volume stages (BraTS, the atrium): one per shipped ``<method>-<task>``
model, whose figures are the MECCA protocol's on the same held-back volumes."""
from __future__ import annotations

import json

import numpy as np


def test_volume_stages_follow_the_shipped_models(monkeypatch):
    from clinloop.evaluation.benchmark import mecca
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context

    monkeypatch.setattr("clinloop.models.registry.shipped_models", lambda: ["pnet-brats", "mecca-atrium", "spa-lidc"])
    ctx = Context(BenchmarkOptions(quick=True), None, None, "quick", 0)
    names = [s.name for s in mecca.stages(ctx)]
    assert names[:4] == ["mecca-mecca", "mecca-mecca-no-confidence", "mecca-interactive-cnn", "mecca-unet"]
    assert names[4:] == ["mecca-brats-pnet", "mecca-atrium-mecca"]


def test_brats_pnet_stage_is_the_protocol_on_one_held_back_volume(shared_data, tmp_path):
    from clinloop.evaluation.benchmark import mecca
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context
    from clinloop.evaluation.mecca_protocol import MECCAProtocolOptions, run_protocol
    from clinloop.models.registry import resolve_model_dir

    ctx = Context(BenchmarkOptions(quick=True), shared_data, tmp_path, "quick", 0)
    rec = mecca._volume_stage("brats", "pnet")(ctx)
    assert rec["model"] == "pnet-brats" and rec["n_cases"] == 1
    ref = run_protocol(MECCAProtocolOptions(method="pnet", data=str(shared_data / "brats2018_flair"),
                                            model="pnet-brats", limit=1, seed=0, steps=5), verbose=False)
    np.testing.assert_allclose(rec["protocol"]["dice_per_step"], ref["dice_per_step"])
    dice = rec["cases"][0]["dice"]
    assert rec["ci"]["dice_1"]["mean"] == dice[0] and len(set(dice)) == 1  # no hints: every step the same
    held = json.loads((resolve_model_dir("pnet-brats") / "data.json").read_text())["val_patients"]
    assert len(held) == 2 and rec["cases"][0]["case_id"] in ("case_0", "case_1")  # their case folders
    assert dice[0] > 0.8  # the shipped P-Net segments a held-back tumour (0.888 / 0.890 measured)
    text = mecca.section(ctx, {"mecca-brats-pnet": {"result": rec, "config": {"mode": "quick"}, "seconds": 1}})
    assert "### brats" in text and "pnet-brats" in text
