"""The shipped MedUHIP model (meduhip-lidc): what `clinloop evaluate --method meduhip
--protocol spa` loads without --model, and its stored validation row reproduced."""
import csv
import json

import numpy as np
import pytest

from clinloop.models.litemedsam import weights_available
from clinloop.models.registry import SHIPPED_DIR

FOLDER = SHIPPED_DIR / "meduhip-lidc"


def test_protocol_default_models_per_method():
    from clinloop.evaluation.spa_protocol import SHIPPED, load_method

    assert SHIPPED["meduhip"] == "meduhip-lidc" and SHIPPED["spa"] == "spa-lidc"
    with pytest.raises(ValueError, match="no shipped model for 'spa-weights'"):
        load_method("spa-weights", None)
    cfg = json.loads((FOLDER / "config.json").read_text())
    data = json.loads((FOLDER / "data.json").read_text())
    assert cfg["method"] == "meduhip"
    assert data["init"]["method"] == "spa" and data["user_iterations"] == 6 and data["steps"] > 0
    assert (FOLDER / "weights.pt").stat().st_size < 7e6  # int8 deltas against the pretrained checkpoint


def reproduce_first_validation_case(model, method: str, folder, shared_data) -> None:
    """The model reproduces the first row of ``folder/results_cases.csv`` (the first held-back
    LIDC slice of the spa protocol): its user's raters and Dice after 2 iterations."""
    from clinloop.data import load_dataset
    from clinloop.evaluation.spa_protocol import run_case
    from clinloop.training.spa_data import select_cases

    with open(folder / "results_cases.csv") as f:
        first = next(csv.DictReader(f))
    ds = load_dataset(shared_data / "lidc")
    i = select_cases(ds, "val", limit=1, per_group=1)[0]
    assert ds.case_ids[i] == first["case_id"]
    s = ds[i]
    d, _, _, raters, _ = run_case(model, method, s.image[0], s.masks, s.rater_valid, int(first["seed"]), 2,
                                  structure=s.structure)  # as the protocol (spa-general: the nodule's expert)
    assert " ".join(map(str, raters)) == first["raters"]
    np.testing.assert_allclose(d, [float(first["dice_1"]), float(first["dice_2"])], atol=2e-3)


@pytest.mark.skipif(not weights_available(), reason="LiteMedSAM weights not installed")
def test_meduhip_lidc_reproduces_its_first_validation_case(shared_data):
    from clinloop.evaluation.spa_protocol import load_method

    model = load_method("meduhip", None)
    assert model.name == "meduhip" and model.net.config.n_samples == 48
    reproduce_first_validation_case(model, "meduhip", FOLDER, shared_data)
