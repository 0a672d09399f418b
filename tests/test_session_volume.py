"""Volumetric SPA sessions (clinloop.models.spa.volume): one click, a 3-D mask.

The logic tests use the random-decoder SPA with the one-conv stub encoder
(tests/test_spa_model.py: fast, deterministic, meaningless masks); one quality
test runs the shipped spa-lidc on a synthetic ellipsoid (~11 slices encoded,
~15 s on an idle 2-core machine; 348 s measured at load average 12 from other jobs)."""
import numpy as np
import pytest

from clinloop.interaction import planes as pl
from clinloop.interaction.session import Session
from clinloop.interaction.propagation import VolumeConfig, stop_reason
from clinloop.models.spa.model import SPAModel
from tests.test_spa_model import tiny_net


def _ellipsoid(shape=(12, 48, 48), centre=(6, 24, 24), radii=(4, 10, 12), seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    ell = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radii)) <= 1
    return (100 + 120 * ell + rng.normal(0, 15, shape)).astype(np.float32), ell


NO_ORTH = VolumeConfig(orthogonal=False)  # the propagation alone (the refinement: tests/test_orthogonal.py)


@pytest.fixture(scope="module")
def model():
    return SPAModel(tiny_net())


# ------------------------------------------------------------------ pure helpers
def test_stop_rule_hand_cases():
    cfg = VolumeConfig(min_area=4, min_overlap=0.2, max_centroid_shift=1.0, max_uncertainty=0.75)
    prev = np.zeros((20, 20), bool)
    prev[5:11, 5:11] = True  # 36 px, radius sqrt(36/pi) = 3.39
    same = prev.copy()
    assert stop_reason(prev, same, cfg) is None
    assert stop_reason(prev, np.zeros_like(prev), cfg) == "vanished"
    tiny = np.zeros_like(prev)
    tiny[6, 6:9] = True  # 3 px < 4
    assert stop_reason(prev, tiny, cfg) == "small"
    far = np.zeros_like(prev)
    far[12:18, 12:18] = True  # no overlap
    assert stop_reason(prev, far, cfg) == "jump"
    shifted = np.zeros_like(prev)
    shifted[5:11, 9:15] = True  # overlap 12/36 = 0.33 >= 0.2, centroid shift 4 > 3.39 radii
    assert stop_reason(prev, shifted, cfg) == "jump"
    assert stop_reason(prev, shifted, VolumeConfig(max_centroid_shift=1.2)) is None  # 4 < 4.07
    # uncertainty: p = 0.5 everywhere on the mask's 36 px plus a 0.5 ring -> sum 4pq / area = 1 > 0.75
    prob = np.where(same, 0.51, 0.0)
    assert stop_reason(prev, same, cfg, prob) == "uncertain"
    assert stop_reason(prev, same, cfg, np.where(same, 0.99, 0.0)) is None


def test_stop_rule_anchor_relative_uncertainty_and_area_fraction():
    from clinloop.interaction.propagation import slice_uncertainty

    prev = np.zeros((20, 20), bool)
    prev[5:11, 5:11] = True  # 36 px
    prob = np.where(prev, 0.5, 0.0)
    prob[4, 5:11] = 0.5  # a 6 px half-sure rim outside: sum 4pq = 42 -> u = 42 / 36
    assert slice_uncertainty(prev, prob) == pytest.approx(42 / 36)
    assert slice_uncertainty(np.zeros_like(prev), prob) == float("inf")
    cfg = VolumeConfig(max_uncertainty=0.75, anchor_uncertainty=1.0)
    assert stop_reason(prev, prev, cfg, prob) == "uncertain"  # no anchor: the fixed bound 0.75
    assert stop_reason(prev, prev, cfg, prob, anchor_u=1.2) is None  # bound raised to 1.2 > 1.167
    assert stop_reason(prev, prev, cfg, prob, anchor_u=1.1) == "uncertain"
    assert stop_reason(prev, prev, cfg, prob, anchor_u=0.3) == "uncertain"  # never below 0.75
    assert stop_reason(prev, prev, VolumeConfig(anchor_uncertainty=0.0), prob, anchor_u=5.0) == "uncertain"
    # area fraction: 36 px is 5.6 % of a 640 px peak (kept) but 4.5 % of an 800 px peak (stopped)
    assert stop_reason(prev, prev, VolumeConfig(min_area_fraction=0.05), peak=640) is None
    assert stop_reason(prev, prev, VolumeConfig(min_area_fraction=0.05), peak=800) == "small"
    assert stop_reason(prev, prev, VolumeConfig(min_area_fraction=0.0), peak=10_000) is None
    with pytest.raises(ValueError, match="min_area_fraction"):
        VolumeConfig(min_area_fraction=1.0)
    with pytest.raises(ValueError, match="anchor_uncertainty"):
        VolumeConfig(anchor_uncertainty=-1.0)


