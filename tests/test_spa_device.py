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
