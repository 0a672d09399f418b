"""Zoom for corrective clicks (clinloop.models.spa.zoom, SPAConfig.zoom_in)."""
import numpy as np
import pytest
import torch

from clinloop.models.litemedsam.preprocess import postprocess_logits, preprocess
from clinloop.models.spa.zoom import OUTSIDE_LOGIT, ZoomView, input_mask, zoom_box


def _ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1


def test_zoom_box_hand_cases():
    m = np.zeros((128, 128), bool)
    m[50:60, 40:50] = True  # 10 x 10 box, centre (45, 55)
    # side = max(2 * 10, 0.1 * 128, 8) = 20, centred: x 35..55, y 45..65
    assert zoom_box(m, [], 2.0, 0.1) == (45, 65, 35, 55)
    # the least side wins: 0.25 * 128 = 32 -> x 29..61, y 39..71
    assert zoom_box(m, [], 2.0, 0.25) == (39, 71, 29, 61)
    # a click outside the mask widens the box: x 40..80 (41 wide), y 50..59 -> side 82, x from round(19.5)
    assert zoom_box(m, [(80, 55)], 2.0, 0.1) == (14, 96, 20, 102)
    # at the image's edge the square is shifted inside, never cut short
    c = np.zeros((64, 96), bool)
    c[0:4, 90:96] = True
    assert zoom_box(c, [], 2.0, 0.25) == (0, 24, 72, 96)
    # nothing to zoom on: the whole image
    assert zoom_box(np.zeros((30, 40), bool), [], 2.0, 0.25) == (0, 30, 0, 40)
    with pytest.raises(ValueError, match="expansion"):
        zoom_box(m, [], 0.5, 0.25)


@pytest.mark.parametrize("shape", [(128, 128), (96, 160)])
def test_view_round_trip_keeps_a_mask_and_its_points(shape):
    """input mask -> the view's model frame -> logits -> the full model frame -> input mask is exact,
    and a point lands on its own pixel in the view."""
    rng = np.random.default_rng(0)
    img = rng.random((1, *shape)).astype(np.float32)
    _, info = preprocess(img)
    m = _ellipse(shape, 60, 70, 10, 7)
    box = zoom_box(m, [(70, 60)], 2.0, 0.25)
    v = ZoomView.crop(img, box, (0.0, 1.0))
    mz = v.mask(m)
    assert mz.shape == (256, 256) and mz.sum() > 10 * m.sum()  # zoomed in
    back = input_mask(v.to_full(((2 * mz.float() - 1) * 4)[None], info)[0] > 0, info)
    np.testing.assert_array_equal(back, m)
    one = np.zeros(shape, bool)
    one[60, 77] = True  # a one-pixel rim
    px, py = v.points([(77, 60)])[0]
    assert v.mask(one)[int(round(py)), int(round(px))]


def test_crop_keeps_the_full_images_intensities_and_fills_outside():
    img = np.linspace(0, 100, 64 * 64, dtype=np.float32).reshape(1, 64, 64)
    v = ZoomView.crop(img, (0, 16, 0, 16), (0.0, 100.0))
    assert float(v.x[0, :200, :200].max()) < 0.27  # the crop's top-left values, not stretched to [0, 1]
    _, info = preprocess(img)
    logits = torch.full((2, 256, 256), 3.0)
    outside = torch.full((2, 256, 256), -1.5)
    full = v.to_full(logits, info, outside=outside)
    assert torch.all(full[:, :60, :60] == 3.0) and torch.all(full[:, 70:, :] == -1.5)
    assert torch.all(v.to_full(logits, info)[:, 70:, 70:] == OUTSIDE_LOGIT)