def test_stop_rule_regrow_hand_case():
    prev = np.zeros((20, 20), bool)
    prev[5:11, 5:11] = True  # 36 px
    cfg = VolumeConfig(regrow_below=0.5, regrow_factor=1.1)
    # shrunk to a 30 px trough (< 0.5 x the 100 px peak): 36 px > 1.1 x 30 is something new
    assert stop_reason(prev, prev, cfg, peak=100, trough=30) == "regrow"
    assert stop_reason(prev, prev, cfg, peak=100, trough=33) is None  # 36 <= 36.3
    assert stop_reason(prev, prev, cfg, peak=50, trough=30) is None  # trough 30 is not below 0.5 x 50
    assert stop_reason(prev, prev, VolumeConfig(), peak=100, trough=30) is None  # off by default
    assert stop_reason(prev, prev, cfg, peak=100) is None  # no trough given: the rule cannot apply
    with pytest.raises(ValueError, match="regrow_below"):
        VolumeConfig(regrow_below=1.5)
    with pytest.raises(ValueError, match="regrow_factor"):
        VolumeConfig(regrow_factor=0.9)


def test_propagated_box_margin_hand_case():
    import torch

    from clinloop.interaction.propagation import propagated_box

    g = torch.zeros(256, 256, dtype=torch.bool)
    g[100:120, 50:60] = True  # rows 100..119 (20 high), columns 50..59 (10 wide)
    assert propagated_box(g).tolist() == [[50.0, 100.0, 59.0, 119.0]]  # the tight box (the rule before)
    assert propagated_box(g, 0.1).tolist() == [[49.0, 98.0, 60.0, 121.0]]  # 1 px and 2 px per side
    g[:] = False
    g[0:10, 250:256] = True  # clipped to the frame
    assert propagated_box(g, 0.5).tolist() == [[247.0, 0.0, 255.0, 14.0]]
    with pytest.raises(ValueError, match="box_margin"):
        VolumeConfig(box_margin=-0.1)


def test_volume_session_prompts_the_widened_box(model):
    """VolumeConfig.box_margin reaches the prompt of each propagated slice."""
    import torch

    from clinloop.interaction.propagation import propagated_box

    vol, _ = _ellipsoid(shape=(5, 48, 48), centre=(2, 24, 24), radii=(2, 10, 12))
    g = torch.zeros(256, 256, dtype=torch.bool)
    g[100:140, 60:100] = True
    for margin in (0.0, 0.25):
        st = model.start_volume(vol[None], seed=0, profile=None, config=VolumeConfig(box_margin=margin))
        _, box, _ = st._prompt(1, st._slice(1), g)
        assert box.tolist() == propagated_box(g, margin).tolist()
    assert box.tolist() == [[50.0, 90.0, 109.0, 149.0]]  # 10 px (a quarter of 40) per side


