"""benchmarks/mecca_click_reach.py: each radius is the protocol with that click reach, to the digit."""
import pytest

from tests._benchmarks import load_script


def test_each_radius_reproduces_the_protocol(shared_data, tmp_path):
    d = shared_data / "brats2018_flair"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    from clinloop.evaluation.mecca_cases import evaluate_model

    out = tmp_path / "reach.json"
    rows = load_script("mecca_click_reach").main(["--task", "brats", "--data-root", str(shared_data), "--methods",
                                                   "mecca", "--radii", "0,3", "--limit", "1", "--steps", "2",
                                                   "--out", str(out)])
    assert [(r["model"], r["click_reach"]) for r in rows] == [("mecca-brats", 0.0), ("mecca-brats", 3.0)]
    shipped = evaluate_model("mecca", d, limit=1, steps=2, seed=0)  # the folder's own reach: 3
    assert rows[1]["dice_per_step"] == shipped["dice_per_step"]
    assert rows[1]["misunderstanding_per_step"] == shipped["misunderstanding_per_step"]
    # R = 0 lets every agent act: more of them move against their label
    assert sum(rows[0]["misunderstanding_per_step"]) > sum(rows[1]["misunderstanding_per_step"])
    assert out.is_file()
