"""MECCA end to end: sessions (2-D and 3-D), model folders, the protocol, a training smoke run."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from clinloop.interaction.session import Session
from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.mecca.model import MECCAModel, build_networks, load_mecca


def _tiny(method="mecca", ndim=2, **kw):
    torch.manual_seed(0)
    cfg = MECCAConfig(method=method, ndim=ndim, width=4, conf_width=4, head_dilations=(2, 4),
                      conf_dilations=(1, 2), slic_segments=30, **kw)
    return MECCAModel(cfg, build_networks(cfg))


def _disc(shape, r):
    grids = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    return sum(g**2 for g in grids) < r**2


@pytest.mark.parametrize("method", ["mecca", "interactive-cnn"])
def test_session_2d_hint_gives_proposal_with_advice(method):
    model = _tiny(method)
    img = np.random.default_rng(0).normal(size=(40, 48)).astype(np.float32) + 3 * _disc((40, 48), 10)
    s = Session(model, img, seed=0)
    p = s.hint([((24.0, 10.5), True), ((2.0, 3.0), False)])
    assert p.mask.shape == p.probability.shape == p.uncertainty.shape == (40, 48)
    assert p.mask.dtype == bool and 0 <= p.probability.min() and p.probability.max() <= 1
    # uncertainty = 1 - certainty of the step: |2p - 1| for the CNN, C(s, a) of the chosen
    # actions for MECCA (recomputed here from the networks on the same state)
    if method == "interactive-cnn":
        np.testing.assert_allclose(p.uncertainty, 1 - np.abs(2 * p.probability - 1), atol=1e-6)
    else:
        from clinloop.models.mecca.hints import hint_map
        from clinloop.models.mecca.model import normalise

        x = torch.from_numpy(normalise(img[None]))[None, None]
        h = torch.from_numpy(hint_map([((24.0, 10.5), True), ((2.0, 3.0), False)], img.shape, model.cfg.hint_sigma))
        _, cert = model.refine(x, torch.full_like(x, 0.5), h[None, None])
        np.testing.assert_allclose(p.uncertainty, 1 - cert[0, 0].numpy(), atol=1e-6)
        assert p.uncertainty.std() > 0  # per-agent confidences, not one value
    assert len(p.advice) == 5 and all(a.shape == (40, 48) and a.dtype == bool for a in p.advice)
    assert int(np.sum(p.advice, axis=0).max()) == 1
    if method == "mecca":  # one step from 0.5 moves by one action of A
        vals = np.unique(p.probability)
        assert all(np.isclose(vals[:, None], [0.1, 0.3, 0.4, 0.6, 0.7, 0.9], atol=1e-6).any(1))
    q = s.click((5.0, 5.0), positive=False)
    assert q.iteration == 2 and q.extra["step"] == 2 and q.extra["n_segments"] <= p.extra["n_segments"]
    with pytest.raises(ValueError, match="candidates"):
        s.choose(0)
    # undo replays exactly
    s.undo()
    np.testing.assert_array_equal(s.proposal.probability, p.probability)


def test_session_3d_volume():
    model = _tiny("mecca", ndim=3, downsample=2)
    vol = np.random.default_rng(1).normal(size=(10, 14, 12)).astype(np.float32)
    s = Session(model, vol)
    p = s.hint([((6.0, 7.0, 5.0), True)])
    assert p.mask.shape == (10, 14, 12) and len(p.advice) == 5
    assert p.advice[0].shape == (10, 14, 12)
    with pytest.raises(ValueError, match="2-D"):
        Session(_tiny("mecca"), vol)


def test_model_folder_round_trip(tmp_path):
    from clinloop.models.registry import load_model

    for method in ("mecca", "mecca-no-confidence", "interactive-cnn", "mecca-unet"):
        m = _tiny(method)
        m.save(tmp_path / method, data={"train_patients": ["p1"]}, metrics={})
        m2 = load_model(tmp_path / method)
        assert isinstance(m2, MECCAModel) and m2.cfg.method == method and m2.data["train_patients"] == ["p1"]
        x = torch.randn(1, 1, 12, 12)
        p = torch.full_like(x, 0.5)
        for a, b in zip(m.refine(x, p, p), m2.refine(x, p, p)):
            torch.testing.assert_close(a, b)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"method": "mecca"}))
    with pytest.raises(ValueError, match="weights"):
        load_mecca(tmp_path / "bad")


def test_training_smoke_improves_dice_on_synthetic_data():
    """A short interactive-cnn and MECCA run on synthetic blobs beat the untrained nets."""
    from clinloop.data.synthetic import make_synthetic_sample
    from clinloop.training.mecca import prepare, train_networks, validate

    torch.set_num_threads(1)
    xs, ys = zip(*(prepare(make_synthetic_sample((24, 24), seed=i), "majority", None) for i in range(24)))
    xs, ys = np.stack(xs), np.stack(ys)
    for method, its in (("interactive-cnn", 40), ("mecca", 40)):
        cfg = MECCAConfig(method=method, width=8, conf_width=4, head_dilations=(2, 4), conf_dilations=(1, 2),
                          lr=3e-3, hint_points=3)
        torch.manual_seed(0)
        before = validate(MECCAModel(cfg, build_networks(cfg)), xs[18:], ys[18:], 3, 0)["val_dice_per_step"]
        nets, log = train_networks(cfg, xs[:18], ys[:18], None, its, 4, seed=0, progress=False)
        after = validate(MECCAModel(cfg, nets), xs[18:], ys[18:], 3, 0)["val_dice_per_step"]
        assert after[-1] > before[-1] + 0.1, (method, before, after)


def test_protocol_writes_exactly_the_keys(tmp_path, shared_data):
    from clinloop.evaluation import mecca_protocol

    model = _tiny("mecca", size=48)
    model.save(tmp_path / "m", data={"train_patients": []}, metrics={})
    out = tmp_path / "results.json"
    args = mecca_protocol.MECCAProtocolOptions(method="mecca", data=str(shared_data / "lidc" / "lidc_crops_dev.npz"),
                                               model=str(tmp_path / "m"), limit=2, seed=0, out=str(out), steps=3)
    returned = mecca_protocol.run_protocol(args)
    res = json.loads(out.read_text())
    assert res == returned
    assert set(res) == set(mecca_protocol.RESULT_KEYS)
    assert res["method"] == "mecca" and res["protocol"] == "mecca" and res["n_cases"] == 2
    for k in ("dice_per_step", "assd_per_step", "seconds_per_step", "misunderstanding_per_step"):
        assert len(res[k]) == 3 and all(np.isfinite(res[k]))
    assert all(0 <= d <= 1 for d in res["dice_per_step"])
    with pytest.raises(ValueError, match="not 'interactive-cnn'"):
        mecca_protocol.run_protocol(dataclasses.replace(args, method="interactive-cnn"))


def test_paired_bootstrap_and_seed_summary_hand_values():
    from clinloop.evaluation.mecca_protocol import paired_bootstrap, summarise_runs

    # a case seen under two seeds counts once, with the mean of its differences
    r = paired_bootstrap({"a": [0.1, 0.3], "b": [0.2], "c": [-0.1]}, n_boot=500)
    assert r["n_cases"] == 3 and r["mean"] == pytest.approx((0.2 + 0.2 - 0.1) / 3, abs=1e-4)
    # per-case values {0.2, 0.2, -0.1}: a replicate's mean is 0.2 - 0.1 k with k ~ Binomial(3, 1/3)
    # draws of -0.1, so P(-0.1) = 1/27 = 3.7 % > 2.5 % and P(0.2) = 8/27 > 2.5 %: the percentile
    # interval is exactly [-0.1, 0.2]
    assert r["ci95"] == pytest.approx([-0.1, 0.2], abs=1e-9)
    assert r["fraction_positive"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["fraction_negative"] == pytest.approx(1 / 3, abs=1e-4)
    s = summarise_runs([{"n_cases": 2, **{k: [v, 2 * v] for k, v in zip(
        ("dice_per_step", "assd_per_step", "misunderstanding_per_step", "flips_per_step", "seconds_per_step"),
        (0.4, 1.0, 10.0, 3.0, 0.1))}},
                        {"n_cases": 2, **{k: [v, 2 * v] for k, v in zip(
        ("dice_per_step", "assd_per_step", "misunderstanding_per_step", "flips_per_step", "seconds_per_step"),
        (0.6, 3.0, 20.0, 5.0, 0.1))}}])
    assert s["dice_per_step"]["mean"] == [0.5, 1.0]
    assert s["dice_per_step"]["sd"] == pytest.approx([0.1414, 0.2828], abs=1e-4)


def test_compare_pairs_methods_on_the_same_cases_and_3d_defaults(tmp_path, shared_data):
    from clinloop.evaluation import mecca_protocol

    data = str(shared_data / "lidc" / "lidc_crops_dev.npz")
    dirs = {}
    for m in ("mecca", "interactive-cnn"):
        _tiny(m, ndim=3, size=16).save(tmp_path / m, data={"train_patients": []}, metrics={})
        dirs[m] = str(tmp_path / m)
    res = mecca_protocol.compare(data, ["mecca", "interactive-cnn"], [0, 1], limit=2, steps=2, ndim=3, models=dirs)
    for m in ("mecca", "interactive-cnn"):
        runs = res["runs"][m]
        assert [r["n_cases"] for r in runs] == [2, 2]
        assert all(len(c["dice"]) == 2 for r in runs for c in r["per_case"])
    ids = lambda m: [[c["case_id"] for c in r["per_case"]] for r in res["runs"][m]]
    assert ids("mecca") == ids("interactive-cnn")  # paired: the same volumes per seed
    assert "/n" in ids("mecca")[0][0] and "/s" not in ids("mecca")[0][0]  # LIDC nodule volumes
    d = res["paired"]["mecca - interactive-cnn"]["dice_last_step"]
    assert 1 <= d["n_cases"] <= 4
    # the summed misunderstanding: per case and seed, sum over steps of mecca's minus interactive-cnn's
    by = lambda m: {(r["seed"], c["case_id"]): sum(c["misunderstanding"]) for r in res["runs"][m] for c in r["per_case"]}
    a, b = by("mecca"), by("interactive-cnn")
    per_case: dict = {}
    for (seed, cid), v in a.items():
        per_case.setdefault(cid, []).append(v - b[(seed, cid)])
    total = res["paired"]["mecca - interactive-cnn"]["misunderstanding_all_steps"]
    assert total["mean"] == pytest.approx(np.mean([np.mean(v) for v in per_case.values()]), abs=1e-4)
    assert "summed over the 2 steps" in mecca_protocol.compare_table(res)
    assert mecca_protocol.shipped_name("mecca", 3) == "mecca-lidc3d"
    with pytest.raises(ValueError, match="no shipped 3-D model for 'unet'"):
        mecca_protocol.shipped_name("unet", 3)
    with pytest.raises(ValueError, match="3-D model but the data are 2-D"):
        mecca_protocol._load("mecca", dirs["mecca"], 2)


def test_cluster_bootstrap_resamples_patients():
    from clinloop.evaluation.mecca_protocol import paired_bootstrap

    diffs = {"p1/a": [0.1], "p1/b": [0.1], "p2/a": [-0.2]}
    r = paired_bootstrap(diffs, n_boot=400, groups={k: k.split("/")[0] for k in diffs})
    assert r["n_clusters"] == 2 and r["mean"] == 0.0
    # replicates draw 2 of the 2 patients: p1 p1 -> 0.4 / 4 = 0.1 (1/4), p1 p2 -> 0 / 3 = 0 (1/2),
    # p2 p2 -> -0.2 (1/4); so the 2.5 / 97.5 percentiles are exactly -0.2 and 0.1
    assert r["ci95"] == pytest.approx([-0.2, 0.1], abs=1e-9)
    # where whole patients and single cases differ: p1 has three cases at 0.3, p2 one at -0.3.
    # Patients: p2 p2 -> -0.3 with P = 1/4, so the lower end is -0.3. Cases (4 draws, -0.3 with
    # p = 1/4): mean 0.3 - 0.15 k, P(k = 4) = 1/256 < 2.5 % < P(k >= 3) = 13/256, lower end -0.15.
    d2 = {"p1/a": [0.3], "p1/b": [0.3], "p1/c": [0.3], "p2/a": [-0.3]}
    by_patient = paired_bootstrap(d2, n_boot=4000, groups={k: k.split("/")[0] for k in d2})
    by_case = paired_bootstrap(d2, n_boot=4000)
    assert by_patient["ci95"] == pytest.approx([-0.3, 0.3], abs=1e-9)
    assert by_case["n_clusters"] == 4 and by_case["ci95"] == pytest.approx([-0.15, 0.3], abs=1e-9)


def test_paired_bootstrap_interval_matches_the_normal_approximation():
    """Independent reference: for many cases the percentile bootstrap of a mean agrees with
    mean +- 1.96 s / sqrt(n) (central limit theorem)."""
    from clinloop.evaluation.mecca_protocol import paired_bootstrap

    x = np.random.default_rng(3).normal(0.05, 0.1, size=400)
    r = paired_bootstrap({f"c{i}": [v] for i, v in enumerate(x)}, n_boot=4000, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)  # 0.0098
    assert r["mean"] == pytest.approx(x.mean(), abs=1e-4)
    assert r["ci95"][0] == pytest.approx(x.mean() - half, abs=0.0015)
    assert r["ci95"][1] == pytest.approx(x.mean() + half, abs=0.0015)


def test_shipped_3d_models_are_the_protocol_defaults_and_run_a_step():
    from clinloop.evaluation.mecca_protocol import SHIPPED_3D, _load

    for method, name in SHIPPED_3D.items():
        model, d = _load(method, None, 3)
        assert d.name == name and model.cfg.ndim == 3 and model.cfg.method == method
        assert model.metrics["protocol_mecca_lidc3d_heldback"]["n_cases"] == [118, 118, 118]
        vol = np.random.default_rng(0).normal(size=(1, 1, 12, 16, 16)).astype(np.float32)
        x = torch.from_numpy(vol)
        p, c = model.refine(x, torch.full_like(x, 0.5), torch.zeros_like(x))
        assert p.shape == x.shape and float(p.min()) >= 0 and float(p.max()) <= 1 and float(c.min()) >= 0


def test_tuning_split_takes_whole_training_patients_only():
    from clinloop.training.mecca import split_training_patients

    class DS:
        patient_ids = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "f"]

    train = [0, 1, 2, 3, 4, 5, 6, 7]  # patients a-e; f is held back
    fit, tune = split_training_patients(DS(), train, 0.25, seed=0)
    assert sorted(fit + tune) == train and not set(fit) & set(tune)
    pf, pt = {DS.patient_ids[i] for i in fit}, {DS.patient_ids[i] for i in tune}
    assert not pf & pt and "f" not in pf | pt  # by patient, never a held-back patient
    assert len(tune) >= 2  # at least the asked 25 % of 8 cases
    assert split_training_patients(DS(), train, 0.25, seed=0) == (fit, tune)
    with pytest.raises(ValueError):
        split_training_patients(DS(), train, 0.0, seed=0)


def test_balance_confidence_option_changes_only_the_confidence_loss():
    """--balance-confidence reaches the config and the command line; the 2-D shipped
    config (retrained 2026-12-03) uses the balanced L_C; in the ablation (reward = gain) the flag
    changes L_C but not the rollout, the policy loss or the value loss."""
    from importlib.resources import files

    from clinloop.cli.train import parse_options
    from clinloop.training.mecca import command_line, rl_loss

    args = parse_options("mecca", ["--data", "d", "--out", "o", "--balance-confidence"])
    assert args.balance_confidence is True
    assert parse_options("mecca", ["--data", "d", "--out", "o"]).balance_confidence is False
    assert "--balance-confidence" in command_line(args)
    shipped = files("clinloop") / "assets" / "models" / "mecca-lidc" / "config.json"
    assert MECCAConfig.load(str(shipped)).balance_confidence is True

    torch.set_num_threads(1)
    x = torch.randn(2, 1, 12, 12)
    y = np.stack([_disc((12, 12), 3), _disc((12, 12), 2)])
    stats = {}
    for bal in (False, True):
        m = _tiny("mecca-no-confidence", balance_confidence=bal)
        torch.manual_seed(1)
        _, st = rl_loss(m.cfg, m.nets["policy"], m.nets["confidence"], x, y, np.random.default_rng(0), labeled=True)
        stats[bal] = st
    assert stats[False]["policy"] == stats[True]["policy"] and stats[False]["value"] == stats[True]["value"]
    assert stats[False]["reward"] == stats[True]["reward"]
    assert abs(stats[False]["conf"] - stats[True]["conf"]) > 1e-4


def test_recorded_command_parses_back_with_an_empty_value():
    """``data.json`` "command" quotes its values: the default ``--crop ''`` (empty) used to be
    written bare, so ``--crop --crop-jitter 0`` read '--crop-jitter' as the crop."""
    import shlex

    from clinloop.cli.train import parse_options
    from clinloop.training.mecca import command_line

    args = parse_options("mecca", ["--data", "a dir/x.npz", "--out", "o", "--crop-jitter", "3"])
    cmd = command_line(args)
    assert "--crop ''" in cmd and "'a dir/x.npz'" in cmd
    argv = shlex.split(cmd)[2:]  # drop "clinloop train"
    i = argv.index("--method")
    back = parse_options(argv[i + 1], argv[:i] + argv[i + 2:])
    assert back == args