def test_volume_session_box_threshold_propagates_the_sample_envelope(model):
    """VolumeConfig.box_threshold: the propagated box bounds mean-of-N > threshold, the mask prompt
    and point stay y_app's; 0.5 is y_app's box (the default)."""
    import torch

    from clinloop.interaction.propagation import propagated_box

    vol, _ = _ellipsoid(shape=(5, 48, 48), centre=(2, 24, 24), radii=(2, 10, 12))
    g = torch.zeros(256, 256, dtype=torch.bool)
    g[100:140, 60:100] = True
    env = g.clone()
    env[90:150, 60:120] = True
    st = model.start_volume(vol[None], seed=0, profile=None, config=VolumeConfig(box_threshold=0.2))
    _, box, _ = st._prompt(1, st._slice(1), g, env)
    assert box.tolist() == propagated_box(env).tolist() == [[60.0, 90.0, 119.0, 149.0]]
    _, box, _ = st._prompt(1, st._slice(1), g, None)
    assert box.tolist() == propagated_box(g).tolist()
    p = st.click((24.0, 24.0, 2.0), True)  # a session runs with the option
    assert p.mask.shape == vol.shape
    assert VolumeConfig().box_threshold == 0.5
    with pytest.raises(ValueError, match="box_threshold"):
        VolumeConfig(box_threshold=0.0)


def test_planes_axes_and_anisotropic_resampling():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)  # (C, D, H, W)
    assert pl.take(vol, 0, 1).shape == (1, 3, 4) and pl.take(vol, 1, 2).shape == (1, 2, 4)
    assert pl.take(vol, 2, 3).shape == (1, 2, 3)
    np.testing.assert_array_equal(pl.take(vol, 2, 3)[0], vol[0, :, :, 3])
    assert pl.split_point((3.0, 1.0, 0.6), 0) == (1, (3.0, 1.0))  # z rounds to slice 1
    assert pl.split_point((3.0, 1.0, 0.6), 1) == (1, (3.0, 0.6))
    assert pl.split_point((3.0, 1.0, 0.6), 2) == (3, (1.0, 0.6))
    # coronal plane of 24 slices of 5 mm x 96 columns of 1 mm -> 120 x 96 square pixels
    g = pl.plane_grid((24, 96), (5.0, 1.0))
    assert g.model_size == (120, 96) and g.resampled
    assert g.point_to_model(10.0, 2.0) == (10.0, 12.0)  # row centre 2 -> (2.5 * 5) - 0.5
    assert not pl.plane_grid((96, 96), (0.7, 0.72)).resampled  # within 5 %
    up = g.to_model(np.ones((1, 24, 96), np.float32))
    assert up.shape == (1, 120, 96)
    import torch

    assert tuple(g.from_model(torch.ones(3, 120, 96)).shape) == (3, 24, 96)


# ------------------------------------------------------------------ the session (stub backbone)
def test_anchor_slice_equals_the_2d_session(model):
    """The anchor slice is prompted exactly as 2-D SPA: same points, same p_theta, same latents."""
    vol, _ = _ellipsoid()
    img = vol[6]
    p2 = Session(model, img, seed=5).click((24, 24))
    p3 = Session(model, vol[6:8], seed=5).click((24, 24, 0))  # anchor: slice 0 of 2
    assert p3.mask.shape == (2, 48, 48) and p3.candidates.shape == (4, 2, 48, 48)
    np.testing.assert_array_equal(p3.mask[0], p2.mask)
    np.testing.assert_allclose(p3.probability[0], p2.probability, atol=1e-6)


