"""Synthetic multi-rater generator: determinism, shapes, known rater styles."""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from clinloop.data import ListDataset, MultiRaterSample
from clinloop.data.fusion import majority_vote
from clinloop.data.synthetic import (
    DEFAULT_STYLES,
    RaterStyle,
    make_styles,
    make_synthetic_dataset,
    make_synthetic_sample,
)


def dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def mean_pairwise_dice(masks):
    r = len(masks)
    return np.mean([dice(masks[i], masks[j]) for i in range(r) for j in range(i + 1, r)])


NAMES = [s.name for s in DEFAULT_STYLES]
GEN, TIGHT = NAMES.index("generous"), NAMES.index("tight")


@pytest.fixture(scope="module")
def cases_2d():
    return [make_synthetic_sample((128, 128), seed=s, return_truth=True) for s in range(8)]


@pytest.fixture(scope="module")
def cases_3d():
    return [make_synthetic_sample((32, 48, 48), seed=s, return_truth=True) for s in range(3)]


def test_deterministic_under_seed():
    a, ta = make_synthetic_sample((64, 64), seed=7, n_small=1, return_truth=True)
    b, tb = make_synthetic_sample((64, 64), seed=7, n_small=1, return_truth=True)
    assert_array_equal(a.image, b.image)
    assert_array_equal(a.masks, b.masks)
    assert_array_equal(ta, tb)
    c = make_synthetic_sample((64, 64), seed=8)
    assert not np.array_equal(a.masks, c.masks) and not np.allclose(a.image, c.image)
    # a rater's stream does not depend on the raters after it
    one = make_synthetic_sample((64, 64), styles=DEFAULT_STYLES[:1], seed=7, n_small=1)
    assert_array_equal(one.masks[0], a.masks[0])
    assert_array_equal(one.image, a.image)


def test_shapes_2d_and_3d(cases_2d, cases_3d):
    s, truth = cases_2d[0]
    assert isinstance(s, MultiRaterSample)
    assert s.image.shape == (1, 128, 128) and s.image.dtype == np.float32
    assert s.masks.shape == (4, 128, 128) and s.masks.dtype == bool and truth.shape == (128, 128)
    assert s.rater_ids == NAMES and s.rater_valid.all() and s.structure == "lesion"
    assert s.provenance["styles"][GEN]["boundary_offset"] == 2.0
    s3, t3 = cases_3d[0]
    assert s3.image.shape == (1, 32, 48, 48) and s3.masks.shape == (4, 32, 48, 48) and t3.shape == (32, 48, 48)
    assert s3.spatial_ndim == 3
    rgb = make_synthetic_sample((32, 32), seed=0, channels=3)
    assert rgb.image.shape == (3, 32, 32)


def test_generous_larger_than_truth_larger_than_tight(cases_2d, cases_3d):
    for s, truth in cases_2d + cases_3d:
        area = s.masks.reshape(len(NAMES), -1).sum(1)
        assert area[GEN] > truth.sum() > area[TIGHT] > 0
        # the consistent style ordering: generous is the largest rater and tight the smallest
        assert area.argmax() == GEN and area.argmin() == TIGHT
        # generous is a superset of tight (+2 px vs -2 px, jitter 0.3 px)
        assert (s.masks[TIGHT] & ~s.masks[GEN]).sum() == 0


def test_rater_agreement_in_realistic_range(cases_2d):
    # measured over seeds 0..7 at 128x128: per-case mean pairwise Dice 0.907-0.930
    # (mean 0.920), each rater vs the truth 0.91-0.999, majority vote vs truth 0.97-0.99
    per_case = [mean_pairwise_dice(s.masks) for s, _ in cases_2d]
    assert 0.85 < min(per_case) and max(per_case) < 0.95
    assert 0.88 < np.mean(per_case) < 0.95
    for s, truth in cases_2d:
        for m in s.masks:
            assert 0.8 < dice(m, truth) < 1.0
        assert dice(majority_vote(s.masks), truth) > 0.95
    # the jittery rater's outline departs more from the truth than the smooth one's
    j, sm = NAMES.index("jittery"), NAMES.index("smooth")
    assert all(dice(s.masks[j], t) < dice(s.masks[sm], t) for s, t in cases_2d)


def test_3d_agreement_is_lower_for_small_objects(cases_3d):
    # +-2 px on a ~10 px radius sphere changes its volume by ~1.7x: measured over
    # seeds 0..11 at (32, 48, 48), mean pairwise Dice 0.52-0.70, majority vote vs
    # truth 0.71-0.91; still far above chance
    for s, truth in cases_3d:
        assert 0.45 < mean_pairwise_dice(s.masks) < 0.78
        assert dice(majority_vote(s.masks), truth) > 0.65


def test_image_is_finite_and_textured(cases_2d, cases_3d):
    for s, truth in cases_2d + cases_3d:
        img = s.image[0]
        assert np.isfinite(img).all() and img.min() >= 0 and img.max() <= 255
        inner = truth & (np.abs(np.gradient(truth.astype(float))).sum(0) == 0)  # away from the edge
        assert img[inner].std() > 5 and img[~truth].std() > 5
        assert img[inner].mean() > img[~truth].mean() + 20  # the structure is visible


def test_small_components_missed_by_style():
    styles = (
        RaterStyle("keeps", boundary_offset=1.0),
        RaterStyle("misses", miss_small=1.0),
    )
    from scipy import ndimage as ndi

    for seed in range(4):
        s, truth = make_synthetic_sample((96, 96), styles=styles, seed=seed, n_small=2, return_truth=True)
        n_truth = ndi.label(truth)[1]
        assert n_truth >= 2  # the satellites are there
        assert ndi.label(s.masks[0])[1] == n_truth
        assert ndi.label(s.masks[1])[1] == 1  # only the main finding is left


def test_dataset_ids_styles_and_determinism():
    ds = make_synthetic_dataset(5, (48, 48), seed=3)
    assert isinstance(ds, ListDataset) and len(ds) == 5
    assert len(set(ds.patient_ids)) == 5 and ds.patient_ids == ds.case_ids
    assert ds[0].patient_id == "synth-0000"
    again = make_synthetic_dataset(2, (48, 48), seed=3)
    assert_array_equal(again[1].masks, ds[1].masks)  # first cases do not depend on n_cases
    other = make_synthetic_dataset(2, (48, 48), seed=4)
    assert not np.array_equal(other[0].masks, ds[0].masks)
    six = make_synthetic_dataset(2, (48, 48), n_raters=6, seed=0)
    assert six[0].n_raters == 6 and six[0].rater_ids[:4] == NAMES
    assert make_synthetic_dataset(1, (32, 32), n_raters=2)[0].rater_ids == ["generous", "tight"]
    assert [s.name for s in make_styles(7)][4:] == ["rater4", "rater5", "rater6"]
    ds3 = make_synthetic_dataset(1, (16, 24, 24), styles=DEFAULT_STYLES[:2], seed=0)
    assert ds3[0].masks.shape == (2, 16, 24, 24)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="shape"):
        make_synthetic_sample((128,))
    with pytest.raises(ValueError, match="sides >= 16"):
        make_synthetic_sample((8, 8))
    with pytest.raises(ValueError, match="style"):
        make_synthetic_sample((32, 32), styles=())
    with pytest.raises(ValueError, match="probability"):
        RaterStyle("x", miss_small=1.5)
    with pytest.raises(ValueError, match="n_raters"):
        make_synthetic_dataset(1, (32, 32), n_raters=3, styles=DEFAULT_STYLES)
    with pytest.raises(ValueError, match="n_raters"):
        make_styles(0)
