"""Prompts on real QUBIQ brain-growth MRI (out of LIDC's domain): the pretrained
LiteMedSAM with a tight box and the shipped spa-lidc with one click.

The QUBIQ brain-growth target (rater majority) is a ring of tissue around the
ventricles; one box or one click gives a compact blob inside the brain, so the
Dice is low. Measured on cases 0, 10, 20 (benchmarks/spa_qubiq.py has all 39):
box 0.118 / 0.077 / 0.437, spa-lidc click 0.000 / 0.004 / 0.203; both masks lie
entirely inside the brain. These figures are asserted so a change shows."""
import numpy as np
import pytest

from clinloop.models.litemedsam import weights_available


@pytest.fixture(scope="module")
def qubiq(shared_data):
    from clinloop.data import load_dataset

    d = shared_data / "qubiq_brain_growth"
    if not d.is_dir():
        pytest.skip(f"{d} is absent")
    return load_dataset(d)


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.skipif(not weights_available(), reason="LiteMedSAM weights not installed")
def test_box_and_spa_click_on_qubiq_brain_growth(qubiq):
    from scipy import ndimage

    from clinloop.data.fusion import majority_vote
    from clinloop.interaction.users import largest_error_click, tight_box
    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.predictor import LiteMedSAMPredictor
    from clinloop.models.registry import load_model

    pred = LiteMedSAMPredictor(build_litemedsam(True))
    spa = load_model("spa-lidc")
    box_d, spa_d = [], []
    for i in (0, 10, 20):
        s = qubiq[i]
        target = majority_vote(s.masks, s.rater_valid)
        img = s.image[0]
        brain = ndimage.binary_fill_holes(ndimage.binary_closing(img > 0.1 * img.max(), iterations=2))
        pred.set_image(img)
        box = pred.predict(box=list(tight_box(target)))[0][0]
        pt, pos = largest_error_click(target, None)
        assert pos and target[int(pt[1]), int(pt[0])]  # the click is on the target
        click = spa.start(img[None], seed=0).click(pt, True).mask
        for m in (box, click):
            assert m.shape == target.shape and m.sum() > 100
            assert (m & brain).sum() / m.sum() > 0.95  # a blob inside the brain, not background
        box_d.append(_dice(box, target))
        spa_d.append(_dice(click, target))
    np.testing.assert_allclose(box_d, [0.118, 0.077, 0.437], atol=0.03)
    np.testing.assert_allclose(spa_d, [0.000, 0.004, 0.203], atol=0.03)