def test_volume_click_choose_undo_replay_exact(model):
    vol, _ = _ellipsoid(shape=(7, 48, 48), centre=(3, 24, 24), radii=(3, 10, 12))
    seen = []  # the propagation alone (the refinement along the other axes: tests/test_orthogonal.py)
    s = Session(model, vol, seed=2, progress=lambda r: seen.append(r), volume_config=NO_ORTH)
    p1 = s.click((24, 24, 3))
    assert p1.mask.shape == (7, 48, 48) and p1.probability.shape == (7, 48, 48)
    assert p1.uncertainty.shape == (7, 48, 48) and p1.candidates.shape == (4, 7, 48, 48)
    np.testing.assert_array_equal(p1.mask, p1.probability > 0.5)
    # progress: the anchor first, one report per kept slice, matching the final proposal
    assert seen[0].index == 3 and [r.done for r in seen] == list(range(1, len(seen) + 1))
    kept = sorted(r.index for r in seen)
    assert kept == list(range(p1.extra["slices"][0], p1.extra["slices"][1] + 1))
    for r in seen:
        np.testing.assert_array_equal(r.mask, p1.mask[r.index])
    outside = np.ones(7, bool)
    outside[kept] = False
    assert not p1.mask[outside].any() and not p1.candidates[:, outside].any()
    # lazy encoding: anchor + kept slices + at most one stopped slice per direction
    assert len(kept) <= p1.extra["encoded_slices"] <= len(kept) + 2
    p2 = s.choose(1)
    p3 = s.click((20, 22, 5), positive=False)
    assert p3.extra["anchor"] == 5 and s.iteration == 3
    # undo replays (click, choose) from the cached embeddings: identical, nothing re-encoded
    back = s.undo()
    np.testing.assert_array_equal(back.mask, p2.mask)
    np.testing.assert_array_equal(back.candidates, p2.candidates)
    np.testing.assert_array_equal(back.probability, p2.probability)
    assert back.extra["encoded_slices"] == 0
    p3b = s.click((20, 22, 5), positive=False)
    np.testing.assert_array_equal(p3b.mask, p3.mask)
    r = Session.replay(model, vol, s.history, seed=2, volume_config=NO_ORTH)
    np.testing.assert_array_equal(r.proposal.mask, p3.mask)
    np.testing.assert_array_equal(r.proposal.candidates, p3.candidates)
    assert s.accept().shape == (7, 48, 48)


def test_other_axis_and_sample_spacing(model):
    from clinloop.data.sample import MultiRaterSample

    vol, ell = _ellipsoid(shape=(8, 32, 6), centre=(4, 16, 3), radii=(3, 8, 2))
    smp = MultiRaterSample(vol[None], ell[None], spacing=(4.0, 1.0, 1.0))
    s = Session(model, smp, seed=0)
    assert s.spacing == (4.0, 1.0, 1.0)
    p = s.click((3, 16, 4), axis=2)  # sagittal: planes (D, H) = 8 x 32 rows of 4 mm -> 32 x 32
    assert p.extra["axis"] == 2 and p.extra["anchor"] == 3 and p.mask.shape == (8, 32, 6)
    assert s._state.cache[(2, 3)].grid.model_size == (32, 32)
    assert s.history[-1]["axis"] == 2
    r = Session.replay(model, smp, s.history, seed=0)
    np.testing.assert_array_equal(r.proposal.mask, p.mask)
    # the session option sets the default axis
    q = Session(model, vol[:, :6], seed=0, volume_config=VolumeConfig(axis=1)).click((3, 4, 4))
    assert q.extra["axis"] == 1 and q.extra["anchor"] == 4


# ------------------------------------------------------------------ corrective clicks (issue 17)
def _spy_model():
    """A fresh tiny SPA whose ``encode_interaction`` records (points, labels, mask prompt) per call."""
    m = SPAModel(tiny_net())
    calls = []
    orig = m.net.encode_interaction

    def spy(points, mask, box=None, structure=0):
        calls.append((None if points is None else points[0].clone(), None if points is None else points[1].clone(),
                      None if mask is None else mask.clone()))
        return orig(points, mask, box, structure)

    m.net.encode_interaction = spy
    return m, calls


def _anchor_call(calls, action):
    """The anchor slice's prompt of one action: the step's first ``encode_interaction`` call."""
    calls.clear()
    p = action()
    return p, calls[0]


