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
    assert set(stages) == {f"spa-general-{n}" for n in ("qubiq_brain_growth", "riga_disc", "riga_cup", "bubil", "isic",
                                                        "brats", "left_atrium")}
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
