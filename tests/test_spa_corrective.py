"""Corrective clicks and box-first episodes in SPA training (clinloop.training.spa_corrective),
the corrective mask prompt of SPAState, and the mixed-source case list (clinloop.training.spa_mix)."""
import numpy as np
import pytest
import torch

from clinloop.training.spa_corrective import add_corrective_click, click_term, jittered_box
from clinloop.training.spa_mix import balanced_cases, structure_slices


def test_jittered_box_contains_the_target_up_to_pad_and_is_clipped():
    t = np.zeros((64, 64), bool)
    t[20:30, 10:40] = True
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0, x1, y1 = jittered_box(t, rng, max_shift=0.1, pad=2)
        assert 0 <= x0 <= x1 <= 63 and 0 <= y0 <= y1 <= 63
        # each side moves at most pad inwards and max_shift*side + pad outwards
        assert 8 - 3 - 1 <= x0 <= 12 and 39 - 2 <= x1 <= 39 + 3 + 2
        assert 20 - 3 <= y0 <= 22 and 29 - 2 <= y1 <= 29 + 1 + 2
    edge = np.zeros((64, 64), bool)
    edge[0:5, 60:64] = True
    for _ in range(20):
        b = jittered_box(edge, rng)
        assert b[2] <= 63 and b[1] >= 0
    with pytest.raises(ValueError, match="empty"):
        jittered_box(np.zeros((8, 8), bool), rng)


def test_corrective_click_comes_from_the_error_and_appends():
    target = np.zeros((16, 16), bool)
    target[4:12, 4:12] = True
    current = np.zeros((16, 16), bool)
    current[4:12, 4:8] = True  # misses the right half: only false negatives
    pts = (torch.tensor([[[5.0, 5.0]]]), torch.tensor([[1]]))
    rng = np.random.default_rng(1)
    for _ in range(20):
        new = add_corrective_click(pts, target, current, rng)
        (x, y), lab = new[0][0, -1].tolist(), int(new[1][0, -1])
        assert new[0].shape == (1, 2, 2) and lab == 1 and target[int(y), int(x)] and not current[int(y), int(x)]
    leak = target.copy()
    leak[0:2, :] = True  # only false positives
    new = add_corrective_click(None, target, leak, rng)
    (x, y), lab = new[0][0, 0].tolist(), int(new[1][0, 0])
    assert lab == 0 and leak[int(y), int(x)] and not target[int(y), int(x)]
    assert add_corrective_click(pts, target, target, rng) is None  # nothing to correct


def test_click_term_is_bce_at_the_clicked_pixels():
    logits = torch.zeros(3, 8, 8)
    logits[:, 2, 5] = 2.0  # include click at (x=5, y=2)
    logits[:, 6, 1] = 1.0  # exclude click at (x=1, y=6)
    pts = (torch.tensor([[[5.0, 2.0], [1.0, 6.0], [0.0, 0.0]]]), torch.tensor([[1, 0, -1]]))
    want = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(1.0))) / 2
    assert float(click_term(logits, pts)) == pytest.approx(want, rel=1e-6)
    assert float(click_term(logits, (torch.zeros(1, 1, 2), torch.tensor([[-1]])))) == 0.0


def test_structure_slices_spread_over_the_occupied_slices():
    m = np.zeros((1, 20, 4, 4), bool)
    m[0, 5:15, 1, 1] = True
    assert structure_slices(m, 3) == [5, 9, 14]  # linspace 0, 4.5, 9 rounds half to even
    assert structure_slices(m, 50) == list(range(5, 15))
    assert structure_slices(np.zeros((6, 3, 3), bool), 2) == []


