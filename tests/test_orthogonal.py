"""Orthogonal refinement of volume proposals (clinloop.models.spa.orthogonal): the majority of
three axes per latent sample, the 3-D candidates over fused samples, and the session with it."""
import numpy as np
import pytest
import torch

from clinloop.interaction import planes as pl
from clinloop.interaction.propagation import VolumeConfig
from clinloop.interaction.session import Session
from clinloop.models.spa import orthogonal as orth
from clinloop.models.spa.model import SPAModel
from tests.test_session_volume import _ellipsoid
from tests.test_spa_model import tiny_net


def test_refine_region_hand_case():
    p = np.zeros((10, 20, 30), np.float32)
    assert orth.refine_region(p) is None
    p[4:6, 5:15, 10:12] = 0.2
    # extents 2 / 10 / 2, grown by ceil(0.1 x extent) + 4 per side, clipped to the volume
    assert orth.refine_region(p) == (slice(0, 10), slice(0, 20), slice(5, 17))
    assert orth.refine_region(p, grow=0.0, pad=1) == (slice(3, 7), slice(4, 16), slice(9, 13))


def test_pooled_counts_matches_avg_pool3d():
    rng = np.random.default_rng(0)
    s = rng.random((5, 7, 6, 9)) > 0.6
    ref = torch.nn.functional.avg_pool3d(torch.from_numpy(s[:, None]).float(), 2, ceil_mode=True, padding=0,
                                         count_include_pad=True, divisor_override=1).flatten(1)
    np.testing.assert_array_equal(orth.pooled_counts(s, 2).numpy(), ref.numpy())


def test_fused_candidates_two_styles_by_size():
    small = np.zeros((4, 8, 8), bool)
    small[1:3, 2:5, 2:5] = True
    big = np.zeros((4, 8, 8), bool)
    big[0:4, 1:7, 1:7] = True
    noisy = big.copy()
    noisy[0, 1, 1] = False  # a member of the big cluster that differs in one voxel
    samples = np.stack([small] * 3 + [big] * 4 + [noisy])
    c = orth.fused_candidates(samples, 4, seed=0)
    assert c.shape == (4, 4, 8, 8)
    np.testing.assert_array_equal(c[0], big)  # 5 members (mean > 0.5 keeps the voxel 4 of 5 have)
    np.testing.assert_array_equal(c[1], small)
    # three distinct samples for four slots: the largest cluster fills the last slot
    assert {c[2].sum(), c[3].sum()} <= {big.sum(), small.sum(), noisy.sum()}


class _FakeState:
    """Enough of a VolumeState for orthogonal_samples: each axis's decoder returns, on any plane,
    that axis's own cube (N identical samples), so the fused samples are a majority of three
    known cubes. Planes of 64 px map to the 256² model frame by a factor 4 exactly."""

    def __init__(self, cubes, n=3):
        from clinloop.models.litemedsam.preprocess import resize_info

        self.axis, self.shape, self.cubes, self.n = 0, cubes[0].shape, cubes, n
        self.vcfg = VolumeConfig()
        info = resize_info((64, 64))
        from clinloop.models.spa.volume import _Slice

        self.slice = _Slice(None, info, pl.plane_grid((64, 64), (1.0, 1.0)))
        self.cache, self.prompts = {}, []

    def _slice(self, t, axis=None):
        self.last_axis = self.axis if axis is None else axis
        return self.cache.setdefault((self.last_axis, t), self.slice)

    def _out(self, axis, t):
        from clinloop.models.litemedsam.preprocess import mask_to_model
        from clinloop.models.spa.volume import _Out

        plane = pl.take(self.cubes[axis], axis, t)
        m = mask_to_model(plane, self.slice.info) > 0.5
        ys = m[None].repeat(self.n, 1, 1)
        prob = torch.from_numpy(plane.astype(np.float32))
        return _Out(m, prob, ys, (0, 256, 0, 256))

    def _run(self, t, s, prompt, z):
        self.prompts.append((self.last_axis, t, prompt[1]))
        return self._out(self.last_axis, t)


