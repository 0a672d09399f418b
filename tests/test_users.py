"""Simulated users: preferred-rater choice, MedUHIP click strategies, error-centre clicks, boxes."""
import numpy as np
import pytest

from clinloop.interaction.users import (CLICK_STRATEGIES, PreferredRaterUser, clinician_disagreement_click, dice,
                                        largest_error_click, last_wrong_click, random_click, random_target_point,
                                        tight_box)


def _rect(y0, y1, x0, x1, shape=(20, 30)):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_dice_values():
    a, b = _rect(0, 2, 0, 2), _rect(0, 2, 1, 3)
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0


def test_preferred_rater_picks_best_candidate_and_accepts():
    target = _rect(5, 15, 5, 15)
    user = PreferredRaterUser(target)
    cands = np.stack([_rect(5, 15, 5, 10), _rect(5, 15, 5, 16), _rect(0, 20, 0, 30), _rect(0, 3, 0, 3)])
    current = _rect(5, 15, 5, 12)
    assert user.choose(cands, current) == 1  # Dice 100/105 is the best
    # the current proposal already beats every candidate -> accept (None)
    assert user.choose(cands, target) is None
    with pytest.raises(ValueError, match="candidates"):
        user.choose(cands[:, :5], current)


def test_preferred_rater_from_raters_is_seeded_majority_subset():
    raters = np.stack([_rect(5, 15, 5, 15), _rect(5, 15, 5, 16), _rect(6, 14, 6, 14), np.zeros((20, 30), bool)])
    u1 = PreferredRaterUser.from_raters(raters, seed=3)
    u2 = PreferredRaterUser.from_raters(raters, seed=3)
    assert np.array_equal(u1.target, u2.target) and np.array_equal(u1.raters, u2.raters)
    assert 3 not in set(u1.raters.tolist())  # the empty rater is never the preferred one
    # the target is the strict majority of the chosen raters
    sub = raters[u1.raters]
    assert np.array_equal(u1.target, sub.sum(0) * 2 > len(sub))
    seen = {tuple(PreferredRaterUser.from_raters(raters, seed=s).raters) for s in range(40)}
    assert len(seen) > 3  # different seeds give different subsets


def test_largest_error_click_centre():
    target = _rect(2, 9, 2, 9)  # 7x7 square, centre pixel (5, 5)
    (x, y), pos = largest_error_click(target, None)
    assert (x, y) == (5.0, 5.0) and pos is True
    # prediction covers the square plus a 9x9 false-positive square (rows 10-18, cols 19-27): the largest error
    pred = target | _rect(10, 19, 19, 28)
    (x, y), pos = largest_error_click(target, pred)
    assert (x, y) == (23.0, 14.0) and pos is False
    assert largest_error_click(target, target) is None
    with pytest.raises(ValueError):
        largest_error_click(target, np.zeros((3, 3), bool))


def test_click_strategies():
    rng = np.random.default_rng(0)
    target, pred = _rect(2, 9, 2, 9), _rect(2, 9, 2, 6)
    for _ in range(20):
        (x, y), pos = last_wrong_click(target, pred, rng)
        assert target[int(y), int(x)] and not pred[int(y), int(x)] and pos
    raters = np.stack([target, _rect(2, 9, 2, 12)])
    for _ in range(20):
        (x, y), pos = clinician_disagreement_click(target, pred, rng, raters)
        assert 9 <= x < 12 and 2 <= y < 9 and pos is False
    (x, y), pos = random_click(target, pred, rng)
    assert 0 <= x < 30 and 0 <= y < 20 and pos == bool(target[int(y), int(x)])
    assert set(CLICK_STRATEGIES) == {"random", "clinician-disagreement", "last-wrong"}
    px, py = random_target_point(target, rng)
    assert target[int(py), int(px)]
    with pytest.raises(ValueError, match="empty"):
        random_target_point(np.zeros((4, 4), bool), rng)


def test_tight_box():
    assert tight_box(_rect(3, 8, 4, 10)) == (4.0, 3.0, 9.0, 7.0)
    with pytest.raises(ValueError, match="empty"):
        tight_box(np.zeros((4, 4), bool))