def test_balanced_cases_gives_each_group_its_share():
    a, b, c = list("ab"), list(range(10)), ["x"]
    out = balanced_cases([a, b, c], [1.0, 1.0, 2.0], seed=0)
    # the largest group per unit weight (b: 10) sets the unit; c gets 2 x 10 entries
    assert len(out) == 40 and out.count("x") == 20
    assert sorted(x for x in out if isinstance(x, int)) == list(range(10))
    assert out.count("a") == out.count("b") == 5
    with pytest.raises(ValueError):
        balanced_cases([a, []], [1, 1])


def test_spa_session_corrective_click_uses_the_current_mask():
    from clinloop.interaction.session import Session
    from tests.test_spa_model import _image, tiny_net
    from clinloop.models.spa.model import SPAModel

    model = SPAModel(tiny_net())
    img = _image()
    seen = []
    real = model.net.encode_interaction

    def spy(points, mask_logits, box=None, structure=0):
        seen.append((None if points is None else points[1].tolist(), None if mask_logits is None else mask_logits.clone()))
        return real(points, mask_logits, box, structure)

    model.net.encode_interaction = spy
    s = Session(model, img, seed=0)
    p1 = s.click((25, 20))
    st = s._state
    assert seen[-1][1] is None  # the first click has no mask prompt
    current = st.current.clone()
    s.click((5, 5), positive=False)
    labels, mp = seen[-1]
    assert labels == [[1, 0]]
    np.testing.assert_array_equal((mp[0, 0] > 0).numpy(), current.numpy())  # the last proposal's y_app
    p3 = s.choose(1)
    chosen = st.candidates_model  # after the choice the chosen candidate is the prompt (Alg. 1)
    assert p3.iteration == 3 and chosen is not None
    r = Session.replay(model, img, s.history, seed=0)
    np.testing.assert_array_equal(r.proposal.mask, p3.mask)
    assert p1.mask.shape == img.shape



def test_click_passes_reprompt_a_corrective_click_with_its_own_y_app():
    """``click_passes = 2``: a corrective click decodes twice, the second time with the first
    pass's y_app as the mask prompt; the first click and choices decode once."""
    from clinloop.interaction.session import Session
    from tests.test_spa_model import _image, tiny_net
    from clinloop.models.spa.candidates import aggregate
    from clinloop.models.spa.model import SPAModel

    model = SPAModel(tiny_net())
    model.config.click_passes = 2
    model.config.honour_clicks = False  # the network's own y_app (the constraint would edit it)
    img = _image()
    prompts = []
    real_enc, real_gen = model.net.encode_interaction, model.net.gen_mask
    model.net.encode_interaction = lambda pts, mp, box=None, st=0: (prompts.append(mp), real_enc(pts, mp, box, st))[1]
    decodes = []
    model.net.gen_mask = lambda *a, **k: decodes.append(real_gen(*a, **k)) or decodes[-1]
    s = Session(model, img, seed=0)
    s.click((25, 20))
    assert len(decodes) == 1
    st = s._state
    before = st.current.clone()
    s.click((5, 5), positive=False)
    assert len(decodes) == 3 and len(prompts) == 3
    np.testing.assert_array_equal((prompts[1][0, 0] > 0).numpy(), before.numpy())  # pass 1: the corrected mask
    _, y_app_pass1 = aggregate(decodes[1][0] > 0)
    np.testing.assert_array_equal((prompts[2][0, 0] > 0).numpy(), y_app_pass1.numpy())  # pass 2: pass 1's y_app
    _, y_app_pass2 = aggregate(decodes[2][0] > 0)
    np.testing.assert_array_equal(st.current.numpy(), y_app_pass2.numpy())  # the proposal is the last pass's
    s.choose(0)
    assert len(decodes) == 4  # a choice: one pass
    r = Session.replay(model, img, s.history, seed=0)  # replay is exact with the extra pass
    np.testing.assert_array_equal(r.proposal.mask, s.proposal.mask)
    with pytest.raises(ValueError, match="click_passes"):
        from clinloop.models.spa.config import SPAConfig
        SPAConfig(click_passes=0)