def test_orthogonal_samples_majority_of_three_axes():
    shape = (64, 64, 64)
    a, b, c = (np.zeros(shape, bool) for _ in range(3))
    a[20:40, 20:40, 20:40] = True  # what the propagation along axis 0 found
    b[20:44, 24:40, 20:40] = True  # the coronal planes: 4 slices further in z, 4 rows fewer in y
    c[20:44, 24:40, 16:44] = True  # the sagittal planes: the same, and wider in x
    st = _FakeState([a, b, c])
    outs = {t: st._out(0, t) for t in range(20, 40)}
    for t in outs:
        st.cache[(0, t)] = st.slice
    fused, region, decoded = orth.orthogonal_samples(st, outs, torch.zeros(3, 8))
    # planes prompted: those y_app (cube a) touches along axes 1 and 2, each by a box only
    assert decoded == 40 and sorted({(ax, t) for ax, t, _ in st.prompts}) == \
        [(1, t) for t in range(20, 40)] + [(2, t) for t in range(20, 40)]
    assert all(box is not None for _, _, box in st.prompts)
    full = np.zeros((3, *shape), bool)
    full[(slice(None), *region)] = fused
    # b and c vote only on the planes a touches (rows y and columns x 20..39)
    b_seen, c_seen = np.zeros(shape, bool), np.zeros(shape, bool)
    b_seen[:, 20:40, :] = b[:, 20:40, :]
    c_seen[:, :, 20:40] = c[:, :, 20:40]
    expected = (a.astype(int) + b_seen + c_seen) >= 2
    assert expected[40:44, 24:40, 20:40].all() and not expected[20:40, 20:24].any()  # grown in z, cut in y
    assert not expected[:, :, 16:20].any()  # c's columns beyond a: one vote only
    for n in range(3):
        np.testing.assert_array_equal(full[n], expected)
    assert region == (slice(14, 46), slice(14, 46), slice(14, 46))


# ------------------------------------------------------------------ in a session (stub backbone)
def test_session_refines_along_the_other_axes_and_replays_exactly():
    m = SPAModel(tiny_net())
    vol, _ = _ellipsoid(shape=(7, 32, 32), centre=(3, 16, 16), radii=(3, 7, 8))
    off = Session(m, vol, seed=2, volume_config=VolumeConfig(orthogonal=False)).click((16, 16, 3))
    cfg = VolumeConfig(orthogonal_min_extent=3)  # 7 slices: below the default 16, refined here
    seen = []
    s = Session(m, vol, seed=2, volume_config=cfg, progress=seen.append)
    p1 = s.click((16, 16, 3))
    last = {r.index: r for r in seen}  # progress ends on the fused slices: the proposal the click returns
    for t in range(7):
        np.testing.assert_array_equal(last[t].mask if t in last else np.zeros((32, 32), bool), p1.mask[t])
    assert seen[-1].done == int(p1.mask.any((1, 2)).sum())
    assert off.extra["orthogonal_planes"] is None and p1.extra["orthogonal_planes"] > 0
    # the propagation is the same; the refinement prompts every plane the propagated mask touches
    assert p1.extra["slices"] == off.extra["slices"] and p1.extra["stops"] == off.extra["stops"]
    touched = int(off.mask.any((0, 2)).sum() + off.mask.any((0, 1)).sum())
    assert p1.extra["orthogonal_planes"] <= touched
    assert p1.extra["encoded_slices"] == off.extra["encoded_slices"] + p1.extra["orthogonal_planes"]
    np.testing.assert_array_equal(p1.mask, p1.probability > 0.5)
    assert p1.candidates.shape == (4, 7, 32, 32)
    p2 = s.choose(1)
    p3 = s.click((13, 15, 3), positive=False)
    assert not p3.mask[3, 15, 13]  # the corrective click is still honoured on its voxel
    back = s.undo()
    for k in ("mask", "probability", "candidates"):
        np.testing.assert_array_equal(getattr(back, k), getattr(p2, k))
    r = Session.replay(m, vol, s.history, seed=2, volume_config=cfg)
    np.testing.assert_array_equal(r.proposal.mask, s.proposal.mask)
    np.testing.assert_array_equal(r.proposal.candidates, s.proposal.candidates)
    # the default skips a structure of 7 slices of 1 mm under 1 mm pixels (extent 7 < 16 pixels)
    assert Session(m, vol, seed=2).click((16, 16, 3)).extra["orthogonal_planes"] is None


def test_short_structures_skip_and_bad_options_fail():
    m = SPAModel(tiny_net())
    vol, _ = _ellipsoid(shape=(2, 48, 48), centre=(1, 24, 24), radii=(1, 10, 12))
    assert Session(m, vol, seed=0).click((24, 24, 0)).extra["orthogonal_planes"] is None  # extent <= 2
    st = type("St", (), {"axis": 0, "spacing": (2.5, 0.7, 0.625)})()
    assert orth.propagated_extent(st, dict.fromkeys(range(4))) == pytest.approx(4 * 2.5 / 0.625)  # 16 px
    st.axis = 2  # sagittal planes: slices 0.625 mm apart, finest other spacing 0.7 mm
    assert orth.propagated_extent(st, dict.fromkeys(range(7))) == pytest.approx(7 * 0.625 / 0.7)
    with pytest.raises(ValueError, match="orthogonal_margin must be in 0 .. 1"):
        VolumeConfig(orthogonal_margin=2.0)
    with pytest.raises(ValueError, match=r"orthogonal_min_extent must be >= 1 \(pixels\)"):
        VolumeConfig(orthogonal_min_extent=0)
    with pytest.raises(ValueError, match="orthogonal_max_voxels must be a positive integer"):
        VolumeConfig(orthogonal_max_voxels=0)
