"""The volumetric SPA protocol (``clinloop evaluate --protocol spa-3d``) on a tiny
Decathlon-layout dataset of two ellipsoid volumes, with a stub-backbone SPA
model (tests/test_spa_model.tiny_net): the JSON keys, Dice and ASSD recomputed
independently (by hand / medpy) from the saved masks, the baseline's clicks =
the number of target slices, the per-iteration list lengths, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_datasets import _save_vol, make_riga_npz

import clinloop
from clinloop.evaluation import spa3d_protocol as p3
from tests.test_spa_model import tiny_net

SHAPE = (6, 32, 32)  # (D, H, W)
AFFINE = np.diag([0.5, 0.75, 2.0, 1.0])  # file (x, y, z) zooms -> clinloop spacing (2.0, 0.75, 0.5)


def _ellipsoid(centre, radii, seed):
    zz, yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ell = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radii)) <= 1
    rng = np.random.default_rng(seed)
    return (100 + 120 * ell + rng.normal(0, 15, SHAPE)).astype(np.float32), ell


def make_ellipsoids(root):
    """Two cases; returns their (D, H, W) labels."""
    labels, doc = [], {"name": "Ellipsoids", "tensorImageSize": "3D", "modality": {"0": "MRI"},
                       "labels": {"0": "background", "1": "blob"}, "numTraining": 2, "numTest": 0,
                       "training": [], "test": []}
    for k, (c, r) in enumerate((((2.5, 16, 15), (2.2, 8, 9)), ((3, 14, 17), (1.6, 6, 10)))):
        vol, lab = _ellipsoid(c, r, k)
        _save_vol(root / "imagesTr" / f"e{k}.nii.gz", vol.transpose(2, 1, 0), AFFINE)  # file axes (x, y, z)
        _save_vol(root / "labelsTr" / f"e{k}.nii.gz", lab.transpose(2, 1, 0).astype(np.uint8), AFFINE)
        doc["training"].append({"image": f"./imagesTr/e{k}.nii.gz", "label": f"./labelsTr/e{k}.nii.gz"})
        labels.append(lab)
    (root / "dataset.json").write_text(json.dumps(doc))
    return labels


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ell")
    labels = make_ellipsoids(root / "Task")
    mp = pytest.MonkeyPatch()
    mp.setattr(p3, "load_method", lambda method, model: __import__(
        "clinloop.models.spa.model", fromlist=["SPAModel"]).SPAModel(tiny_net()))
    try:
        res = clinloop.evaluate("spa", "spa-3d", root / "Task", iterations=2, out=str(root / "r.json"),
                                save_masks=True, seed=3)
    finally:
        mp.undo()
    return res, labels, root


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def _assd(a, b, spacing):
    from medpy.metric.binary import asd

    return (asd(a, b, spacing) + asd(b, a, spacing)) / 2


def test_keys_lengths_and_file(run):
    res, _labels, root = run
    assert {"method", "protocol", "n_cases", "split", "dice_per_iteration", "dice_click", "assd_click", "assd_final",
            "noc", "failure_rate", "seconds_click", "baseline", "cases", "target_dice_click", "target_met"} <= set(res)
    assert res["protocol"] == "spa-3d" and res["n_cases"] == 2 and res["format"] == "decathlon"
    assert res["box_margin"] == 0.0  # the tight propagated box unless --box-margin
    assert res["propagate_mask"] is False and res["min_area_fraction"] == 0.0  # the VolumeConfig defaults
    assert res["first"] == "click"
    assert res["split"].startswith("all cases") and res["n_excluded_trained"] == 0
    assert len(res["dice_per_iteration"]) == 3 and res["dice_click"] == res["dice_per_iteration"][0]
    assert set(res["noc"]) == set(res["failure_rate"]) == {"0.8", "0.9"}
    assert set(res["baseline"]) == {"dice", "assd", "clicks", "seconds"}
    for r in res["cases"]:
        assert [k for k in r if k.startswith("dice_")] == ["dice_1", "dice_2", "dice_3"]
        assert r["dice_1"] <= r["dice_2"] <= r["dice_3"]  # the user only picks a better candidate
    on_disk = json.loads((root / "r.json").read_text())
    assert on_disk["dice_per_iteration"] == res["dice_per_iteration"]
    assert (root / "r_cases.csv").read_text().count("\n") == 3


def test_dice_assd_clicks_recomputed(run):
    res, labels, root = run
    for r, lab in zip(res["cases"], labels):
        m = np.load(root / r["masks"])
        np.testing.assert_array_equal(m["target"], lab)
        np.testing.assert_allclose(m["spacing"], (2.0, 0.75, 0.5))
        assert m["click"].shape == m["final"].shape == m["baseline"].shape == SHAPE
        assert r["dice_1"] == pytest.approx(_dice(m["click"], lab), abs=1e-5)
        assert r["dice_3"] == pytest.approx(_dice(m["final"], lab), abs=1e-5)
        assert r["baseline_dice"] == pytest.approx(_dice(m["baseline"], lab), abs=1e-5)
        for key, mask in (("assd_click", m["click"]), ("baseline_assd", m["baseline"])):
            if mask.any():
                assert r[key] == pytest.approx(_assd(mask, lab, (2.0, 0.75, 0.5)), rel=1e-6)
            else:
                assert r[key] is None
        assert r["baseline_clicks"] == r["slices_target"] == int(lab.any((1, 2)).sum())
        assert not (m["baseline"] & ~lab.any((1, 2))[:, None, None]).any()  # only target slices are clicked
    assert res["baseline"]["clicks"] == np.mean([int(lab.any((1, 2)).sum()) for lab in labels])
    assert res["dice_click"] == pytest.approx(np.mean([r["dice_1"] for r in res["cases"]]), abs=1e-5)


def test_target_and_click_point_by_hand():
    masks = np.zeros((4, 1, 3, 3), bool)
    masks[:2, 0, 0, 0] = True  # 2 of 4: in
    masks[0, 0, 1, 1] = True  # 1 of 4: out
    masks[:, 0, 2, 2] = True
    assert p3.target_of(masks).sum() == 2 and p3.target_of(masks)[0, 0, 0]
    # rater 3 invalid: voxel (1, 1) drawn by 1 of 3 valid -> out; (0, 0) 2 of 3 -> in
    assert p3.target_of(masks, [True, True, True, False])[0, 0, 0]
    t = np.zeros((3, 9, 9), bool)
    t[1, 2:7, 2:7] = True  # largest slice 1, interior centre (x, y) = (4, 4)
    t[0, 4, 4] = True
    assert p3.click_point(t) == (4.0, 4.0, 1.0)


def test_bad_input(tmp_path):
    make_riga_npz(tmp_path / "riga.npz")
    with pytest.raises(ValueError, match="needs volumes"):
        clinloop.evaluate("spa", "spa-3d", tmp_path / "riga.npz")
    with pytest.raises(ValueError, match="evaluates methods"):
        clinloop.evaluate("click-litemedsam", "spa-3d", tmp_path / "riga.npz")


def test_propagation_options_reach_the_volume_config(tmp_path):
    """--propagate-mask / --min-area-fraction become VolumeConfig.use_mask / min_area_fraction;
    a bad value is refused before the data is read."""
    seen = []

    class Stop(Exception):
        pass

    class Fake:
        def start_volume(self, image, **kw):
            seen.append(kw["config"])
            raise Stop

    with pytest.raises(Stop):
        p3.run_volume(Fake(), np.zeros((1, 2, 4, 4), np.float32), np.ones((2, 4, 4), bool), None, 0, 1, {},
                      0.05, use_mask=True, min_area_fraction=0.3)
    assert (seen[0].box_margin, seen[0].use_mask, seen[0].min_area_fraction) == (0.05, True, 0.3)
    with pytest.raises(ValueError, match="min_area_fraction"):
        clinloop.evaluate("spa", "spa-3d", tmp_path / "missing", min_area_fraction=1.5)
    with pytest.raises(ValueError, match="regrow_factor"):
        clinloop.evaluate("spa", "spa-3d", tmp_path / "missing", regrow_below=0.7, regrow_factor=0.5)
    with pytest.raises(Stop):
        p3.run_volume(Fake(), np.zeros((1, 2, 4, 4), np.float32), np.ones((2, 4, 4), bool), None, 0, 1, {},
                      0.05, regrow_below=0.7, regrow_factor=1.05)
    assert (seen[1].regrow_below, seen[1].regrow_factor) == (0.7, 1.05)


def test_first_box_is_the_tight_box_of_the_clicked_slice():
    """--first box: Session.box gets (x0, y0, x1, y1, z) of the target's largest slice, the slice
    the click would go to."""
    target = np.zeros((3, 8, 10), bool)
    target[1, 2:5, 3:8] = True  # 15 voxels: the largest slice
    target[2, 4, 4] = True
    assert p3.first_box(target) == (3.0, 2.0, 7.0, 4.0, 1.0)
    assert p3.click_point(target)[2] == 1.0
    got = []

    class Stop(Exception):
        pass

    class State:
        def box(self, b):
            got.append(b)
            raise Stop

    class Fake:
        def start_volume(self, image, **kw):
            return State()

    with pytest.raises(Stop):
        p3.run_volume(Fake(), np.zeros((1, 3, 8, 10), np.float32), target, None, 0, 1, {}, first="box")
    assert got == [(3.0, 2.0, 7.0, 4.0, 1.0)]
    with pytest.raises(ValueError, match="first"):
        p3.run_volume(Fake(), np.zeros((1, 3, 8, 10), np.float32), target, None, 0, 1, {}, first="lasso")


def test_cli_help(capsys):
    from clinloop.cli import main

    assert main(["evaluate", "--protocol", "spa-3d", "--method", "spa", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--iterations" in out and "--no-baseline" in out and "--save-masks" in out


def test_volume_split_partitions_by_the_models_patients(tmp_path):
    """volume_split: 'held-back' = the patients the model's data.json does not list, 'train' = the rest."""
    import json

    class Ds:
        patient_ids = ["p0", "p1", "p2", "p1"]

        def __len__(self):
            return 4

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "data.json").write_text(json.dumps({"train_patient_ids": ["p1"]}))
    assert p3.volume_split(Ds(), str(tmp_path / "m"))[0] == [0, 2]
    assert p3.volume_split(Ds(), str(tmp_path / "m"), "train") == ([1, 3], "the model's training volumes")
    with pytest.raises(ValueError, match="split"):
        p3.volume_split(Ds(), str(tmp_path / "m"), "val")


def test_target_volumes_skips_empty_targets_and_stops_at_the_limit():
    """target_volumes yields (position in idx, index, sample, target) for non-empty targets only and
    loads no case past the limit."""
    from types import SimpleNamespace

    loaded = []

    class Ds:
        def __getitem__(self, i):
            loaded.append(i)
            m = np.zeros((1, 2, 3, 3), bool)
            m[0, 0, 1, 1] = i != 5  # case 5 has an empty target
            return SimpleNamespace(masks=m, rater_valid=[True])

    got = [(pos, i) for pos, i, _, t in p3.target_volumes(Ds(), [7, 5, 3, 9], limit=2) if t.sum() == 1]
    assert got == [(0, 7), (2, 3)] and loaded == [7, 5, 3]
