"""The multi-hypothesis (relaxed winner-takes-all) term of SPA training:
hand-computed values, and that it breaks the mode collapse of the paper's
mean-sample loss on synthetic raters with known styles (generous vs tight)."""
import numpy as np
import pytest
import torch

from clinloop.training.spa import best_of_n_loss, mean_pairwise_dice, per_sample_loss


def test_per_sample_and_best_of_n_hand_computed():
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logits = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[20.0, -20.0], [-20.0, -20.0]]])
    ls = per_sample_loss(logits, y)
    # sample 0: p = 0.5 everywhere: BCE = ln 2, soft Dice = 1 - (2*0.5 + 1) / (2 + 1 + 1) = 0.5
    assert ls[0].item() == pytest.approx(np.log(2) + 0.5, abs=1e-5)
    assert ls[1].item() == pytest.approx(0.0, abs=1e-5)
    assert best_of_n_loss(logits, y, relax=0.0).item() == pytest.approx(0.0, abs=1e-5)
    assert best_of_n_loss(logits, y, relax=0.2).item() == pytest.approx(0.2 * (np.log(2) + 0.5) / 2, abs=1e-5)
    # only the winner gets the (1 - relax) gradient
    lg = logits.clone().requires_grad_(True)
    best_of_n_loss(lg, y, relax=0.0).backward()
    assert lg.grad[0].abs().sum() == 0
    with pytest.raises(ValueError, match="relax"):
        best_of_n_loss(logits, y, relax=1.5)
    with pytest.raises(ValueError, match="logits"):
        best_of_n_loss(logits[0], y)


def test_mean_pairwise_dice():
    a = torch.zeros(3, 4, 4, dtype=torch.bool)
    a[:, :2] = True
    assert mean_pairwise_dice(a) == pytest.approx(1.0)
    a[2] = False
    a[2, 3] = True  # disjoint from the other two: Dice pairs (1, 0, 0)
    assert mean_pairwise_dice(a) == pytest.approx(1 / 3)


def test_wta_training_makes_candidates_differ():
    from clinloop.data.synthetic import RaterStyle, make_synthetic_sample
    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.preprocess import mask_to_model, preprocess
    from clinloop.models.spa import candidates as cand
    from clinloop.models.spa.config import SPAConfig
    from clinloop.models.spa.model import SPANet
    from clinloop.training.spa import SPATrainer, TrainCase

    torch.manual_seed(0)
    bb = build_litemedsam(True)  # the pretrained decoder segments the synthetic blob from a click
    styles = (RaterStyle("generous", boundary_offset=3.0), RaterStyle("tight", boundary_offset=-3.0))
    net = SPANet(SPAConfig(method="spa", n_samples=16, cond_width=8), bb)  # conditioning zero-initialised
    s = make_synthetic_sample((64, 64), styles=styles, seed=3)
    x, info = preprocess(s.image[0])
    with torch.no_grad():
        e = bb.image_encoder(x[None])[0].half()
    masks = np.stack([mask_to_model(m, info).numpy() > 0.5 for m in s.masks])
    case = TrainCase(e, masks, np.ones(2, bool))
    assert mean_pairwise_dice(torch.from_numpy(masks)) < 0.8  # the two styles really differ

    cy, cx = (float(v) for v in np.argwhere(masks.all(0)).mean(0))

    def candidates():
        with torch.no_grad():
            sp, de = net.encode_interaction((torch.tensor([[[cx, cy]]]), torch.tensor([[1]])), None)
            gmm = net.distribution(e.float()[None], sp, de)
            lg, _, _ = net.gen_mask(e.float()[None], sp, de, gmm, 16, torch.Generator().manual_seed(1))
        return cand.representative_candidates(lg > 0, 4, seed=0)

    assert mean_pairwise_dice(candidates()) == pytest.approx(1.0)  # zero-initialised offset: all identical
    tr = SPATrainer(net, lr=1e-4, lr_new=1e-2, n_samples=4, seed=0, user_iterations=1, wta_weight=1.0)
    for _ in range(STEPS):
        tr.train_case(case)
    after = mean_pairwise_dice(candidates())
    print("pairwise candidate Dice after", after)
    assert after < 0.99


STEPS = 8
