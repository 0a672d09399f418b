"""The spa suite's other-dataset stages (spa-general on QUBIQ, RIGA, ..., BraTS, the atrium):
a stage's figures are the protocol's own, its table carries the published column."""
from pathlib import Path

import pytest


def _ctx(shared_data, tmp_path):
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context

    return Context(options=BenchmarkOptions(quick=True), data_root=Path(shared_data), out=tmp_path, mode="quick", seed=0)


def test_spa_general_stage_is_the_protocol_and_the_section_shows_the_published_row(shared_data, tmp_path):
    import clinloop
    from clinloop.evaluation.benchmark import spa_datasets
    from clinloop.models.litemedsam import weights_available

    if not weights_available():
        pytest.skip("LiteMedSAM weights are not installed")
    if not (Path(shared_data) / "qubiq_brain_growth").is_dir():
        pytest.skip("qubiq_brain_growth is absent")
    ctx = _ctx(shared_data, tmp_path)
    stages = {s.name: s for s in spa_datasets.stages(ctx)}
    sources = ("qubiq_brain_growth", "riga_disc", "riga_cup", "bubil", "isic", "brats", "left_atrium")
    # spa-general and spa-lidc on every source, the box baseline on the 2-D ones
    assert set(stages) == ({f"spa-general-{n}" for n in sources} | {f"spa-lidc-{n}" for n in sources}
                           | {f"box-litemedsam-{n}" for n in sources[:5]})
    st = stages["spa-general-qubiq_brain_growth"]
    assert st.config["limit"] == 3 and st.config["split"] == "val"
    res = st.compute(ctx)
    ref = clinloop.evaluate("spa", "spa", Path(shared_data) / "qubiq_brain_growth", model="spa-general", seed=0,
                            split="val", held_out_fraction=0.2, limit=3, iterations=3)
    assert res["n_cases"] == ref["n_cases"] == 3
    assert res["dice_per_iteration"] == pytest.approx(ref["dice_per_iteration"])
    assert res["ci"]["dice_1"]["mean"] == pytest.approx(ref["dice_per_iteration"][0], abs=1e-4)
    text = spa_datasets.section(ctx, {st.name: {"result": res}})
    assert "qubiq_brain_growth (spa)" in text and "BrainGrowth (QUBIQ, 7 raters): 0.8814 / 0.8818" in text
    assert spa_datasets.section(ctx, {}) == ""
    # a baseline stage: the same protocol call with the baseline's method, the same cases
    box = stages["box-litemedsam-qubiq_brain_growth"]
    assert box.config["method"] == "box-litemedsam" and box.config["limit"] == 3
    got = box.compute(ctx)
    want = clinloop.evaluate("box-litemedsam", "spa", Path(shared_data) / "qubiq_brain_growth", seed=0, split="val",
                             held_out_fraction=0.2, limit=3, iterations=3)
    assert got["dice_per_iteration"] == pytest.approx(want["dice_per_iteration"])
    assert [c["case_id"] for c in got["cases"]] == [c["case_id"] for c in res["cases"]]
    text = spa_datasets.section(ctx, {st.name: {"result": res}, box.name: {"result": got}})
    assert "| qubiq_brain_growth |" in text and f"{got['ci']['dice_1']['mean']:.3f} / " in text
