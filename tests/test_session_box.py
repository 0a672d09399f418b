"""A box as the first interaction (issue 17): ``Session.box`` with the shipped spa-lidc on a real
LIDC slice, undo/replay, refusals, and a box on one slice of a volume that propagates."""
import numpy as np
import pytest

from clinloop.models.litemedsam import weights_available

pytestmark = pytest.mark.skipif(not weights_available(), reason="LiteMedSAM weights not installed")

# Measured (benchmarks/measure_box_first.py, 25 held-back LIDC slices of the spa protocol's
# selection, spa-lidc): tight box Dice@1 0.881 vs first click 0.836 on the majority vote; on the
# test slice below the box gives 0.949 (box-litemedsam: 0.897). The thresholds leave room for
# float differences only.
BOX_DICE_MIN = 0.92


@pytest.fixture(scope="module")
def spa():
    from clinloop.models.registry import load_model, shipped_models

    if "spa-lidc" not in shipped_models():
        pytest.skip("shipped spa-lidc not installed")
    return load_model("spa-lidc")


@pytest.fixture(scope="module")
def lidc(shared_data):
    """A held-back LIDC slice (spa protocol selection) and its raters' majority vote."""
    from clinloop.data import load_dataset
    from clinloop.training.spa_data import select_cases

    ds = load_dataset(shared_data / "lidc")
    s = ds[select_cases(ds, "val", limit=None)[4]]
    major = s.masks[np.asarray(s.rater_valid, bool)].mean(0) >= 0.5
    assert major.sum() > 20
    return s.image[0], major


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_tight_box_on_lidc_gives_differing_candidates_and_exact_undo_replay(spa, lidc):
    from clinloop.interaction.session import Session
    from clinloop.interaction.users import tight_box

    img, target = lidc
    s = Session(spa, img, seed=3)
    p = s.box(tight_box(target))
    d = _dice(p.mask, target)
    assert d > BOX_DICE_MIN, d
    assert s.history == [{"action": "box", "box": list(tight_box(target))}] and s.iteration == 1
    k = len(p.candidates)
    assert k == spa.config.n_candidates
    assert len({c.tobytes() for c in p.candidates}) > 1  # the K styles differ
    # the box is the prompt: a box around another place gives another mask
    ys, xs = np.nonzero(target)
    assert not np.array_equal(Session(spa, img, seed=3).box((0, 0, 20, 20)).mask, p.mask)
    p2 = s.choose(1)
    s.click((float(xs.mean()), float(ys.mean())), True)
    r = Session.replay(spa, img, s.history, seed=3)
    np.testing.assert_array_equal(r.proposal.mask, s.proposal.mask)
    np.testing.assert_array_equal(r.proposal.candidates, s.proposal.candidates)
    back = s.undo()
    np.testing.assert_array_equal(back.mask, p2.mask)
    s.undo()
    np.testing.assert_array_equal(s.proposal.mask, p.mask)
    np.testing.assert_array_equal(s.proposal.candidates, p.candidates)
    s.undo()
    assert s.proposal is None and s.history == []


@pytest.mark.parametrize("box, msg", [
    ((1, 1, 1, 5), "empty"), ((5, 1, 2, 9), "empty"), ((1, 1, 5), "needs 4 numbers"),
    ((1, 1, 5, 300), "y1=300.0 is outside"), ((-1, 1, 5, 5), "x0=-1.0 is outside"),
    ((1, float("nan"), 5, 5), "y0=nan is outside"), ((1, 1, 5, 5, 0), "needs 4 numbers"),
])
def test_bad_boxes_are_refused(spa, lidc, box, msg):
    from clinloop.interaction.session import Session

    s = Session(spa, lidc[0])
    with pytest.raises(ValueError, match=msg):
        s.box(box)
    assert s.history == []


def test_box_after_the_first_interaction_is_refused(spa, lidc):
    from clinloop.interaction.session import Session

    s = Session(spa, lidc[0])
    s.click((30.0, 30.0), True)
    with pytest.raises(ValueError, match="must be the first interaction"):
        s.box((10, 10, 40, 40))
    assert [h["action"] for h in s.history] == ["click"]


def test_volume_box_propagates_from_its_slice(spa):
    from clinloop.interaction.session import Session

    zz, yy, xx = np.mgrid[:16, :64, :64]
    inside = ((zz - 8) / 6.0) ** 2 + ((yy - 32) / 14.0) ** 2 + ((xx - 30) / 12.0) ** 2 <= 1
    vol = np.where(inside, 200.0, 60.0) + np.random.default_rng(0).normal(0, 5, inside.shape)
    ys, xs = np.nonzero(inside[8])
    s = Session(spa, vol.astype(np.float32), seed=0)
    p = s.box((xs.min(), ys.min(), xs.max(), ys.max(), 8))
    assert p.extra["anchor"] == 8 and p.extra["axis"] == 0
    on = np.flatnonzero(p.mask.any((1, 2)))
    assert len(on) >= 5 and on.min() < 8 < on.max(), on
    assert _dice(p.mask, inside) > 0.6, _dice(p.mask, inside)
    with pytest.raises(ValueError, match="z=2.5 must be an integer"):
        Session(spa, vol.astype(np.float32)).box((20, 20, 40, 40, 2.5))
    np.testing.assert_array_equal(Session.replay(spa, vol.astype(np.float32), s.history).proposal.mask, p.mask)


def test_litemedsam_box_baseline_through_session(lidc):
    """The box-litemedsam baseline takes ``Session.box`` too (no candidates); click-only models refuse."""
    from clinloop.evaluation.spa_protocol import load_method
    from clinloop.interaction.session import Session
    from clinloop.interaction.users import tight_box

    img, target = lidc
    m = load_method("box-litemedsam", None)
    s = Session(m, img)
    p = s.box(tight_box(target))
    assert _dice(p.mask, target) > 0.87, _dice(p.mask, target)
    assert p.candidates is None and s.history[0]["action"] == "box"
    np.testing.assert_array_equal(Session.replay(m, img, s.history).proposal.mask, p.mask)
