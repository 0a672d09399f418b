"""End to end on a tiny synthetic RIGA-layout file: train (all five methods
through the CLI), resume, evaluate (--protocol lexu), QC curve, distortions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clinloop.cli import main
from clinloop.evaluation.lexu_protocol import RESULT_KEYS, distort, qc_curve

from _lexu_fixtures import write_tiny_riga

TINY = ["--size", "32", "--widths", "4,6,8,8", "--batch-size", "4", "--threads", "1", "--structure", "cup"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("lexu")
    return write_tiny_riga(d / "tiny_riga.npz"), d


def _train(data, out, method, epochs):
    rc = main(["train", "--method", method, "--data", str(data), "--out", str(out), "--epochs", str(epochs),
               "--members", "2", "--mc-samples", "3", *TINY])
    assert rc == 0


def test_training_decreases_loss_and_writes_folder(tiny, tmp_path):
    data, _ = tiny
    d = tmp_path  # its own folder: the protocol test trains its own models (no order dependence)
    torch.manual_seed(0)
    rc = main(["train", "--method", "lexu", "--data", str(data), "--out", str(d / "lexu"), "--epochs", "25",
               "--lr", "0.01", *TINY])
    assert rc == 0
    hist = json.loads((d / "lexu" / "metrics.json").read_text())["history"]
    assert len(hist) == 25
    first, last = np.mean([h["loss"] for h in hist[:3]]), np.mean([h["loss"] for h in hist[-3:]])
    assert last < 0.8 * first
    assert {"mro", "dgm"} <= set(hist[0])
    cfg = json.loads((d / "lexu" / "config.json").read_text())
    assert cfg["method"] == "lexu" and cfg["alpha"] == 1.0 and cfg["beta"] == 5.0 and cfg["size"] == 32
    data_json = json.loads((d / "lexu" / "data.json").read_text())
    assert set(data_json["train_cases"]).isdisjoint(data_json["test_cases"])
    assert len(data_json["train_cases"]) + len(data_json["test_cases"]) == 10
    assert not (d / "lexu" / "checkpoint.pt").exists()


@pytest.mark.parametrize("augment,clean_dgm,raise_h", [(0.0, False, 0.0), (0.5, False, 0.0), (0.5, True, 0.0),
                                                       (0.5, False, 0.25)])
def test_resume_continues_from_checkpoint(tmp_path, augment, clean_dgm, raise_h):
    """Interrupted after 2 of 4 epochs and resumed == 4 uninterrupted epochs (with intensity
    augmentation too: its generator is in the checkpoint; with DGM on clean images only; and
    with the raised DGM target on distorted images)."""
    from clinloop.models.lexu.config import LexuConfig
    from clinloop.training.lexu import train

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 16, 16, generator=g)
    m = (torch.rand(6, 3, 16, 16, generator=g) > 0.5).to(torch.uint8)
    v = torch.ones(6, 3, dtype=torch.bool)
    cfg = LexuConfig(method="lexu", widths=[4, 6, 8], size=16, epochs=4, batch_size=4, intensity_augment=augment,
                     dgm_clean_only=clean_dgm, distortion_disagreement=raise_h)
    (tmp_path / "full").mkdir()
    full, h_full = train(cfg, x, m, v, tmp_path / "full", progress=False)
    (tmp_path / "cut").mkdir()
    _, h_cut = train(cfg, x, m, v, tmp_path / "cut", progress=False, stop_after=2)
    assert len(h_cut) == 2 and (tmp_path / "cut" / "checkpoint.pt").is_file()
    again, h_again = train(cfg, x, m, v, tmp_path / "cut", resume=True, progress=False)
    assert [h["loss"] for h in h_again] == pytest.approx([h["loss"] for h in h_full], rel=1e-5)
    for (k, a), b in zip(full.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_cli_refuses_to_overwrite_and_resume_of_finished_run_is_a_no_op(tiny, tmp_path):
    data, _ = tiny
    # --dgm-clean-only means nothing without augmentation, and only LEXU has a DGM term
    # and so does --distortion-disagreement; it is a variance of binary masks (<= 0.25)
    for bad in (["--method", "lexu", "--dgm-clean-only"],
                ["--method", "unet", "--dgm-clean-only", "--intensity-augment", "0.5"],
                ["--method", "lexu", "--distortion-disagreement", "0.1"],
                ["--method", "lexu", "--distortion-disagreement", "0.3", "--intensity-augment", "0.5"],
                ["--method", "lexu", "--distortion-disagreement", "0.1", "--intensity-augment", "0.5",
                 "--dgm-clean-only"]):
        assert main(["train", *bad, "--data", str(data), "--out", str(tmp_path / "bad"), "--epochs", "1", *TINY]) == 2
    assert not (tmp_path / "bad" / "weights.pt").exists()
    _train(data, tmp_path / "u", "unet", 1)
    again = ["train", "--method", "unet", "--data", str(data), "--out", str(tmp_path / "u"), "--epochs", "1", *TINY]
    assert main(again) == 2  # ValueError -> one-line error, exit status 2
    assert main(["train", "--method", "unet", "--data", str(data), "--out", str(tmp_path / "u"), "--resume",
                 "--epochs", "1", *TINY]) == 0


def test_protocol_writes_exact_keys_for_every_method(tiny, capsys):
    data, d = tiny
    for m in ("lexu", "unet", "ensemble", "layer-ensemble", "mc-dropout"):
        if not (d / m / "weights.pt").is_file():
            _train(data, d / m, m, 1)
    for m in ("lexu", "unet", "ensemble", "layer-ensemble", "mc-dropout"):
        out = d / f"{m}.json"
        rc = main(["evaluate", "--method", m, "--protocol", "lexu", "--data", str(data), "--model", str(d / m),
                   "--out", str(out), "--difficulty-cases", "2"])
        assert rc == 0
        res = json.loads(out.read_text())
        assert tuple(res) == RESULT_KEYS
        assert res["method"] == m and res["protocol"] == "lexu" and res["n_cases"] == 3
        assert res["forward_passes"] == {"ensemble": 2, "mc-dropout": 3}.get(m, 1)
        assert 0 <= res["soft_dice"] <= 1 and res["nll"] > 0 and res["parameters"] > 0
        qc = json.loads((d / f"{m}.qc.json").read_text())
        assert len(qc["q"]) == len(qc["remaining"]) == 21
        dt = json.loads((d / f"{m}.difficulty.json").read_text())
        assert set(dt["distortions"]) == {"noise", "blur", "colour"}
        assert (d / f"{m}.qc.png").stat().st_size > 1000 and (d / f"{m}.difficulty.png").is_file()
    from clinloop.evaluation.lexu_protocol import plot_comparison

    plot_comparison([d / f"{m}.json" for m in ("lexu", "unet", "ensemble")], d / "cmp.png")
    assert (d / "cmp.png").stat().st_size > 1000
    assert main(["evaluate", "--method", "unet", "--protocol", "lexu", "--data", str(data), "--model", str(d / "lexu"),
                 "--out", str(d / "x.json")]) == 2  # model is lexu, not unet
    assert not (d / "x.json").exists()
    with pytest.raises(ValueError, match="no shipped model"):
        from clinloop.evaluation.lexu_protocol import default_model

        default_model("unet", str(data), None)
    capsys.readouterr()
    for flags, message in ((["--limit", "-36"], "--limit must be >= 1, got -36"),
                           (["--limit", "0"], "--limit must be >= 1, got 0"),
                           (["--threads", "-1"], "--threads must be >= 1, got -1")):
        assert main(["evaluate", "--method", "lexu", "--protocol", "lexu", "--data", str(data), "--model",
                     str(d / "lexu"), "--out", str(d / "y.json"), *flags]) == 2
        assert capsys.readouterr().err == f"clinloop: error: {message}\n" and not (d / "y.json").exists()


def test_qc_curve_hand_computed():
    qc = qc_curve([4, 3, 2, 1], [False, True, False, True], quantiles=[0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(qc["remaining"], [1, 1, 0.5, 0.5, 0])
    np.testing.assert_allclose(qc["ideal"], [1, 0.5, 0, 0, 0])
    assert qc["d_auc"] == pytest.approx(0.625 - 0.25)
    assert np.isnan(qc_curve([1, 2], [False, False])["d_auc"])
    with pytest.raises(ValueError):
        qc_curve([1, 2, 3], [True])


def test_distortions():
    rng = np.random.default_rng(0)
    img = (rng.random((3, 20, 20)) * 255).astype(np.float32)
    for kind in ("noise", "blur", "colour"):
        np.testing.assert_allclose(distort(img, kind, 0.0), img, atol=1e-3)
        out = distort(img, kind, 1.0)
        assert out.shape == img.shape and not np.allclose(out, img)
    # blur lowers high-frequency energy; grey images get a gamma change
    assert np.abs(np.diff(distort(img, "blur", 1.0), axis=-1)).mean() < np.abs(np.diff(img, axis=-1)).mean()
    assert distort(img[:1], "colour", 1.0).shape == (1, 20, 20)
    # pixelate at severity 1: 20 px -> 7 blocks (area means), nearest back up to 20
    px = distort(img, "pixelate", 1.0)
    np.testing.assert_allclose(distort(img, "pixelate", 0.0), img, atol=1e-3)
    assert px.shape == img.shape and len(np.unique(px[0, 0])) <= 7
    np.testing.assert_allclose(px.mean(), img.mean(), rtol=0.05)
    with pytest.raises(ValueError):
        distort(img, "rotate", 0.5)
    with pytest.raises(ValueError):
        distort(img, "noise", 2.0)
