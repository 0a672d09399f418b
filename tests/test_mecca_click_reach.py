"""MECCAConfig.click_reach: only agents near a click move (inference only, not in the paper)."""
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.mecca.hints import click_reach
from clinloop.models.mecca.model import MECCAModel, build_networks, coarse_reach, simulate


def _tiny(method="mecca", **kw):
    torch.manual_seed(0)
    cfg = MECCAConfig(method=method, ndim=3, width=4, conf_width=4, head_dilations=(2, 4),
                      conf_dilations=(1, 2), slic_segments=20, **kw)
    return MECCAModel(cfg, build_networks(cfg))


def test_click_reach_is_the_union_of_balls_around_the_clicks():
    """Against scipy's exact distance transform: a voxel is in reach iff its distance to the
    nearest click voxel is <= radius (clicks on voxel centres, (x, y, z) = (col, row, slice))."""
    shape = (7, 9, 11)
    clicks = [((1.0, 2.0, 3.0), True), ((9.0, 8.0, 0.0), False), ((5.0, 4.0, 6.0), True)]
    seeds = np.ones(shape, bool)
    for (x, y, z), _ in clicks:
        seeds[int(z), int(y), int(x)] = False
    dist = ndi.distance_transform_edt(seeds)
    for r in (1.0, 1.5, 2.9, 4.0):
        np.testing.assert_array_equal(click_reach(clicks, shape, r), dist <= r)
    assert not click_reach(clicks, shape, 0.0).any()
    assert not click_reach([], shape, 3.0).any()
    # a click between voxel centres: the voxels within the radius of the point itself
    near = click_reach([((2.5, 3.0), True)], (6, 6), 0.6)
    assert sorted(zip(*np.nonzero(near))) == [(3, 2), (3, 3)]
    with pytest.raises(ValueError, match="2 coordinates for a 3-D image"):
        click_reach([((1.0, 2.0), True)], shape, 2.0)


@pytest.mark.parametrize("method", ["mecca", "mecca-no-confidence", "interactive-cnn"])
def test_refine_moves_only_the_agents_in_reach(method):
    g = torch.Generator().manual_seed(3)
    x, h, u = (torch.randn((1, 1, 6, 8, 8), generator=g) for _ in range(3))
    h, p = h.clamp(-1, 1), (u > 0).float()  # a 0/1 start, as from a P-Net mask
    model = _tiny(method)
    p_free, c_free = model.refine(x, p, h)
    reach = torch.zeros_like(p, dtype=torch.bool)
    reach[..., 2:4, 3:6, 1:5] = True
    p_near, c_near = model.refine(x, p, h, reach)
    assert torch.equal(p_near[~reach], p[~reach])  # out of reach: unchanged
    assert torch.equal(p_near[reach], p_free[reach])  # in reach: the step as usual
    assert not torch.equal(p_free[~reach], p[~reach])  # (the untrained step does move them)
    if model.cfg.is_rl:  # C(s, a) of the action an agent would have taken
        torch.testing.assert_close(c_near, c_free)
    else:  # the CNN's certainty is that of the probability it shows
        torch.testing.assert_close(c_near, (2 * p_near - 1).abs())


def test_a_session_and_the_simulated_user_keep_the_agents_far_from_the_clicks():
    """zoom 2: the reach is measured on the working grid (clicks scaled by 1 / zoom)."""
    model = _tiny("mecca", zoom=2, click_reach=2.0)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 16, 20, 20)).astype(np.float32)
    st = model.start(image)
    p0 = st.p.clone()
    st.hint([((4.0, 6.0, 8.0), True)])  # (x, y, z) -> coarse (1.75, 2.75, 3.75)
    near = click_reach([((1.75, 2.75, 3.75), True)], st.image.shape, 2.0)
    assert 0 < near.sum() < near.size
    moved = (st.p != p0)[0, 0].numpy()
    assert moved.any() and not moved[~near].any()
    # simulate: the voxels out of every click's reach keep p^(0) (0.5 from the constant start)
    label = np.zeros((16, 20, 20), bool)
    label[5:11, 6:14, 6:14] = True
    out = simulate(model, image, label, 2, np.random.default_rng(1), n_points=1)
    far = out["probabilities"][-1] == 0.5
    assert far.mean() > 0.5 and not (out["probabilities"][-1] == 0.5).all()