def _dice(a, b):
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def test_corrective_click_prompts_the_current_mask_and_undo_restores():
    from clinloop.models.litemedsam.preprocess import postprocess_logits

    m, calls = _spy_model()
    vol, _ = _ellipsoid(shape=(7, 48, 48), centre=(3, 24, 24), radii=(3, 10, 12))
    s = Session(m, vol, seed=2, volume_config=NO_ORTH)
    p1, (pts, labs, mp) = _anchor_call(calls, lambda: s.click((24, 24, 3)))
    assert mp is None and labs.tolist() == [[1]]  # the first click: a point, no mask prompt
    info = s._state.cache[(0, 3)].info

    def shown(mp):  # the mask prompt back in the input frame (as the proposal's mask is made)
        assert set(torch_unique(mp)) <= {-4.0, 4.0}
        return (postprocess_logits((mp[0, 0] > 0).float()[None], info)[0] > 0.5).numpy()

    assert p1.mask[3].any()
    # a corrective exclude click on the same slice: both points, the current mask (p1's slice 3) as mask prompt
    p2, (pts, labs, mp) = _anchor_call(calls, lambda: s.click((30, 20, 3), positive=False))
    assert labs.tolist() == [[1, 0]] and mp is not None
    assert _dice(shown(mp), p1.mask[3]) > 0.95
    # right after a choice, a click prompts with the chosen candidate's slice (as the choice did)
    p3, (_, _, mp_choose) = _anchor_call(calls, lambda: s.choose(1))
    assert _dice(shown(mp_choose), p2.candidates[1][3]) > 0.95
    p4, (_, labs, mp) = _anchor_call(calls, lambda: s.click((20, 26, 3)))
    assert labs.tolist() == [[1, 0, 1]]
    assert np.array_equal(mp.numpy(), mp_choose.numpy())
    # ... and the click after that the current mask again (p4's y_app on slice 3)
    p5, (_, _, mp5) = _anchor_call(calls, lambda: s.click((26, 28, 3)))
    assert p4.mask[3].any() and _dice(shown(mp5), p4.mask[3]) > 0.95
    # a click on a slice where the current mask is empty: no mask prompt (as a first click there)
    empty = [t for t in range(7) if not p5.mask[t].any()]
    if empty:
        _, (_, _, mp_e) = _anchor_call(calls, lambda: s.click((24, 24, empty[0])))
        assert not (mp_e > 0).any()
        s.undo()
    # undo restores p4 exactly, redoing the click gives p5 exactly (same prompt), replay too
    back = s.undo()
    for k in ("mask", "probability", "candidates"):
        np.testing.assert_array_equal(getattr(back, k), getattr(p4, k))
    again, (_, _, mp_again) = _anchor_call(calls, lambda: s.click((26, 28, 3)))
    np.testing.assert_array_equal(mp_again.numpy(), mp5.numpy())
    np.testing.assert_array_equal(again.mask, p5.mask)
    np.testing.assert_array_equal(again.candidates, p5.candidates)
    r = Session.replay(m, vol, s.history, seed=2, volume_config=NO_ORTH)
    np.testing.assert_array_equal(r.proposal.mask, p5.mask)
    np.testing.assert_array_equal(r.proposal.probability, p5.probability)
    # another axis: the current 3-D mask's coronal plane, resampled into that plane's model frame
    plane = p5.mask[:, 24, :]
    if plane.any():
        _, (_, _, mp_c) = _anchor_call(calls, lambda: s.click((24, 24, 3), axis=1))
        info_c = s._state.cache[(1, 24)].info
        back_c = (postprocess_logits((mp_c[0, 0] > 0).float()[None], info_c)[0] > 0.5).numpy()
        assert _dice(back_c, plane) > 0.9


