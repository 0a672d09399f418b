"""Data-parallel training (issue 16): 2 gloo processes under torchrun train the
same steps as one process with the same seed and global batch.

LEXU (tiny CNN with BatchNorm, MRO rater sampling, 2 epochs of global batch 4
on 7 images: uneven last batch) and MECCA (A2C rollouts with simulated clicks,
labeled + unlabeled batches of 3, 3 iterations) and click-LiteMedSAM (decoder
fine-tuning on 4 embeddings, batch 3, 2 steps).
Tolerance: the per-epoch (per-iteration) losses and final weights agree to 1e-4 (relative) —
the two runs differ only in floating-point summation order (BatchNorm
statistics and gradients summed across ranks instead of within one batch).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, sys, torch
from pathlib import Path
from clinloop.models.lexu.config import LexuConfig
from clinloop.training import distributed
from clinloop.training.lexu import train

def data():
    g = torch.Generator().manual_seed(123)
    x = torch.randn(7, 3, 16, 16, generator=g)  # 7 images, global batch 4: batches of 4 and 3 (ranks 2+2, 2+1)
    m = torch.rand(7, 3, 16, 16, generator=g) < torch.sigmoid(x[:, :1])  # 3 raters, correlated with the image
    v = torch.ones(7, 3, dtype=torch.bool)
    v[2, 1] = False  # one missing rater
    return x, m.to(torch.uint8), v

out = Path(sys.argv[1])
torch.set_num_threads(1)
d = distributed.init("cpu")
def run_mecca():  # A2C rollouts: 5 cases (3 labeled, 2 unlabeled), batch 3 (ranks 2+1), 3 iterations
    from clinloop.models.mecca.config import MECCAConfig
    from clinloop.training.mecca import train_networks
    x, m, _ = data()
    cfg = MECCAConfig(method="mecca", width=4, conf_width=4, trunk_dilations=(1,), head_dilations=(1,),
                      conf_dilations=(1,), steps=2, lr=1e-2, unlabeled_warmup=1, hint_points=2)
    nets, log = train_networks(cfg, x[:5, :1].numpy(), m[:5, 0].numpy().astype(bool), 3, iterations=3, batch=3,
                               progress=False, dist=d)
    if d.main:
        w = {f"{n}.{k}": t.double().sum().item() for n, net in nets.items() for k, t in net.state_dict().items()}
        (out / "mecca.json").write_text(json.dumps({"history": log, "weights": w, "world": d.world}))


def run_click():  # click-LiteMedSAM decoder fine-tuning: 4 cached embeddings, batch 3 (ranks 2+1), 2 steps
    import numpy as np
    from clinloop.models.litemedsam.build import build_litemedsam
    from clinloop.training.click_litemedsam import ClickLiteMedSAMConfig, decoder_state, train as train_click
    torch.manual_seed(0)
    net = build_litemedsam(True)
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(4, 256, 64, 64, generator=g)
    yy, xx = np.mgrid[:256, :256]
    targets = np.stack([(yy - 100 - 20 * k) ** 2 + (xx - 120) ** 2 < (30 + 5 * k) ** 2 for k in range(4)])
    cfg = ClickLiteMedSAMConfig(steps=2, batch_size=3, max_iterations=1, seed=0, lr=1e-3)
    hist = train_click(cfg, net, emb, targets, None, progress=False, dist=d)
    if d.main:
        w = {k: t.double().sum().item() for k, t in decoder_state(net).items() if t.is_floating_point()}
        (out / "click.json").write_text(json.dumps({"history": hist, "weights": w, "world": d.world}))


run_mecca()
run_click()
cfg = LexuConfig(method="lexu", widths=[4, 8, 8], size=16, epochs=2, batch_size=4, lr=1e-2, seed=0, n_members=2,
                 dropout=0.0)
net, hist = train(cfg, *data(), out, progress=False, dist=d)
if d.main:
    w = {k: t.double().sum().item() for k, t in net.state_dict().items() if t.is_floating_point()}
    (out / "lexu.json").write_text(json.dumps({"history": hist, "weights": w, "world": d.world}))
d.barrier()
d.close(net)
'''


def _run(tmp_path: Path, nproc: int) -> dict:
    """Train LEXU and MECCA (tiny) in ``nproc`` processes; their results by method."""
    out = tmp_path / f"run-{nproc}"
    out.mkdir()
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, str(script), str(out)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *cmd[1:]]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    return {m: json.loads((out / f"{m}.json").read_text()) for m in ("lexu", "mecca", "click")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    return _run(tmp, 1), _run(tmp, 2)


@pytest.mark.parametrize("method", ["lexu", "mecca", "click"])
def test_two_gloo_processes_match_one(runs, method):
    one, two = runs[0][method], runs[1][method]
    assert (one["world"], two["world"]) == (1, 2)
    assert len(one["history"]) == len(two["history"]) in (2, 3)
    for a, b in zip(one["history"], two["history"]):
        assert set(a) == set(b)
        # click-LiteMedSAM's history is rounded to 5 decimals, and its small terms (iou ~0.07) carry the
        # float difference of a 2-process gradient all-reduce a few units of the last decimal by step 2
        # (seen: iou 0.06710 vs 0.06713); the other methods' histories are unrounded
        tol = 5e-5 if method == "click" else 1e-6
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=tol), (k, a, b)
    # training moved the weights, and both runs moved them to the same place
    assert one["history"][0]["loss"] != one["history"][1]["loss"]
    if method == "click":
        # LiteMedSAM's decoder has parameters with (near-)zero gradients (e.g. attention key biases: softmax
        # ignores a constant per query); Adam(W) scales their rounding noise up to ±lr steps, so the weights
        # are compared through the losses above (step 2's loss depends on step 1's update) instead.
        return
    for k, w in one["weights"].items():
        assert two["weights"][k] == pytest.approx(w, rel=1e-4, abs=1e-5), k


def test_global_batchnorm_is_plain_batchnorm_in_one_process():
    from clinloop.training.distributed import Dist, GlobalBatchNorm2d

    torch.manual_seed(0)
    bn, gbn = torch.nn.BatchNorm2d(3), GlobalBatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    torch.testing.assert_close(gbn(x), bn(x))
    idx = torch.arange(7)
    assert [len(Dist(rank=r, world=2).share(idx)[0]) for r in (0, 1)] == [4, 3]
    assert Dist(rank=1, world=2).share(idx)[0].tolist() == [4, 5, 6]


def test_launch_command():
    from clinloop.training.distributed import launch_command

    cmd = launch_command(["train", "--method", "lexu"], 2)
    assert "--nproc-per-node=2" in cmd and "--standalone" in cmd and cmd[-3:] == ["train", "--method", "lexu"]
    cmd = launch_command(["train"], 4, nnodes=2, rdzv_endpoint="node0:29500", node_rank=1)
    assert "--rdzv-endpoint=node0:29500" in cmd and "--nnodes=2" in cmd and "--standalone" not in cmd
    with pytest.raises(ValueError, match="rdzv-endpoint"):
        launch_command(["train"], 2, nnodes=2)


def test_cli_rejects_nested_launch(monkeypatch, capsys):
    from clinloop.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--method", "lexu", "--data", "x", "--out", "y", "--nproc", "2"]) == 2
    assert "already running under torchrun" in capsys.readouterr().err