def _cases(net, n=2):
    from clinloop.data.synthetic import make_synthetic_sample
    from clinloop.models.litemedsam.preprocess import mask_to_model, preprocess
    from clinloop.training.spa import TrainCase

    out = []
    for k in range(n):
        s = make_synthetic_sample((64, 64), seed=k)
        x, info = preprocess(s.image[0])
        with torch.no_grad():
            e = net.backbone.image_encoder(x[None])[0].half()
        out.append(TrainCase(e, np.stack([mask_to_model(m, info).numpy() > 0.5 for m in s.masks]),
                             np.ones(len(s.masks), bool)))
    return out


def test_trainer_simulates_boxes_and_corrective_clicks():
    from clinloop.training.spa import SPATrainer
    from tests.test_spa_model import tiny_net

    net = tiny_net(cond_width=8)
    cases = _cases(net)
    prompts = []
    real = net.encode_interaction

    def spy(points, mask_logits, box=None, structure=0):
        prompts.append((None if points is None else points[1][0].tolist(), mask_logits is not None, box is not None))
        return real(points, mask_logits, box, structure)

    net.encode_interaction = spy
    tr = SPATrainer(net, lr=1e-3, n_samples=2, seed=0, user_iterations=3, click_prob=1.0, box_prob=1.0,
                    click_weight=1.0)
    row = tr.train_step([cases[0]])
    assert np.isfinite(row["loss_seg"])
    # the first prompt is the box alone; every later user iteration adds one corrective click on the
    # current mask (mask prompt on), unless the mask had no error left
    assert prompts[0] == (None, False, True)
    n_points = [len(p[0]) if p[0] is not None else 0 for p in prompts]
    assert n_points == sorted(n_points) and max(n_points) >= 1
    assert all(p[2] for p in prompts) and all(p[1] for p in prompts if p[0] is not None)
    # without the new options the trainer draws exactly as before: a point first, choices only
    prompts.clear()
    tr0 = SPATrainer(tiny_net(cond_width=8), lr=1e-3, n_samples=2, seed=0, user_iterations=2)
    tr0.net.encode_interaction = spy
    tr0.train_step([cases[0]])
    assert all(p[0] == [1] and not p[2] for p in prompts)
    with pytest.raises(ValueError, match="click_prob"):
        SPATrainer(tiny_net(cond_width=8), click_prob=1.5)


def test_general_volumes_mix_changes_only_the_volume_sources():
    from clinloop.training.spa_mix import GENERAL, GENERAL_VOLUMES, MIXES

    assert MIXES["general-volumes"] is GENERAL_VOLUMES
    for g, v in zip(GENERAL, GENERAL_VOLUMES, strict=True):  # same sources, patients and held-back split
        assert (g.name, g.folder, g.options, g.held_out, g.per_group) == (v.name, v.folder, v.options, v.held_out,
                                                                         v.per_group)
        if g.name in ("brats", "left_atrium"):
            assert (v.slices, v.weight) == (3 * g.slices, 3.0)
        else:
            assert v == g


def test_general_lidc400_mix_doubles_only_the_lidc_slices():
    from clinloop.training.spa_mix import GENERAL_LIDC400, GENERAL_VOLUMES, MIXES

    assert MIXES["general-lidc400"] is GENERAL_LIDC400
    for v, w in zip(GENERAL_VOLUMES, GENERAL_LIDC400, strict=True):
        if v.name == "lidc":  # spa-lidc's slice count, the same share of the episodes and held-back patients
            assert (w.slices, w.weight, w.held_out, w.per_group) == (400, v.weight, v.held_out, 1)
        else:
            assert w == v


def test_general_lidc_only_mix_is_the_general_lidc_source():
    from clinloop.training.spa_mix import GENERAL, MIXES

    (only,) = MIXES["general-lidc-only"]
    assert only is GENERAL[0] and only.name == "lidc"  # same slices and held-back patients as spa-general's
