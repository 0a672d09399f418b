"""Clicks as hard constraints (clinloop.interaction.constraints.honour_clicks), hand-computed cases,
and through an SPA session."""
import numpy as np
import pytest

from clinloop.interaction.constraints import honour_clicks


def test_include_adds_the_level_set_component_of_the_click():
    prob = np.zeros((8, 8), np.float32)
    prob[2:4, 2:4] = 0.8  # the proposal (p > 0.5)
    prob[2:4, 5:7] = 0.3  # a lobe some samples hold, not connected to the proposal
    prob[6, 6] = 0.3  # another p = 0.3 pixel, not connected to the clicked lobe
    mask = prob > 0.5
    out = honour_clicks(mask, prob, [((5, 2), True)], radius=0, reach=10)
    want = mask.copy()
    want[2:4, 5:7] = True  # {p >= 0.3} component of (x=5, y=2): the lobe only
    np.testing.assert_array_equal(out, want)
    # a click where no sample has the structure: the disc only (radius 1: the pixel and its 4 neighbours)
    out = honour_clicks(mask, prob, [((0, 7), True)], radius=1)
    assert out.sum() == mask.sum() + 3 and out[7, 0] and out[6, 0] and out[7, 1]
    # the reach: mask area 4 -> r_eq 1.128; reach 2 -> the lobe's pixels within 2.26 of (5, 2)
    out = honour_clicks(mask, prob, [((5, 2), True)], radius=0, reach=2)
    want = mask.copy()
    want[2:4, 5:7] = True
    want[3, 6] = True
    np.testing.assert_array_equal(out, want)
    out = honour_clicks(mask, prob, [((5, 2), True)], radius=0, reach=0.5)  # 0.56: the pixel alone
    assert out.sum() == mask.sum() + 1 and out[2, 5]


def test_exclude_removes_the_less_likely_part_and_later_clicks_win():
    prob = np.zeros((6, 10), np.float32)
    prob[1:5, 1:5] = 0.9
    prob[1:5, 5:8] = 0.6  # a leak the samples are less sure of
    mask = prob > 0.5
    out = honour_clicks(mask, prob, [((6, 2), False)], radius=0, reach=10)
    want = mask.copy()
    want[1:5, 5:8] = False  # the p = 0.6 leak goes, the p = 0.9 core stays
    np.testing.assert_array_equal(out, want)
    # an exclude click in the core: area 28 -> r_eq 2.99, reach 0.5 -> 1.49: a 3x3 hole
    out = honour_clicks(mask, prob, [((2, 2), False)], radius=0, reach=0.5)
    want = mask.copy()
    want[1:4, 1:4] = False
    np.testing.assert_array_equal(out, want)
    # include then exclude at the same pixel: the exclude wins
    out2 = honour_clicks(mask, prob, [((2, 2), True), ((2, 2), False)], radius=0, reach=0)
    assert not out2[2, 2] and out2.sum() == mask.sum() - 1
    np.testing.assert_array_equal(honour_clicks(mask, prob, [((2, 2), True), ((0, 0), False)]), mask)
    with pytest.raises(ValueError, match="2-D"):
        honour_clicks(mask, prob[:3], [])


def test_spa_session_honours_corrective_clicks():
    from clinloop.interaction.session import Session
    from clinloop.models.spa.model import SPAModel
    from tests.test_spa_model import _image, tiny_net

    model = SPAModel(tiny_net())
    img = _image()
    s = Session(model, img, seed=0)
    p1 = s.click((25, 20))
    off = [(x, y) for y in range(0, 40, 3) for x in range(0, 52, 3) if not p1.mask[y, x]]
    on = [(x, y) for y in range(0, 40, 3) for x in range(0, 52, 3) if p1.mask[y, x]]
    if off:
        p = s.click(off[0], positive=True)
        assert p.mask[off[0][1], off[0][0]] and p.candidates[:, off[0][1], off[0][0]].all()
    if on:
        p = s.click(on[-1], positive=False)
        assert not p.mask[on[-1][1], on[-1][0]] and not p.candidates[:, on[-1][1], on[-1][0]].any()
    r = Session.replay(model, img, s.history, seed=0)
    np.testing.assert_array_equal(r.proposal.mask, s.proposal.mask)
