"""MECCA on volumes: normalisation, the coarse working grid, the P-Net initial segmentation,
resumable training, and the protocol on BraTS case folders and a Decathlon folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clinloop.interaction.session import Session
from clinloop.models.mecca import volumes as vol
from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.mecca.model import MECCAModel, build_networks, load_mecca, simulate


def test_normalise_hand_computed():
    img = np.array([[[0.0, 0.0], [2.0, 4.0]]])  # (C=1, 2, 2)
    np.testing.assert_allclose(vol.normalise(img, "nonzero"), [[-3.0, -3.0], [-1.0, 1.0]])
    sd = np.sqrt(11 / 4)  # values 0, 0, 2, 4: mean 1.5
    np.testing.assert_allclose(vol.normalise(img, "image"), (img[0] - 1.5) / sd, rtol=1e-6)
    with pytest.raises(ValueError, match="normalisation"):
        vol.normalise(img, "brain")


def test_zoom_image_and_label_blocks():
    x = np.arange(5, dtype=np.float32)[None, None, :].repeat(2, 0).repeat(2, 1)  # (2, 2, 5)
    z = vol.zoom_image(x, 2)
    assert z.shape == (1, 1, 3) == vol.coarse_shape(x.shape, 2)
    np.testing.assert_allclose(z[0, 0], [0.5, 2.5, 4.0])  # the last, partial block: its own mean
    lab = np.zeros((4, 4), bool)
    lab[:2, :2] = True
    lab[2, 2] = True  # 1 of 4 voxels: below the majority
    lab[:2, 2:3] = True  # 2 of 4: the block is foreground (>= 0.5)
    np.testing.assert_array_equal(vol.zoom_label(lab, 2), [[True, True], [False, False]])


def test_upsample_with_zoom_keeps_partial_blocks_aligned():
    lab = np.array([0, 0, 0, 0, 1], np.float32)[None, :]  # (1, 5): only the last, partial block
    coarse = torch.from_numpy(vol.zoom_image(lab, 2))[None, None]  # [[0, 0, 1]]
    up = vol.upsample(coarse, (1, 5), zoom=2)[0, 0].numpy()
    np.testing.assert_array_equal(up > 0.5, lab > 0.5)
    stretched = vol.upsample(coarse, (1, 5))[0, 0].numpy()  # no zoom: the grid is stretched 3 -> 5
    assert (stretched > 0.5).sum() == 2


def test_coarse_point_and_label_upsampling():
    assert vol.to_coarse_point((0.0, 1.0, 3.0), 2) == (-0.25, 0.25, 1.25)
    lab = np.array([[0, 1], [2, 3]])
    up = vol.upsample_labels(lab, (3, 4), 2)
    np.testing.assert_array_equal(up, [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]])


def _tiny(method="mecca", ndim=3, **kw):
    torch.manual_seed(0)
    cfg = MECCAConfig(method=method, ndim=ndim, width=4, conf_width=4, head_dilations=(2, 4),
                      conf_dilations=(1, 2), slic_segments=20, **kw)
    return MECCAModel(cfg, build_networks(cfg))


def _ball(shape, r, centre=None):
    centre = [n / 2 for n in shape] if centre is None else centre
    g = np.meshgrid(*[np.arange(n) - c for n, c in zip(shape, centre)], indexing="ij")
    return sum(a**2 for a in g) < r**2


def test_zoomed_session_works_on_the_coarse_grid_and_answers_at_full_size():
    model = _tiny("mecca", zoom=2, norm="nonzero")
    shape = (9, 10, 11)
    img = (np.where(_ball(shape, 3), 5.0, 1.0) * (np.arange(11) > 0))[None].astype(np.float32)  # x = 0: zero bg
    s = Session(model, img[0], seed=0)
    assert s._state.image.shape == (5, 5, 6)
    p = s.hint([((5.0, 5.0, 4.0), True)])
    assert p.mask.shape == p.probability.shape == p.uncertainty.shape == shape
    assert len(p.advice) == 5 and all(a.shape == shape for a in p.advice)
    assert int(np.sum(p.advice, axis=0).max()) == 1
    # the proposal is the coarse probability upsampled: recompute it from the networks
    x = torch.from_numpy(model.prepare_image(img))[None, None]
    from clinloop.models.mecca.model import coarse_hint_map

    h = torch.from_numpy(coarse_hint_map([((5.0, 5.0, 4.0), True)], (5, 5, 6), model.cfg))[None, None]
    p1, _ = model.refine(x, torch.full_like(x, 0.5), h)
    np.testing.assert_allclose(p.probability, vol.upsample(p1, shape, 2)[0, 0].numpy(), atol=1e-6)


def test_pnet_initial_segmentation_is_p0_and_frozen_in_training():
    model = _tiny("interactive-cnn", ndim=2, init="pnet", init_width=3)
    assert set(model.nets) == {"net", "init"}
    x = torch.randn(1, 1, 12, 12)
    np.testing.assert_allclose(model.initial(x), torch.sigmoid(model.nets["init"](x)).detach(), atol=1e-6)
    with pytest.raises(ValueError, match="init"):
        MECCAConfig(method="mecca-unet", init="pnet")
    from clinloop.training.mecca import train_networks

    cfg = model.cfg
    xs = np.random.default_rng(0).normal(size=(4, 1, 12, 12)).astype(np.float32)
    ys = np.stack([_ball((12, 12), 4)] * 4)
    torch.manual_seed(1)
    nets, _ = train_networks(cfg, xs, ys, iterations=2, batch=2, progress=False,
                             init_state=model.nets["init"].state_dict())
    for k, v in model.nets["init"].state_dict().items():  # the P-Net did not move
        torch.testing.assert_close(nets["init"].state_dict()[k], v)



def test_pnet_mask_initial_is_the_pnet_mask_and_agents_at_one_can_stay():
    from clinloop.models.mecca.environment import transition

    model = _tiny("mecca", ndim=2, init="pnet-mask", init_width=3)
    x = torch.randn(1, 1, 12, 12)
    prob = torch.sigmoid(model.nets["init"](x)).detach()
    p0 = model.initial(x)
    assert set(np.unique(p0.numpy())) <= {0.0, 1.0}
    torch.testing.assert_close(p0, (prob > 0.5).float())
    # Eq. 1 clips: an agent at 1 that pushes up (+0.4) stays at 1; one at 0 pushing down stays at 0
    p = torch.tensor([[[[1.0, 0.0]]]])
    up, down = 5, 0  # action indices of +0.4 and -0.4
    from clinloop.models.mecca.environment import action_values

    assert float(action_values(torch.tensor([[[[up]]]]))) == pytest.approx(0.4)
    assert float(action_values(torch.tensor([[[[down]]]]))) == pytest.approx(-0.4)
    np.testing.assert_allclose(transition(p, torch.tensor([[[[up, down]]]])), [[[[1.0, 0.0]]]])


def test_flip_batch_flips_image_and_label_together_in_plane_only():
    from clinloop.training.mecca import flip_batch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 1, 3, 4, 5)).astype(np.float32)
    y = x[:, 0] > 0.5
    xf, yf = flip_batch(x, y, np.random.default_rng(1))
    np.testing.assert_array_equal(yf, xf[:, 0] > 0.5)  # the label follows the image
    flipped = 0
    for b in range(len(x)):  # each case is one of the 4 in-plane flips of itself; the slice axis is kept
        options = [x[b], x[b][..., ::-1], x[b][..., ::-1, :], x[b][..., ::-1, ::-1]]
        k = [np.array_equal(xf[b], o) for o in options].index(True)
        flipped += k > 0
    assert 0 < flipped < len(x)
    np.testing.assert_array_equal(x[:, 0] > 0.5, y)  # the inputs are not modified


def test_random_subcrop_cuts_each_case_at_its_own_offset_within_the_region():
    from clinloop.training.mecca import random_subcrop

    big = np.arange(2 * 6 * 7 * 8, dtype=np.float32).reshape(2, 1, 6, 7, 8)
    y = big[:, 0] % 3 == 0
    xs, ys = random_subcrop(big, y, (2, 3, 4), np.random.default_rng(0))
    assert xs.shape == (2, 1, 2, 3, 4) and ys.shape == (2, 2, 3, 4)
    for b in range(2):  # a contiguous block of the case's own region, the label cut the same way
        z, r, c = np.unravel_index(int(xs[b, 0, 0, 0, 0] - big[b, 0, 0, 0, 0]), (6, 7, 8))
        np.testing.assert_array_equal(xs[b, 0], big[b, 0, z:z + 2, r:r + 3, c:c + 4])
        np.testing.assert_array_equal(ys[b], y[b, z:z + 2, r:r + 3, c:c + 4])
    offsets = {tuple(np.unravel_index(int(random_subcrop(big, y, (2, 3, 4), np.random.default_rng(s))[0][0, 0, 0, 0, 0]),
                                      (6, 7, 8))) for s in range(40)}
    assert len(offsets) > 10  # the offset is drawn, not fixed

def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    from clinloop.training.mecca import train_networks

    cfg = _tiny("mecca", ndim=2).cfg
    xs = np.random.default_rng(0).normal(size=(4, 1, 12, 12)).astype(np.float32)
    ys = np.stack([_ball((12, 12), 3 + k % 2) for k in range(4)])
    straight, _ = train_networks(cfg, xs, ys, iterations=3, batch=2, seed=5, progress=False)
    ck = tmp_path / "checkpoint.pt"
    _, log1 = train_networks(cfg, xs, ys, iterations=3, batch=2, seed=5, progress=False, checkpoint=ck,
                             max_seconds=0.0)  # out of time after the first iteration: checkpoint written
    assert [r["iteration"] for r in log1] == [1] and ck.is_file()
    first = torch.load(ck, weights_only=False)
    assert first["seconds"] > 0  # the checkpoint carries the training time so far
    ck2 = tmp_path / "other" / "checkpoint.pt"  # a second chunk, as if the first had run 100 s longer
    train_networks(cfg, xs, ys, iterations=3, batch=2, seed=5, progress=False, checkpoint=ck2,
                   resume={**first, "seconds": first["seconds"] + 100.0}, max_seconds=0.0)
    assert torch.load(ck2, weights_only=False)["seconds"] > 100.0  # accumulated, not restarted
    resumed, log2 = train_networks(cfg, xs, ys, iterations=3, batch=2, seed=5, progress=False,
                                   resume=torch.load(ck, weights_only=False))
    assert [r["iteration"] for r in log2] == [2, 3]
    for k in straight:
        for name, v in straight[k].state_dict().items():
            torch.testing.assert_close(resumed[k].state_dict()[name], v)



def test_lr_step_lowers_the_rate_from_its_iteration_also_after_a_resume(tmp_path):
    from clinloop.training.mecca import train_networks

    cfg = _tiny("mecca-unet", ndim=2).cfg
    xs = np.random.default_rng(0).normal(size=(4, 1, 12, 12)).astype(np.float32)
    ys = np.stack([_ball((12, 12), 3 + k % 2) for k in range(4)])
    _, log = train_networks(cfg, xs, ys, iterations=4, batch=2, seed=1, progress=False, lr_step=(2, 0.1))
    assert [r["lr"] for r in log] == pytest.approx([cfg.lr, cfg.lr, cfg.lr * 0.1, cfg.lr * 0.1])
    _, log = train_networks(cfg, xs, ys, iterations=3, batch=2, seed=1, progress=False)
    assert {r["lr"] for r in log} == {cfg.lr}  # no step: constant
    ck = tmp_path / "checkpoint.pt"  # a run at the constant rate, resumed with a step already passed
    train_networks(cfg, xs, ys, iterations=3, batch=2, seed=1, progress=False, checkpoint=ck, max_seconds=0.0)
    _, log = train_networks(cfg, xs, ys, iterations=3, batch=2, seed=1, progress=False, lr_step=(1, 0.5),
                            resume=torch.load(ck, weights_only=False))
    assert [r["lr"] for r in log] == pytest.approx([cfg.lr * 0.5] * 2)  # the schedule's, not the checkpoint's

# ---------------------------------------------------------------- the protocol on the new layouts
def _save(path, a, zoom=1.0):
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(a, np.diag([zoom, zoom, zoom, 1.0])), str(path))


def _case(k, shape=(16, 16, 12)):
    lab = _ball(shape, 3 + k % 2, centre=(7 + k % 3, 8, 6))
    img = np.where(lab, 3.0, 1.0).astype(np.float32) + 0.1 * k
    img[:, :, 0] = 0.0  # some background, as in a skull-stripped volume
    return img, lab


def make_brats_cases(root, n=4):
    for k in range(n):
        img, lab = _case(k)
        _save(root / f"case_{k}" / "FLAIR.nii.gz", img)
        _save(root / f"case_{k}" / "GT_W.nii.gz", lab.astype(np.float32))
        (root / f"case_{k}" / "subject_id.txt").write_text(f"Subject_id: Brats18_T_{k}_1")
    return root


def make_atrium(root, n=5):
    doc = {"name": "LA", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "left atrium"},
           "numTraining": n, "training": []}
    for k in range(n):
        img, lab = _case(k)
        _save(root / "imagesTr" / f"la_{k:03d}.nii.gz", img, 0.625)
        _save(root / "labelsTr" / f"la_{k:03d}.nii.gz", lab.astype(np.uint8), 0.625)
        doc["training"].append({"image": f"./imagesTr/la_{k:03d}.nii.gz", "label": f"./labelsTr/la_{k:03d}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize("layout", ["brats", "atrium"])
def test_protocol_reads_the_volume_layouts_and_holds_back(tmp_path, layout):
    from clinloop.config_options import make_options
    from clinloop.data import load_dataset
    from clinloop.evaluation.mecca_protocol import MECCAProtocolOptions, run_protocol
    from clinloop.metrics import dice
    from clinloop.training.mecca import MECCATrainOptions, train_model

    data = make_brats_cases(tmp_path / "b") if layout == "brats" else make_atrium(tmp_path / "a")
    norm = "nonzero" if layout == "brats" else "image"
    common = {"data": str(data), "ndim": 3, "zoom": 2, "norm": norm, "crop": "6,6,6", "size": 0, "width": 4,
              "batch": 2, "iterations": 2, "max_minutes": 5.0, "held_out_fraction": 0.4, "val_cases": 1, "seed": 0}
    pnet = tmp_path / "pnet"
    refine = layout == "atrium"  # the atrium's P-Net: flip average and largest component (inference only)
    train_model(make_options(MECCATrainOptions, "test", method="mecca-unet", out=str(pnet), seg_loss="bce-dice",
                             flip_average=refine, one_component=refine, **common))
    icnn = tmp_path / "icnn"
    train_model(make_options(MECCATrainOptions, "test", method="interactive-cnn", out=str(icnn),
                             init_model=str(pnet), hint_sigma=3.0, **common))
    m = load_mecca(icnn)
    assert m.cfg.zoom == 2 and m.cfg.norm == norm and m.cfg.init == "pnet" and "init" in m.nets
    assert m.cfg.hint_sigma == 3.0  # --hint-sigma reaches the saved config (the hint map at inference)
    assert m.cfg.flip_average == m.cfg.one_component == refine  # taken over from the P-Net (init_from)
    held = sorted(set(load_dataset(data).patient_ids) - set(m.data["train_patients"]))
    assert held  # some patients are held back
    o = make_options(MECCAProtocolOptions, "test", method="interactive-cnn", data=str(data), model=str(icnn),
                     steps=3, per_case=True)
    res = run_protocol(o)
    assert res["n_cases"] == len(held) and len(res["dice_per_step"]) == 3 == len(res["assd_per_step"])
    assert len(res["misunderstanding_per_step"]) == 3
    # the protocol's Dice = an independent rollout on the raw, full-size case
    ds = load_dataset(data)
    case = next(c for c in res["per_case"])
    s = ds[ds.case_ids.index(case["case_id"])]
    lab = s.masks[0] > 0.5
    # the same rng draws: the protocol's rollout of its first case uses default_rng(seed) afresh
    out = simulate(m, s.image, lab, 3, np.random.default_rng(0))
    assert [round(dice(p > 0.5, lab), 4) for p in out["probabilities"]] == case["dice"]
    assert out["probabilities"][0].shape == lab.shape  # answered at the input size
    # compare: pnet (no hints) and interactive-cnn on the same held-back cases
    oc = make_options(MECCAProtocolOptions, "test", method="pnet", mode="compare", data=str(data),
                      methods="interactive-cnn,pnet", seeds="0", steps=2,
                      method_model=[f"interactive-cnn={icnn}", f"pnet={pnet}"], figure=str(tmp_path / "fig6.png"))
    cres = run_protocol(oc)
    assert cres["summary"]["pnet"]["n_cases"] == [len(held)]
    d = cres["summary"]["pnet"]["dice_per_step"]["mean"]
    assert d[0] == d[1]  # the P-Net ignores the hints
    assert (tmp_path / "fig6.png").read_bytes()[:4] == b"\x89PNG"


def test_old_lidc_folders_keep_their_defaults(tmp_path):
    model = _tiny("mecca", ndim=2)
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    for k in ("zoom", "norm", "crop", "seg_loss", "init", "init_width", "confidence_gate"):  # an old folder lacks these
        cfg.pop(k)
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    m = load_mecca(tmp_path / "m")
    assert (m.cfg.zoom, m.cfg.norm, m.cfg.init, m.cfg.seg_loss, m.cfg.confidence_gate) == (1, "image", "constant",
                                                                                         "balanced-bce", 0.0)


@pytest.mark.parametrize("method", ["mecca", "mecca-no-confidence"])
def test_confidence_gate_keeps_exactly_the_agents_whose_action_confidence_is_below_it(method):
    torch.manual_seed(3)
    x, h = torch.randn(1, 1, 6, 8, 8), torch.randn(1, 1, 6, 8, 8).clamp(-1, 1)
    p = (torch.rand(1, 1, 6, 8, 8) > 0.5).float()
    free = _tiny(method)
    p_free, c = free.refine(x, p, h)
    gate = float(c.median())  # about half the agents fall below it
    gated = _tiny(method, confidence_gate=gate)
    p_gated, c2 = gated.refine(x, p, h)
    torch.testing.assert_close(c2, c)  # the same actions and confidences
    low = c < gate
    assert 0 < int(low.sum()) < low.numel()
    assert torch.equal(p_gated[low], p[low])  # below the gate: unchanged
    assert torch.equal(p_gated[~low], p_free[~low])  # at or above it: Eq. 1 as usual
    # gate 1: nobody moves (an untrained C is never exactly 1); gate 0 is the paper's update
    assert torch.equal(_tiny(method, confidence_gate=1.0).refine(x, p, h)[0], p)


def test_confidence_gate_is_checked():
    with pytest.raises(ValueError, match="confidence_gate must lie"):
        MECCAConfig(method="mecca", confidence_gate=1.5)
    with pytest.raises(ValueError, match="needs an RL method"):
        MECCAConfig(method="interactive-cnn", confidence_gate=0.5)


def test_unlabeled_rollouts_get_the_labeled_crop(tmp_path, monkeypatch):
    """Semi-supervised MECCA with --crop-jitter: the unlabeled cases (Eq. 6 rollouts) are cut to
    the training crop like the labeled ones (until 2026-12-04 they entered as the whole
    crop + 2J region, ~3.7x the voxels on BraTS)."""
    import clinloop.training.mecca as T
    from clinloop.config_options import make_options

    data = make_brats_cases(tmp_path / "b")
    seen = []
    real = T.rl_loss

    def spy(cfg, policy, confidence, x, y, rng, labeled, **kw):
        seen.append((labeled, tuple(x.shape[2:]), tuple(np.asarray(y).shape[1:])))
        return real(cfg, policy, confidence, x, y, rng, labeled=labeled, **kw)

    monkeypatch.setattr(T, "rl_loss", spy)
    import functools

    import clinloop.models.mecca.config as C

    monkeypatch.setattr(C, "MECCAConfig", functools.partial(C.MECCAConfig, unlabeled_warmup=0))  # Eq. 6 from it 1
    T.train_model(make_options(T.MECCATrainOptions, "test", method="mecca", data=str(data), out=str(tmp_path / "m"),
                               ndim=3, zoom=2, norm="nonzero", crop="6,6,6", crop_jitter=2, size=0, width=4,
                               batch=1, iterations=3, max_minutes=5.0, held_out_fraction=0.4, val_cases=1, seed=0,
                               labeled_fraction=0.5, augment=True))
    unl = [s for s in seen if not s[0]]
    lab = [s for s in seen if s[0]]
    assert len(lab) == 3 and len(unl) == 3  # (the final validation calls no rl_loss)
    assert all(s[1] == (6, 6, 6) and s[2] == (6, 6, 6) for s in lab + unl)


def test_fine_tuning_with_reach_rollouts_from_a_trained_model(tmp_path):
    """``--warm-start DIR --reach-rollouts``: the run starts from DIR's networks and records both."""
    from clinloop.config_options import make_options
    from clinloop.training.mecca import MECCATrainOptions, train_model

    data = make_atrium(tmp_path / "a")
    common = {"data": str(data), "ndim": 3, "zoom": 2, "norm": "image", "crop": "6,6,6", "size": 0, "width": 4,
              "batch": 2, "max_minutes": 5.0, "held_out_fraction": 0.4, "val_cases": 1, "seed": 0}
    pnet, first, tuned = tmp_path / "pnet", tmp_path / "first", tmp_path / "tuned"
    train_model(make_options(MECCATrainOptions, "test", method="mecca-unet", out=str(pnet), iterations=2, **common))
    rl = {"method": "mecca", "init_model": str(pnet), "init_mask": True, "click_reach": 2.0, **common}
    train_model(make_options(MECCATrainOptions, "test", out=str(first), iterations=2, **rl))
    with pytest.raises(ValueError, match="--reach-rollouts needs --click-reach"):
        train_model(make_options(MECCATrainOptions, "test", out=str(tuned), iterations=1, reach_rollouts=True,
                                 **{**rl, "click_reach": 0.0}))
    train_model(make_options(MECCATrainOptions, "test", out=str(tuned), iterations=0, reach_rollouts=True,
                             warm_start=str(first), **rl))
    m0, m1 = load_mecca(first), load_mecca(tuned)
    for k in ("policy", "confidence", "init"):  # no iteration: the warm start's networks, the same init
        for name, v in m0.nets[k].state_dict().items():
            torch.testing.assert_close(m1.nets[k].state_dict()[name], v)
    assert m1.cfg.extra["reach_rollouts"] == 2.0 and m1.cfg.extra["warm_start"] == str(first)
    assert "--reach-rollouts" in m1.data["command"] and "--warm-start" in m1.data["command"]


