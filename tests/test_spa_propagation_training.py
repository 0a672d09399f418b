"""Propagation episodes of SPA training (``--propagation-prob``): the neighbouring slices' masks a
3-D source's cases carry, the end cases past the structure (target empty), the box a propagation
episode starts from, and the trainer running such episodes."""
import json

import numpy as np
import pytest
import torch

from clinloop.training.spa_corrective import propagation_box
from clinloop.training.spa_mix import END_REPEAT, Source, propagation_guides, source_cases


def test_propagation_guides_are_the_non_empty_neighbours_and_the_two_ends():
    u = np.zeros((10, 8, 8), bool)
    u[3:8, 2:5, 2:5] = True
    nb, ends = propagation_guides(u, [3, 5, 7])
    assert nb == [(3, [4]), (5, [4, 6]), (7, [6])]
    assert ends == [(2, 3), (8, 7)]
    u2 = np.zeros((6, 8, 8), bool)
    u2[0:3, 1:3, 1:3] = True  # touches the first slice: only the upper end exists
    assert propagation_guides(u2, [0, 2])[1] == [(3, 2)]
    assert propagation_guides(np.zeros((4, 8, 8), bool), [0]) == ([], [])


def test_propagation_box_holds_a_guides_box_with_a_few_pixels_of_slack():
    g = np.zeros((256, 256), bool)
    g[100:141, 60:81] = True  # x 60..80 (21 wide), y 100..140 (41 high)
    rng = np.random.default_rng(0)
    boxes = np.array([propagation_box((g,), rng) for _ in range(300)])
    lo = np.array([60, 100, 80, 140], float)
    out = (boxes - lo) * np.array([-1, -1, 1, 1])  # how far each side moved outwards
    assert out.min() == -3 and out.min(0).tolist() == [-3, -3, -3, -3]
    assert out[:, 0].max() == 1 + 3 and out[:, 1].max() == 2 + 3  # 0.05 * side + 3 (int)
    g2 = np.zeros_like(g)
    g2[10:20, 10:20] = True
    picks = {tuple(propagation_box((g, g2), np.random.default_rng(s))[:2]) < (50, 50) for s in range(40)}
    assert picks == {True, False}  # either guide is drawn


def test_propagation_box_with_shrink_also_moves_sides_inwards():
    g = np.zeros((256, 256), bool)
    g[100:141, 60:81] = True  # 21 wide, 41 high
    rng = np.random.default_rng(1)
    boxes = np.array([propagation_box((g,), rng, shrink=0.2) for _ in range(400)])
    out = (boxes - np.array([60, 100, 80, 140], float)) * np.array([-1, -1, 1, 1])
    # inwards: int(0.2 * side) + 3 -> x sides 4 + 3 = 7, y sides 8 + 3 = 11; outwards as without shrink
    assert out.min(0).tolist() == [-7, -11, -7, -11]
    assert out.max(0).tolist() == [4, 5, 4, 5]
    # shrink 0 draws exactly the boxes it drew before the option existed
    a = [propagation_box((g,), np.random.default_rng(s)) for s in range(5)]
    assert a == [propagation_box((g,), np.random.default_rng(s), shrink=0.0) for s in range(5)]