def test_zoom_applies_to_corrective_clicks_only():
    """First clicks and choices are the same with the zoom on; a corrective click decodes twice
    (the full frame, then the crop around its answer, same latents)."""
    from clinloop.interaction.session import Session
    from clinloop.models.spa.model import SPAModel
    from tests.test_spa_model import _image, tiny_net

    img = _image()
    net = tiny_net()
    plain, zoomed = SPAModel(net), SPAModel(net)
    zoomed.config = type(net.config)(**{**net.config.__dict__, "zoom_in": 2.0, "zoom_when": "always"})
    plain.config = type(net.config)(**{**net.config.__dict__, "zoom_in": 0.0})
    for m in (plain, zoomed):
        m.config.honour_clicks = False
    decodes = []
    real = net.gen_mask
    net.gen_mask = lambda *a, **k: decodes.append(a[0].data_ptr()) or real(*a, **k)
    a, b = Session(plain, img, seed=0), Session(zoomed, img, seed=0)
    np.testing.assert_array_equal(a.click((25, 20)).mask, b.click((25, 20)).mask)
    np.testing.assert_array_equal(a.choose(1).mask, b.choose(1).mask)
    n = len(decodes)
    a.click((5, 5), positive=False)
    assert len(decodes) == n + 1
    b.click((5, 5), positive=False)
    assert len(decodes) == n + 3  # the full frame, then the crop
    r = Session.replay(zoomed, img, b.history, seed=0)
    np.testing.assert_array_equal(r.proposal.mask, b.proposal.mask)
    zoomed.config.zoom_mode = "crop"
    n = len(decodes)
    b.click((30, 30))
    assert len(decodes) == n + 2


def test_zoom_when_missed_looks_again_only_at_unhonoured_clicks(monkeypatch):
    """``zoom_when = "missed"``: the crop is decoded only when the full frame's answer leaves the
    new corrective click on the wrong side; ``_answer_honours`` reads the proposal's probability."""
    from clinloop.interaction.session import Session
    from clinloop.models.spa.model import SPAModel, SPAState
    from tests.test_spa_model import _image, tiny_net

    img = _image()
    net = tiny_net()
    model = SPAModel(net)
    model.config = type(net.config)(**{**net.config.__dict__, "zoom_in": 2.0, "zoom_when": "missed"})
    decodes = []
    real = net.gen_mask
    net.gen_mask = lambda *a, **k: decodes.append(1) or real(*a, **k)
    s = Session(model, img, seed=0)
    s.click((25, 20))
    st = s._state
    for honours, extra in ((True, 1), (False, 2)):
        monkeypatch.setattr(SPAState, "_answer_honours", lambda self, prob, h=honours: h)
        n = len(decodes)
        s.click((5, 5), positive=False)
        assert len(decodes) == n + extra
    monkeypatch.undo()
    h, w = st.info.original_size
    logits = torch.full((4, 256, 256), -5.0)
    sy, sx = 256 / max(h, w), 256 / max(h, w)
    logits[:, int(18 * sy): int(23 * sy), int(23 * sx): int(28 * sx)] = 5.0  # input pixels y 18..22, x 23..27
    logits = postprocess_logits((logits > 0).float().mean(0)[None], st.info)[0]  # the proposal's probability
    st.corrective = [((25.0, 20.0), True)]
    assert st._answer_honours(logits)
    st.corrective = [((25.0, 20.0), False), ((5.0, 5.0), False)]
    assert st._answer_honours(logits)  # only the newest click counts
    st.corrective = [((25.0, 20.0), False)]
    assert not st._answer_honours(logits)
    st.corrective = [((25.0, 20.0), True), ((5.0, 5.0), True)]
    assert not st._answer_honours(logits)


def test_config_rejects_bad_zoom_values():
    from clinloop.models.spa.config import SPAConfig

    with pytest.raises(ValueError, match="zoom_in"):
        SPAConfig(zoom_in=0.5)
    with pytest.raises(ValueError, match="zoom_min"):
        SPAConfig(zoom_min=0.0)
    with pytest.raises(ValueError, match="zoom_mode"):
        SPAConfig(zoom_mode="both")
    with pytest.raises(ValueError, match="zoom_when"):
        SPAConfig(zoom_when="sometimes")
