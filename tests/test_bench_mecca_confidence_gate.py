"""benchmarks/mecca_confidence_gate.py: its error counts on a hand-made case and its
rollout against the protocol's own figures (the held-back BraTS volumes, shipped model)."""
import numpy as np
import pytest

from tests._benchmarks import load_script


def _script():
    return load_script("mecca_confidence_gate")


def test_error_counts_by_hand():
    label = np.zeros((1, 1, 30), bool)
    label[0, 0, 10:20] = True  # a 10-voxel segment at 1 mm
    mask = np.zeros_like(label)
    mask[0, 0, 12:20] = True  # misses voxels 10 and 11: 1 and 2 mm inside the label, not "deep"
    mask[0, 0, 26] = True  # a false positive 7 mm beyond the segment's last voxel (19)
    e = _script().error_counts(mask, label, (1.0, 1.0, 1.0), far_mm=5.0)
    assert e == {"fp": 1, "far_fp": 1, "fn": 2, "deep_fn": 0}
    e = _script().error_counts(mask, label, (1.0, 1.0, 2.0), far_mm=5.0)  # 2 mm voxels along x: 14 mm away
    assert e["far_fp"] == 1 and e["fn"] == 2


def test_gate_run_reproduces_the_protocol(shared_data):
    import dataclasses

    d = shared_data / "brats2018_flair"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    from clinloop.evaluation.mecca_cases import evaluate_model, iter_cases, open_dataset
    from clinloop.models.mecca.model import load_mecca
    from clinloop.models.registry import resolve_model_dir

    model = load_mecca(resolve_model_dir("mecca-brats"))
    assert (model.cfg.confidence_gate, model.cfg.click_reach) == (0.5, 3.0)
    # the gate alone: every agent may act (click reach 0, the paper)
    model.cfg = dataclasses.replace(model.cfg, click_reach=0.0)
    cases = list(iter_cases(open_dataset(d, None, 3), model, model.cfg.fusion, 0, 1, 0))
    mod = _script()
    gated = mod.run_gate(model, cases, 2, 0, 10.0)
    ref = evaluate_model("mecca", d, limit=1, steps=2, seed=0, click_reach=0.0)
    assert gated["dice_per_step"] == ref["dice_per_step"]
    assert gated["misunderstanding_per_step"] == ref["misunderstanding_per_step"]
    # gate 1: only actions whose C(s, a) is exactly 1 in float32 move (3 agents of this
    # volume); the P-Net's mask stays as it was
    model.cfg = dataclasses.replace(model.cfg, confidence_gate=1.0)
    frozen = mod.run_gate(model, cases, 2, 0, 10.0)
    assert frozen["dice_per_step"][0] == frozen["dice_per_step"][1] > 0.85
    assert max(frozen["misunderstanding_per_step"]) < 10 < min(gated["misunderstanding_per_step"])