def _atrium(root, n=5, shape=(20, 20, 12), z=(3, 8)):
    """A Decathlon folder whose case k has a square 'atrium' on NIfTI slices z[0]..z[1] (k-shifted)."""
    from tests.fixtures_datasets import _save_vol, volume_affine

    aff = volume_affine((1.0, 1.0, 1.0), flip_x=False)
    doc = {"name": "Tiny", "tensorImageSize": "3D", "modality": {"0": "MRI"},
           "labels": {"0": "background", "1": "left atrium"}, "numTraining": n, "numTest": 0,
           "training": [], "test": []}
    rng = np.random.default_rng(0)
    for k in range(n):
        img = rng.random(shape).astype(np.float32)
        lab = np.zeros(shape, np.uint8)
        lab[5 + k % 3:12, 4:13, z[0]:z[1] + 1] = 1
        img[lab > 0] += 2.0
        _save_vol(root / "imagesTr" / f"la_{k:03d}.nii.gz", img, aff)
        _save_vol(root / "labelsTr" / f"la_{k:03d}.nii.gz", lab, aff)
        doc["training"].append({"image": f"./imagesTr/la_{k:03d}.nii.gz", "label": f"./labelsTr/la_{k:03d}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


def test_source_cases_with_propagation_adds_guides_and_end_cases(tmp_path, monkeypatch):
    from clinloop.data import load_dataset
    from tests.test_spa_model import tiny_net

    monkeypatch.setenv("CLINLOOP_CACHE", str(tmp_path / "cache"))  # stub-encoder embeddings stay out of the real cache
    root = _atrium(tmp_path / "la")
    ds = load_dataset(root)
    bb = tiny_net(cond_width=8).backbone
    src = Source("la", "la", slices=3)
    plain, rec0 = source_cases(tmp_path, src, bb, progress=False)
    cases, rec = source_cases(tmp_path, src, bb, progress=False, propagation=True)
    n_vol = len(rec["train_patient_ids"])
    assert rec0["train_patient_ids"] == rec["train_patient_ids"] and n_vol == 4
    # without propagation: as before, 3 slices per volume, no guides, no empty targets
    assert len(plain) == 3 * n_vol and all(c.guides == () and c.masks.any() for c in plain)
    assert rec0["end_cases"] == 0
    # with it: the same slices (now with guides) then each volume's two end cases END_REPEAT times
    ends = [c for c in cases if not c.masks.any()]
    assert len(cases) == 3 * n_vol + 2 * END_REPEAT * n_vol and len(ends) == rec["end_cases"] == 2 * END_REPEAT * n_vol
    assert [c.case_id for c in cases if c.masks.any()] == [c.case_id for c in plain]
    for c in cases:
        assert 1 <= len(c.guides) <= 2 and all(g.shape == (256, 256) and g.any() for g in c.guides)
    # an end case's guide is the end slice's own mask, as the plain case of that slice has it
    by_id = {c.case_id: c for c in plain}
    i = list(ds.patient_ids).index(rec["train_patient_ids"][0])
    occ = np.nonzero(ds[i].masks[0].any(axis=(1, 2)))[0]
    lo_end = next(c for c in ends if c.case_id == f"la:{ds.case_ids[i]}/z{occ[0] - 1}")
    np.testing.assert_array_equal(lo_end.guides[0], by_id[f"la:{ds.case_ids[i]}/z{occ[0]}"].masks.any(0))
    # end_repeat 0: the guided slices only, no end case
    no_ends, rec_n = source_cases(tmp_path, src, bb, progress=False, propagation=True, end_repeat=0)
    assert [c.case_id for c in no_ends] == [c.case_id for c in plain] and rec_n["end_cases"] == 0
    assert all(c.guides for c in no_ends)


def _case(target: bool, guide_box=(40, 60, 120, 140)):
    from clinloop.training.spa import TrainCase

    m = np.zeros((1, 256, 256), bool)
    g = np.zeros((256, 256), bool)
    x0, y0, x1, y1 = guide_box
    g[y0:y1 + 1, x0:x1 + 1] = True
    if target:
        m[0, y0 + 5:y1 - 5, x0 + 5:x1 - 5] = True
    return TrainCase(torch.randn(256, 64, 64).half(), m, np.ones(1, bool), "v/z1", guides=(g,))


def test_trainer_runs_propagation_episodes_from_a_neighbours_box():
    from clinloop.training.spa import SPATrainer
    from tests.test_spa_model import tiny_net

    net = tiny_net(cond_width=8)
    first = []
    real = net.encode_interaction

    def spy(points, mask_logits, box=None, structure=0):
        first.append((points, mask_logits, None if box is None else box[0].tolist()))
        return real(points, mask_logits, box, structure)

    net.encode_interaction = spy
    tr = SPATrainer(net, lr=1e-3, n_samples=2, seed=0, user_iterations=2, click_prob=1.0, propagation_prob=1.0,
                    click_weight=1.0)
    # an end case: the box of the end slice's mask, an empty target, finite losses
    row = tr.train_step([_case(False)])
    assert all(np.isfinite(row[k]) for k in ("loss_mv", "loss_seg")) and 0 <= row["dice_first"] <= 1
    pts, mp, box = first[0]
    assert pts is None and mp is None and box is not None
    assert abs(box[0] - 40) <= 7 and abs(box[3] - 140) <= 8
    # a slice inside the structure with propagation_prob 1: also the neighbour's box first
    first.clear()
    tr.train_step([_case(True)])
    assert first[0][0] is None and first[0][2] is not None
    # propagation_prob 0: a non-empty slice starts from a click, guides or not
    first.clear()
    SPATrainer(net, lr=1e-3, n_samples=2, seed=0, user_iterations=1).train_step([_case(True)])
    assert first[0][0] is not None and first[0][2] is None
    with pytest.raises(ValueError, match="propagation_prob"):
        SPATrainer(net, propagation_prob=2.0)
    with pytest.raises(ValueError, match="propagation_shrink"):
        SPATrainer(net, propagation_shrink=0.5)


def test_propagation_prob_needs_a_mix(tmp_path):
    from clinloop.training.spa import SPATrainOptions, train_model

    with pytest.raises(ValueError, match="--propagation-prob needs --mix"):
        train_model(SPATrainOptions(method="spa", data=str(tmp_path), out=str(tmp_path / "m"), propagation_prob=0.5))
    with pytest.raises(ValueError, match="--propagation-ends must be >= 0"):
        train_model(SPATrainOptions(method="spa", data=str(tmp_path), out=str(tmp_path / "m"), mix="general",
                                    propagation_prob=0.5, propagation_ends=-1))
    with pytest.raises(ValueError, match="--propagation-shrink must be in 0 .. 0.5"):
        train_model(SPATrainOptions(method="spa", data=str(tmp_path), out=str(tmp_path / "m"), mix="general",
                                    propagation_prob=0.5, propagation_shrink=0.6))
