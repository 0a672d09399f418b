"""--device for the trainers: resolved up front with a clear message (the GPU path itself is exercised
only where CUDA exists; the CPU path by every SPA training test)."""
from __future__ import annotations

import pytest
import torch

from clinloop.cli import main
from clinloop.training import resolve_device


def test_resolve_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="unsupported device type"):
        resolve_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: the refusal is for CPU-only machines")
def test_cuda_refused_clearly_without_cuda(capsys, tmp_path):
    with pytest.raises(ValueError, match="CUDA is not available here"):
        resolve_device("cuda")
    # the CLI stops before reading any data, exit 2 with the reason
    rc = main(["train", "--method", "spa", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "m"),
               "--device", "cuda"])
    assert rc == 2
    assert "CUDA is not available here" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("method", ["spa", "lexu", "click-litemedsam", "mecca", "mecca-unet"])
def test_every_trainer_refuses_a_name_that_is_not_a_device(capsys, tmp_path, method):
    rc = main(["train", "--method", method, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "m"),
               "--device", "banana"])
    err = capsys.readouterr().err  # one line (torch's reason appended), no traceback, before reading any data
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("clinloop: error: --device 'banana' is not a device name (cpu, cuda, cuda:1, mps): ")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("method", ["lexu", "mecca"])
def test_lexu_and_mecca_cuda_is_refused_clearly(capsys, tmp_path, method):
    """LEXU runs on a GPU where there is one (a clear error on a CPU-only build); MECCA trains on the CPU only."""
    if method == "lexu" and torch.cuda.is_available():
        pytest.skip("CUDA present: LEXU would train on it")
    rc = main(["train", "--method", method, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "m"),
               "--device", "cuda"])
    err = capsys.readouterr().err
    want = "trains on the CPU only; use --device cpu" if torch.cuda.is_available() else "CUDA is not available here"
    assert rc == 2 and want in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_lexu_threads_below_one_are_refused(capsys, tmp_path):
    for n in ("-1", "0"):
        assert main(["train", "--method", "lexu", "--data", str(tmp_path), "--out", str(tmp_path / "m"),
                     "--threads", n]) == 2
        assert f"--threads must be >= 1, got {n}" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_spa_training_step_on_cuda():  # pragma: no cover - runs only on a GPU machine
    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.spa.config import SPAConfig
    from clinloop.models.spa.model import SPANet
    from clinloop.training.spa import SPATrainer, TrainCase
    import numpy as np

    torch.manual_seed(0)
    net = SPANet(SPAConfig(), build_litemedsam(None)).to("cuda")
    yy, xx = np.mgrid[:256, :256]
    masks = np.stack([(yy - 128) ** 2 + (xx - 128) ** 2 < r * r for r in (30, 40)])
    case = TrainCase(torch.randn(256, 64, 64).half(), masks, np.ones(2, bool))
    out = SPATrainer(net, n_samples=4, user_iterations=2, wta_weight=1.0).train_case(case)
    assert np.isfinite(out["loss_seg"]) and 0 <= out["dice_last"] <= 1
