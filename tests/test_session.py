"""Session facade: validation, history, undo/replay, with a tiny deterministic model."""
import numpy as np
import pytest

from clinloop.interaction.proposal import Proposal
from clinloop.interaction.session import Session, as_channels_first


class DiskModel:
    """A model whose proposal is a disc around the last positive click and whose
    K=2 candidates are that disc grown/shrunk; choosing candidate k sets the radius."""

    name = "disc"
    spatial_ndims = (2,)

    def start(self, image, *, seed, profile):
        return DiskState(image.shape[1:], (profile or {}).get("r", 3))


class DiskState:
    def __init__(self, shape, r):
        self.shape, self.r, self.c = shape, r, None

    def _prop(self):
        yy, xx = np.mgrid[: self.shape[0], : self.shape[1]]
        d = np.hypot(xx - self.c[0], yy - self.c[1])
        m = d <= self.r
        cands = np.stack([d <= self.r + 1, d <= max(self.r - 1, 0)])
        return Proposal(m, m.astype(float), np.zeros(self.shape), candidates=cands)

    def click(self, point, positive):
        self.c = point
        return self._prop()

    def choose(self, k):
        self.r = self.r + 1 if k == 0 else max(self.r - 1, 0)
        return self._prop()

    def hint(self, points):
        raise ValueError("disc model takes no hints")

    def profile(self):
        return {"r": self.r}


def test_flow_and_replay():
    s = Session(DiskModel(), np.zeros((20, 30)), seed=1)
    p = s.click((10, 5))
    assert p.mask.shape == (20, 30) and p.mask[5, 10] and p.iteration == 1
    p2 = s.choose(0)
    assert p2.mask.sum() > p.mask.sum() and p2.iteration == 2
    assert s.profile() == {"r": 4}
    r = Session.replay(DiskModel(), np.zeros((20, 30)), s.history, seed=1)
    np.testing.assert_array_equal(r.proposal.mask, p2.mask)
    back = s.undo()
    np.testing.assert_array_equal(back.mask, p.mask)
    mask = s.accept()
    np.testing.assert_array_equal(mask, p.mask)
    with pytest.raises(ValueError, match="accepted"):
        s.click((1, 1))
    # the preference carries to the next image
    assert Session(DiskModel(), np.zeros((8, 8)), profile={"r": 4}).click((4, 4)).mask.sum() > p.mask.sum() * 0


@pytest.mark.parametrize(
    "action,msg",
    [
        (lambda s: s.choose(0), "before any click"),
        (lambda s: s.click((30, 5)), "outside the image"),
        (lambda s: s.click((-1, 5)), "outside the image"),
        (lambda s: s.click((1, 2, 3)), "needs 2 coordinates"),
        (lambda s: (s.click((3, 3)), s.choose(2)), "out of range"),
        (lambda s: (s.click((3, 3)), s.choose(True)), "out of range"),
        (lambda s: s.accept(), "nothing to accept"),
        (lambda s: s.hint([((1, 1), True)]), "no hints"),
        (lambda s: s.undo(), "nothing to undo"),
    ],
)
def test_bad_actions(action, msg):
    s = Session(DiskModel(), np.zeros((20, 30)))
    with pytest.raises(ValueError, match=msg):
        action(s)


@pytest.mark.parametrize(
    "image,msg",
    [
        (np.zeros(5), "2-D"),
        (np.zeros((2, 3, 4, 5)), "2-D"),
        (np.zeros((4, 5, 6)), "3-D image"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.zeros((0, 4)), "empty"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_bad_images(image, msg):
    with pytest.raises(ValueError, match=msg):
        Session(DiskModel(), image)


def test_image_normalisation():
    rgb = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    out = as_channels_first(rgb)
    assert out.shape == (3, 5, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[2], rgb[..., 2])  # channel c = the last axis' c
    rgba = np.random.default_rng(0).random((5, 6, 4))
    np.testing.assert_allclose(as_channels_first(rgba), np.moveaxis(rgba[..., :3], -1, 0), rtol=1e-6)  # alpha dropped
    vol = np.arange(120.0).reshape(4, 5, 6)
    out = as_channels_first(vol, (2, 3))
    assert out.shape == (1, 4, 5, 6)
    np.testing.assert_array_equal(out[0], vol)