def test_corrective_clicks_are_honoured_on_their_voxels():
    m, _ = _spy_model()
    vol, _ = _ellipsoid(shape=(7, 48, 48), centre=(3, 24, 24), radii=(3, 10, 12))
    s = Session(m, vol, seed=2, volume_config=NO_ORTH)  # with the refinement: tests/test_orthogonal.py
    p1 = s.click((24, 24, 3))
    inside = np.argwhere(p1.mask[3])
    y0, x0 = (int(v) for v in inside[len(inside) // 3])
    p2 = s.click((x0, y0, 3), positive=False)  # exclude a voxel of the proposal
    assert not p2.mask[3, y0, x0] and not p2.candidates[:, 3, y0, x0].any()
    outside = [(x, y) for y, x in np.argwhere(~p2.mask[3]) if abs(x - x0) + abs(y - y0) > 3]
    if outside:
        x1, y1 = (int(v) for v in outside[len(outside) // 2])
        p3 = s.click((x1, y1, 3))  # include a voxel the proposal misses
        assert p3.mask[3, y1, x1] and p3.candidates[:, 3, y1, x1].all()
        assert not p3.mask[3, y0, x0]  # the earlier exclude still holds
    r = Session.replay(m, vol, s.history, seed=2, volume_config=NO_ORTH)
    np.testing.assert_array_equal(r.proposal.mask, s.proposal.mask)


def torch_unique(t):
    return [float(v) for v in t.unique()]


def test_encode_ahead_is_bit_identical_and_bounded():
    """The background encoder changes nothing but when slices are encoded."""
    vol, _ = _ellipsoid(shape=(9, 48, 48), centre=(4, 24, 24), radii=(3, 10, 12))
    m = SPAModel(tiny_net())
    runs = []
    for ahead in (0, 2):
        s = Session(m, vol, seed=4, volume_config=VolumeConfig(encode_ahead=ahead, orthogonal=False))
        ps = [s.click((24, 24, 4)), s.choose(2), s.click((20, 24, 5), positive=False)]
        runs.append((ps, s))
    (plain, s0), (fast, s2) = runs
    for a, b in zip(plain, fast):
        for k in ("mask", "probability", "uncertainty", "candidates"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        assert a.extra["slices"] == b.extra["slices"] and a.extra["stops"] == b.extra["stops"]
    assert plain[0].extra["encoded_slices"] == fast[0].extra["encoded_slices"]
    assert "encoded_ahead" not in plain[0].extra and fast[0].extra["encoded_ahead"] >= 0
    s2._state._ahead.cancel(wait=True)
    # bounded: at most 2 slices past each end of what the steps visited
    lo = min(p.extra["slices"][0] for p in fast if p.extra["slices"][0] is not None)
    hi = max(p.extra["slices"][1] for p in fast if p.extra["slices"][1] is not None)
    extra = [t for t in range(9) if (0, t) in s2._state.cache and not lo - 3 <= t <= hi + 3]
    assert extra == []


def test_encode_ahead_order_hand_case():
    """anchor 5 of 10, ahead 2: 6, 7 (walking up), then 4, 3; the frontier moving to 6 adds 8;
    stopping the upward walk and moving down to 4 adds 2; nothing else."""
    import threading

    from clinloop.models.spa.ahead import EncodeAhead

    seen, cv = [], threading.Condition()

    def enc(t):
        with cv:
            seen.append(t)
            cv.notify_all()

    def wait_for(n):
        with cv:
            assert cv.wait_for(lambda: len(seen) >= n, timeout=30), seen

    a = EncodeAhead(enc, 10, 5, 2)
    wait_for(4)
    assert seen == [6, 7, 4, 3]
    a.at(1, 6)
    wait_for(5)
    assert seen[4] == 8
    a.stop(1)
    a.at(-1, 4)
    wait_for(6)
    assert seen[5] == 2
    a.cancel(wait=True)
    assert seen == [6, 7, 4, 3, 8, 2] and not a.alive
    with pytest.raises(ValueError, match="ahead >= 1"):
        EncodeAhead(enc, 10, 5, 0)
    with pytest.raises(ValueError, match="encode_ahead must be a non-negative integer"):
        VolumeConfig(encode_ahead=-1)


# ------------------------------------------------------------------ bad input
def test_bad_input(model):
    vol, _ = _ellipsoid(shape=(6, 20, 24), centre=(3, 10, 12), radii=(2, 5, 5))
    s = Session(model, vol, seed=0)
    with pytest.raises(ValueError, match=r"z=6.0 is outside the image \(valid range -0.5 .. 5.5\)"):
        s.click((5, 5, 6))
    with pytest.raises(ValueError, match=r"x=30.0 is outside the image \(valid range -0.5 .. 23.5\)"):
        s.click((30, 5, 1))
    with pytest.raises(ValueError, match=r"needs 3 coordinates \(x, y, z\), got 2: \(5, 5\)"):
        s.click((5, 5))
    with pytest.raises(ValueError, match=r"axis must be 0 \(axial\), 1 \(coronal\) or 2 \(sagittal\); got 3"):
        s.click((5, 5, 1), axis=3)
    with pytest.raises(ValueError, match="choose"):
        s.choose(0)
    with pytest.raises(ValueError, match=r"2880 voxels, more than max_voxels=1000"):
        Session(model, vol, volume_config=VolumeConfig(max_voxels=1000))
    with pytest.raises(ValueError, match=r"spacing must be 3 finite positive numbers .* got \(1.0, 1.0\)"):
        Session(model, vol, volume_config=VolumeConfig(spacing=(1.0, 1.0)))
    with pytest.raises(ValueError, match=r"spacing must be 3 finite positive numbers .* got \(0, 1, 1\)"):
        Session(model, vol, volume_config=VolumeConfig(spacing=(0, 1, 1)))
    with pytest.raises(ValueError, match=r"axis must be .* got -1"):
        VolumeConfig(axis=-1)
    with pytest.raises(ValueError, match=r"3-D volume of shape \(6, 20, 24\) is constant \(all 7.0\)"):
        Session(model, np.full((6, 20, 24), 7.0))
    img = vol[0]
    s2 = Session(model, img, seed=0)
    with pytest.raises(ValueError, match=r"needs 2 coordinates \(x, y\), got 3"):
        s2.click((1, 2, 3))
    with pytest.raises(ValueError, match=r"axis=1 applies to volumes"):
        s2.click((1, 2), axis=1)
    from clinloop.data.sample import MultiRaterSample

    with pytest.raises(ValueError, match=r"rater masks have spatial shape \(6, 20, 20\) but the image has \(6, 20, 24\)"):
        MultiRaterSample(vol[None], np.zeros((1, 6, 20, 20), bool))


# ------------------------------------------------------------------ the shipped model
def test_spa_lidc_one_click_follows_an_ellipsoid():
    """spa-lidc on a bright ellipsoid in noise (16 x 96 x 96, 8 slices). Measured: 3-D Dice 0.987,
    all 8 slices reached, both directions stopped ("uncertain") on the first slice past the ends,
    the 4 candidates' 3-D Dice against y_app 0.96-0.99, choose(1) changes 41 voxels."""
    import clinloop
    from clinloop.metrics import dice

    m = clinloop.load_model("spa-lidc")
    vol, ell = _ellipsoid(shape=(16, 96, 96), centre=(7.5, 47, 49), radii=(4.2, 10, 12))
    ell_slices = np.nonzero(ell.any((1, 2)))[0]
    assert ell_slices.tolist() == list(range(4, 12))
    s = Session(m, vol, seed=0)
    p = s.click((49, 47, 7))
    assert dice(p.mask, ell) > 0.9
    assert p.mask.any((1, 2))[ell_slices].mean() >= 7 / 8
    assert not p.mask[:3].any() and not p.mask[13:].any()  # the stop rule ends the structure
    assert p.extra["encoded_slices"] <= 12
    assert p.extra["orthogonal_planes"] is None  # 8 slices: too short for the orthogonal refinement
    differ = [z for z in range(16) if any((p.candidates[a, z] != p.candidates[b, z]).any()
                                          for a in range(4) for b in range(a + 1, 4))]
    assert len(differ) >= 4
    q = s.choose(1)
    assert (q.mask != p.mask).sum() > 0 and dice(q.mask, ell) > 0.9
    assert q.extra["encoded_slices"] == 0
