"""The shipped general SPA model (spa-general): the default of load_model() and of the
workstation, trained on every mask dataset of ../shared/data with corrective clicks
(clinloop.training.spa_mix, spa_corrective). Its record says what it saw, it never saw the
patients the protocols hold back, and it loads as the default."""
import json

import pytest

from clinloop.models.registry import DEFAULT_MODEL, SHIPPED_DIR
from clinloop.training.spa_mix import GENERAL

FOLDER = SHIPPED_DIR / "spa-general"


def test_record_names_every_source_and_its_held_back_patients(shared_data):
    from clinloop.data import load_dataset
    from clinloop.training.spa_data import patient_split

    data = json.loads((FOLDER / "data.json").read_text())
    # two stages: the general mix from spa-lidc, then the general-volumes mix from that model
    assert data["mix"] == "general-volumes" and set(data["sources"]) == {s.name for s in GENERAL}
    assert data["click_prob"] > 0 and data["box_prob"] > 0 and data["init"]["model"] == "spa-general"
    assert "clinloop train --method spa" in data["command"] and "--mix general-volumes" in data["command"]
    first = data["previous_stage"]
    assert first["init"]["model"] == "spa-lidc" and "--mix general " in first["command"]
    assert first["init"]["weights_sha256"] != data["init"]["weights_sha256"]
    assert (FOLDER / "weights.pt").stat().st_size < 8e6  # 6.1 MB of stage 2 + the nodule's expert (0.9 MB)
    assert DEFAULT_MODEL == "spa-general"
    for src in GENERAL:  # the same seeded split as the protocols: no held-back patient was trained on
        rec = data["sources"][src.name]
        assert rec["held_out"] == src.held_out and rec["cases"] > 0
        ds = load_dataset(shared_data / src.folder, **src.options)
        sp = patient_split(ds.patient_ids, src.held_out, data["split"]["seed"])
        assert all(sp[p] == "train" for p in rec["train_patient_ids"]), src.name


def test_the_nodules_expert_is_spa_lidc_and_it_never_saw_the_held_back_lidc_patients(shared_data):
    from clinloop.data import load_dataset
    from clinloop.models.spa.config import SPAConfig
    from clinloop.training.spa_data import patient_split

    cfg = SPAConfig.load(FOLDER / "config.json")
    assert (cfg.structures, cfg.expert_rank, cfg.structure_route) == (["nodule"], 8, "until-corrected")
    data = json.loads((FOLDER / "data.json").read_text())
    e = data["expert"]
    assert (e["specialist"], e["structure"], e["rank"]) == ("spa-lidc", "nodule", 8)
    assert "clinloop extract-expert" in e["command"]
    lidc = json.loads((SHIPPED_DIR / "spa-lidc" / "data.json").read_text())
    ds = load_dataset(shared_data / "lidc")
    src = next(s for s in GENERAL if s.name == "lidc")
    held = {p for p, part in patient_split(ds.patient_ids, src.held_out, data["split"]["seed"]).items()
            if part != "train"}
    seen = {c.split("/")[0] for c in lidc["train_case_ids"]}
    assert held and len(seen) > 100 and not held & seen
    assert set(e["train_patient_ids"]) == seen  # what the spa-3d protocol holds back besides the mix's patients


@pytest.mark.slow
def test_default_model_is_spa_general_with_the_click_constraint():
    from clinloop.models.litemedsam import weights_available

    if not weights_available():
        pytest.skip("LiteMedSAM weights not installed")
    from clinloop import load_model

    m = load_model()
    assert m.name == "spa" and m.config.n_samples == 48 and m.config.honour_clicks


def test_reproduces_its_first_lidc_validation_case(shared_data):
    from clinloop.models.litemedsam import weights_available

    if not weights_available():
        pytest.skip("LiteMedSAM weights not installed")
    from clinloop.evaluation.spa_protocol import load_method
    from tests.test_spa_shipped import reproduce_first_validation_case

    reproduce_first_validation_case(load_method("spa", "spa-general"), "spa", FOLDER, shared_data)