def test_coarse_reach_is_off_by_default_and_checked():
    assert coarse_reach([((1.0, 1.0, 1.0), True)], (4, 4, 4), MECCAConfig(method="mecca", ndim=3)) is None
    with pytest.raises(ValueError, match="click_reach must be >= 0"):
        MECCAConfig(method="mecca", click_reach=-1.0)
    with pytest.raises(ValueError, match="takes no hints"):
        MECCAConfig(method="mecca-unet", click_reach=3.0)


def test_the_protocol_overrides_and_reports_the_click_reach(tmp_path, shared_data):
    """``--click-reach`` replaces the folder's value; 0 is the paper's update; the result says which ran."""
    import dataclasses

    from clinloop.evaluation import mecca_protocol

    torch.manual_seed(0)
    cfg = MECCAConfig(method="mecca", width=4, conf_width=4, head_dilations=(2, 4), conf_dilations=(1, 2), size=48,
                      click_reach=1.0)
    MECCAModel(cfg, build_networks(cfg)).save(tmp_path / "m", data={"train_patients": []}, metrics={})
    args = mecca_protocol.MECCAProtocolOptions(method="mecca", data=str(shared_data / "lidc" / "lidc_crops_dev.npz"),
                                               model=str(tmp_path / "m"), limit=2, seed=0, steps=2)
    own, paper = (mecca_protocol.run_protocol(dataclasses.replace(args, click_reach=r)) for r in (None, 0.0))
    assert (own["click_reach"], paper["click_reach"]) == (1.0, 0.0)
    # an untrained policy moves every agent: with a reach of 1 pixel around 5 clicks a step, far fewer
    assert sum(own["misunderstanding_per_step"]) < sum(paper["misunderstanding_per_step"]) / 4