def test_a_unet_pnet_trains_and_a_policy_fine_tunes_from_it(tmp_path):
    """``--pnet-arch unet`` trains the U-Net P-Net; an RL model trained from a dilated P-Net is
    warm-started with that U-Net as its new start (the atrium recipe of stop 44)."""
    from clinloop.config_options import make_options
    from clinloop.models.mecca.unet import UNetSegNet
    from clinloop.training.mecca import MECCATrainOptions, train_model

    data = make_atrium(tmp_path / "a")
    common = {"data": str(data), "ndim": 3, "zoom": 2, "norm": "image", "crop": "6,6,6", "size": 0, "width": 4,
              "batch": 2, "max_minutes": 5.0, "held_out_fraction": 0.4, "val_cases": 1, "seed": 0}
    pnet, upnet = tmp_path / "pnet", tmp_path / "upnet"
    train_model(make_options(MECCATrainOptions, "test", method="mecca-unet", out=str(pnet), iterations=1, **common))
    train_model(make_options(MECCATrainOptions, "test", method="mecca-unet", out=str(upnet), iterations=2,
                             pnet_arch="unet", **{**common, "width": 3}))
    u = load_mecca(upnet)
    assert u.cfg.pnet_arch == "unet" and isinstance(u.nets["net"], UNetSegNet) and "--pnet-arch" in u.data["command"]
    rl = {"method": "mecca", "init_mask": True, "click_reach": 2.0, **common}
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    train_model(make_options(MECCATrainOptions, "test", out=str(first), iterations=1, init_model=str(pnet), **rl))
    train_model(make_options(MECCATrainOptions, "test", out=str(tuned), iterations=0, init_model=str(upnet),
                             warm_start=str(first), **rl))
    m0, m1 = load_mecca(first), load_mecca(tuned)
    assert (m0.cfg.init_arch, m1.cfg.init_arch, m1.cfg.init_width) == ("dilated", "unet", 3)
    for name, v in m0.nets["policy"].state_dict().items():
        torch.testing.assert_close(m1.nets["policy"].state_dict()[name], v)
    for name, v in u.nets["net"].state_dict().items():
        torch.testing.assert_close(m1.nets["init"].state_dict()[name], v)
    with pytest.raises(ValueError, match="init_arch"):
        train_model(make_options(MECCATrainOptions, "test", out=str(tmp_path / "x"), iterations=1,
                                 pnet_arch="unet", **rl))  # refused before any iteration


def test_a_start_trained_on_a_held_back_patient_is_refused(tmp_path):
    """--init-model / --warm-start: a model whose training patients include one this run holds back
    (another --seed split them differently) would leak the evaluation cases; refused by name."""
    from clinloop.training.mecca import check_held_back

    (tmp_path / "data.json").write_text(json.dumps({"train_patients": ["la_000", "la_001", "la_002"]}))
    check_held_back(tmp_path, ["la_003", "la_004"], "--warm-start")  # disjoint: fine
    check_held_back(tmp_path / "none", ["la_001"], "--init-model")  # no data.json: nothing to check
    with pytest.raises(ValueError, match="--warm-start .*: trained on la_001, la_002, which this run holds back"):
        check_held_back(tmp_path, ["la_002", "la_001", "la_009"], "--warm-start")