def test_pnet_boundary_shows_the_pnets_answer_where_no_agent_moved():
    """With a p^(0) mask, agents still at p^(0) show the P-Net's probability: outside the click
    reach the session's mask is the P-Net's own full-resolution mask (zoom 2), not the upsampled
    0/1 mask, and inside it the agents' probabilities."""
    from clinloop.models.mecca import volumes as vol
    from clinloop.models.mecca.pnet_inference import pnet_probability

    model = _tiny("mecca", zoom=2, init="pnet-mask", init_width=3, click_reach=2.0, pnet_boundary=True)
    with torch.no_grad():  # a P-Net whose probability is not already 0/1
        for prm in model.nets["init"].parameters():
            prm.mul_(3.0)
    image = np.random.default_rng(2).normal(size=(1, 16, 20, 20)).astype(np.float32)
    st = model.start(image)
    with torch.no_grad():
        prob = pnet_probability(model.nets["init"], st.image_t)
    assert 0.02 < float((prob > 0.5).float().mean()) < 0.98
    torch.testing.assert_close(st.p0, (prob > 0.5).float())
    plain = vol.upsample(st.p0, image.shape[1:], 2)[0, 0].numpy() > 0.5
    pnet_mask = vol.upsample(prob, image.shape[1:], 2)[0, 0].numpy() > 0.5
    assert (plain != pnet_mask).any()  # the two starts differ at the boundary
    # a click on a foreground agent (the untrained policy lowers those; it pushes background ones further down)
    fg = np.argwhere(st.p0[0, 0].numpy() > 0.5)
    z, y, x = (int(v) for v in fg[len(fg) // 2])
    out = st.hint([((2.0 * x + 0.5, 2.0 * y + 0.5, 2.0 * z + 0.5), True)])  # coarse (x, y, z)
    moved = vol.upsample_labels((st.p != st.p0)[0, 0].numpy(), image.shape[1:], 2)
    near = vol.upsample_labels(click_reach([((x, y, z), True)], st.image.shape, 2.0), image.shape[1:], 2)
    assert moved.any() and not (moved & ~near).any()
    far = ~ndi.binary_dilation(near, iterations=3)  # beyond the blend of upsampling
    np.testing.assert_array_equal(out.mask[far], pnet_mask[far])
    # the step itself: shown() keeps moved agents' p and the P-Net's probability elsewhere
    p0 = torch.tensor([1.0, 0.0, 1.0, 0.0])
    p = torch.tensor([0.6, 0.4, 1.0, 0.0])
    start = torch.tensor([0.9, 0.2, 0.7, 0.3])
    torch.testing.assert_close(MECCAModel.shown(p, p0, start), torch.tensor([0.6, 0.4, 0.7, 0.3]))
    assert MECCAModel.shown(p, p0, None) is p
    with pytest.raises(ValueError, match="needs init 'pnet-mask'"):
        MECCAConfig(method="mecca", init="pnet", pnet_boundary=True)


def test_click_reach_is_refused_where_the_protocol_would_ignore_it():
    from clinloop.evaluation import mecca_protocol

    with pytest.raises(ValueError, match="--click-reach applies to --mode evaluate, not 'compare'"):
        mecca_protocol.run_protocol(mecca_protocol.MECCAProtocolOptions(method="mecca", data="x", mode="compare",
                                                                        click_reach=3.0))


# ---------------------------------------------------------------- the reach in training (--reach-rollouts)
def _rollout(reach, p0, y, seed=4, balance="crop"):
    from clinloop.training.mecca import rl_loss

    model = _tiny("mecca")
    x = torch.randn((1, 1, 6, 8, 8), generator=torch.Generator().manual_seed(1))
    return rl_loss(model.cfg, model.nets["policy"], model.nets["confidence"], x, y, np.random.default_rng(seed),
                   labeled=True, p0=p0, reach=reach, reach_balance=balance)


def test_reach_rollouts_leave_a_correct_start_alone_and_equal_the_paper_when_the_reach_covers_all():
    y = np.zeros((1, 6, 8, 8), bool)
    y[0, 1:5, 2:6, 2:7] = True
    perfect = torch.from_numpy(y[:, None].astype(np.float32))
    # no error, so no click: nothing in reach moves, no agent enters the policy and value losses
    _, st = _rollout(3.0, perfect, y)
    assert st["reward"] == 0.0 and st["policy"] == 0.0 and st["value"] == 0.0
    _, st_free = _rollout(0.0, perfect, y)
    assert st_free["reward"] != 0.0  # (every agent acting: the untrained policy moves them off)
    wrong = perfect.clone()
    wrong[0, 0, 2, 2:6, 2:4] = 0.0  # a miss: clicks at its boundary
    loss_all, st_all = _rollout(100.0, wrong, y)  # a reach covering the whole crop: the paper's rollout
    loss_paper, st_paper = _rollout(0.0, wrong, y)
    torch.testing.assert_close(loss_all, loss_paper)
    assert st_all == pytest.approx(st_paper)
    _, st_near = _rollout(1.0, wrong, y)
    assert abs(st_near["reward"]) < abs(st_paper["reward"])  # only the few agents by the clicks are rewarded
    # --reach-balance reach: the classes balanced among the agents in reach; over the whole crop the same
    loss_all_b, _ = _rollout(100.0, wrong, y, balance="reach")
    torch.testing.assert_close(loss_all_b, loss_paper)
    loss_near, st_near_b = _rollout(1.0, wrong, y, balance="reach")
    assert st_near_b["reward"] == pytest.approx(st_near["reward"])  # the same rollout (same draws) ...
    assert not torch.isclose(loss_near, _rollout(1.0, wrong, y)[0])  # ... other weights
    _, st = _rollout(3.0, perfect, y, balance="reach")
    assert st["policy"] == 0.0 and st["value"] == 0.0
    with pytest.raises(ValueError, match="reach_balance must be 'crop' or 'reach'"):
        _rollout(1.0, wrong, y, balance="clicks")


def test_warm_start_loads_the_trained_networks_and_refuses_another_method(tmp_path):
    from clinloop.training.mecca import _warm_state, train_networks

    model = _tiny("mecca")
    model.save(tmp_path / "m", data={}, metrics={})
    state = _warm_state(str(tmp_path / "m"), model.cfg)
    assert set(state) == {"policy", "confidence"}  # the frozen init is --init-model's
    x = np.random.default_rng(0).normal(size=(2, 1, 6, 8, 8)).astype(np.float32)
    nets, _ = train_networks(model.cfg, x, x[:, 0] > 0, iterations=0, progress=False, warm_state=state)
    for k in state:
        for name, v in model.nets[k].state_dict().items():
            torch.testing.assert_close(nets[k].state_dict()[name], v)
    with pytest.raises(ValueError, match="a mecca model, this run trains interactive-cnn"):
        _warm_state(str(tmp_path / "m"), _tiny("interactive-cnn").cfg)
    with pytest.raises(ValueError, match="its width is 4, this run's 8"):
        _warm_state(str(tmp_path / "m"), MECCAConfig(method="mecca", ndim=3, width=8))
