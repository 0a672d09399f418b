"""The MECCA suite's volume stages (BraTS, the atrium): one per shipped ``<method>-<task>``
model, whose figures are the MECCA protocol's on the same held-back volumes."""
from __future__ import annotations

import json

import numpy as np
import pytest


def test_volume_stages_follow_the_shipped_models(monkeypatch):
    from clinloop.evaluation.benchmark import mecca
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context

    monkeypatch.setattr("clinloop.models.registry.shipped_models", lambda: ["pnet-brats", "mecca-atrium", "spa-lidc"])
    ctx = Context(BenchmarkOptions(quick=True), None, None, "quick", 0)
    names = [s.name for s in mecca.stages(ctx)]
    assert names[:4] == ["mecca-mecca", "mecca-mecca-no-confidence", "mecca-interactive-cnn", "mecca-unet"]
    assert names[4:6] == ["mecca-brats-pnet", "mecca-atrium-mecca"]
    # Table 2 on BraTS trains from the shipped pnet-brats: quick runs fractions 1/8 and 1/1
    assert names[6:] == ["mecca-semisup-brats-0.125", "mecca-semisup-brats-1", "mecca-semisup-brats-0.125-labelled-only"]
    monkeypatch.setattr("clinloop.models.registry.shipped_models", lambda: ["spa-lidc"])
    assert not [n for n in (s.name for s in mecca.stages(ctx)) if "semisup" in n]


def test_semisup_stage_trains_with_one_labelled_brats_volume(shared_data, tmp_path):
    """mecca.txt Table 2's 1/8 on BraTS: 1 of the 5 training volumes labelled (the rest through
    Eq. 6), p^(0) from the shipped pnet-brats, scored by the MECCA protocol on a held-back volume."""
    from clinloop.evaluation.benchmark import mecca_semisup
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context

    ctx = Context(BenchmarkOptions(quick=True), shared_data, tmp_path, "quick", 0)
    st = mecca_semisup.stages(ctx)[0]
    assert st.name == "mecca-semisup-brats-0.125" and st.config["models"] == ["pnet-brats"]
    rec = st.compute(ctx)
    info = json.loads((tmp_path / rec["model"] / "data.json").read_text())
    assert info["labeled_fraction"] == 0.125 and info["n_labeled"] == 1 and info["n_train_cases"] == 5
    assert rec["n_labeled"] == 1 and rec["n_cases"] == 1 and len(rec["cases"][0]["dice"]) == 5
    assert rec["ci"]["dice_1"]["mean"] == rec["cases"][0]["dice"][0]
    text = mecca_semisup.section(ctx, {st.name: {"result": rec}})
    assert "| MECCA, 0.125 labelled, + Eq. 6 on the rest (ours, 2 iterations) | 1 of 5 |" in text
    assert "| MECCA, 0.125 labelled (**published**, BraTS2015) | — | — | — | 87.14 |" in text
    # the control: the same labelled volume alone, no unlabelled rollouts
    opts = mecca_semisup.train_options(ctx, 0.125, tmp_path / "c", labelled_only=True)
    assert opts.max_cases == 1 and opts.labeled_fraction == 1.0


def test_brats_pnet_stage_is_the_protocol_on_one_held_back_volume(shared_data, tmp_path):
    from clinloop.evaluation.benchmark import mecca
    from clinloop.evaluation.benchmark.base import BenchmarkOptions, Context
    from clinloop.evaluation.mecca_protocol import MECCAProtocolOptions, run_protocol
    from clinloop.models.registry import resolve_model_dir

    ctx = Context(BenchmarkOptions(quick=True), shared_data, tmp_path, "quick", 0)
    rec = mecca._volume_stage("brats", "pnet")(ctx)
    assert rec["model"] == "pnet-brats" and rec["n_cases"] == 1
    ref = run_protocol(MECCAProtocolOptions(method="pnet", data=str(shared_data / "brats2018_flair"),
                                            model="pnet-brats", limit=1, seed=0, steps=5), verbose=False)
    np.testing.assert_allclose(rec["protocol"]["dice_per_step"], ref["dice_per_step"])
    dice = rec["cases"][0]["dice"]
    assert rec["ci"]["dice_1"]["mean"] == dice[0] and len(set(dice)) == 1  # no hints: every step the same
    held = json.loads((resolve_model_dir("pnet-brats") / "data.json").read_text())["val_patients"]
    assert len(held) == 2 and rec["cases"][0]["case_id"] in ("case_0", "case_1")  # their case folders
    assert dice[0] > 0.8  # the shipped P-Net segments a held-back tumour (0.888 / 0.890 measured)
    text = mecca.section(ctx, {"mecca-brats-pnet": {"result": rec, "config": {"mode": "quick"}, "seconds": 1}})
    assert "### brats" in text and "pnet-brats" in text


def test_train_volumes_command_refines_only_the_atrium_pnet_a_unet(tmp_path):
    from _benchmarks import load_script

    tv = load_script("mecca_train_volumes")
    pnet = tv.command("atrium", "pnet", tmp_path, 1, 30.0, False)
    assert pnet[-4:] == ["--flip-average", "--one-component", "--pnet-arch", "unet"]
    assert pnet[pnet.index("--width") + 1] == "12" and pnet[pnet.index("--iterations") + 1] == "2000"
    brats = tv.command("brats", "pnet", tmp_path, 1, 30.0, False)
    assert "--pnet-arch" not in brats and brats[brats.index("--width") + 1] == "16"  # the dilated P-Net there
    for task, model in (("brats", "pnet"), ("atrium", "mecca")):  # BraTS: several foci; the rest inherit
        cmd = tv.command(task, model, tmp_path, 1, 30.0, False)
        assert "--one-component" not in cmd and "--flip-average" not in cmd
    assert tv.command("brats", "mecca", tmp_path, 1, 30.0, False)[-3:] == [
        "--init-model", str(tmp_path / "pnet-brats"), "--init-mask"]
    for model in ("mecca", "mecca-no-confidence"):  # the atrium's: the chain that made the shipped pair
        first = tv.command("atrium", model, tmp_path, 1, 30.0, False, stage=0)  # from the dilated P-Net's mask
        assert first[-3:] == ["--init-model", str(tmp_path / "pnet-dilated-j8-atrium"), "--init-mask"]
        assert first[first.index("--iterations") + 1] == "1200" and "--reach-rollouts" not in first
        assert first[first.index("--out") + 1] == str(tmp_path / f"{model}-atrium-stage1")
        for k, n in ((1, "300"), (-1, "150")):  # then from the U-Net's probability, reach rollouts, warm-started
            cmd = tv.command("atrium", model, tmp_path, 1, 30.0, False, stage=k)
            assert cmd[-4:] == ["--init-model", str(tmp_path / "pnet-atrium"),
                                "--warm-start", str(tmp_path / f"{model}-atrium-stage{k % 3}")]
            assert cmd[cmd.index("--iterations") + 1] == n and "--reach-rollouts" in cmd and "--init-mask" not in cmd
            assert cmd[cmd.index("--reach-balance") + 1] == "reach" and "--pnet-boundary" not in cmd
        assert tv.trained_folder("atrium", model, tmp_path) == tmp_path / f"{model}-atrium"
    start = tv.command("atrium", "pnet-dilated-j8", tmp_path, 1, 30.0, False)  # the dilated P-Net of stop 40
    assert start[start.index("--iterations") + 1] == "1664" and start[start.index("--crop-jitter") + 1] == "8"
    assert start[start.index("--width") + 1] == "16" and "--pnet-arch" not in start


def test_train_volumes_interactive_cnn_atrium_starts_from_the_dilated_pnet(tmp_path):
    """interactive-cnn-atrium is trained from the earlier dilated P-Net (label-centred crops, 1,327
    iterations) into its own folder; the model folder is that one swapped to pnet-atrium."""
    from _benchmarks import load_script

    tv = load_script("mecca_train_volumes")
    start = tv.command("atrium", "pnet-dilated", tmp_path, 1, 30.0, False)
    assert start[start.index("--iterations") + 1] == "1327" and start[start.index("--width") + 1] == "16"
    assert "--crop-jitter" not in start and "--pnet-arch" not in start
    cmd = tv.command("atrium", "interactive-cnn", tmp_path, 1, 30.0, False)
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "interactive-cnn-atrium-pnet-dilated")
    assert cmd[-3:] == ["--init-model", str(tmp_path / "pnet-dilated-atrium"), "--init-mask"]
    assert tv.trained_folder("brats", "interactive-cnn", tmp_path) == tmp_path / "interactive-cnn-brats"
    with pytest.raises(ValueError, match="no model"):
        tv.command("brats", "pnet-dilated", tmp_path, 1, 30.0, False)


def test_train_volumes_command_gives_the_interactive_models_a_click_reach(tmp_path):
    """Only the models that take hints get ``--click-reach 3 --pnet-boundary`` (the shipped configs)."""
    from _benchmarks import load_script

    from clinloop.training.mecca import MECCATrainOptions

    tv = load_script("mecca_train_volumes")
    for task in ("brats", "atrium"):
        assert "--click-reach" not in tv.command(task, "pnet", tmp_path, 1, 30.0, False)
        for model in ("interactive-cnn", "mecca-no-confidence", "mecca"):
            cmd = tv.command(task, model, tmp_path, 1, 30.0, False)
            # the atrium's RL models show their own probability (the U-Net's p^(0)), not the P-Net's boundary
            boundary = not (task == "atrium" and model != "interactive-cnn")
            assert cmd[cmd.index("--click-reach") + 1] == "3" and ("--pnet-boundary" in cmd) == boundary
    assert MECCATrainOptions.__dataclass_fields__["click_reach"].default == 0.0  # the paper, unless asked


def test_train_volumes_chunks_resume_into_one_folder_and_keep_the_finished_model(tmp_path, capsys):
    """The script's loop (run_resumable): the first chunk into a new folder without --resume, the next with
    --resume while checkpoint.pt exists, until the model is finished; then the same command without --resume is
    refused (the trained model is kept) and with --resume does nothing."""
    from _benchmarks import load_script

    from clinloop.cli import main
    from tests.test_mecca_volumes import make_atrium

    tv = load_script("mecca_train_volumes")
    data, out = make_atrium(tmp_path / "a"), tmp_path / "pnet"
    cmd = ["clinloop", "train", "--method", "mecca-unet", "--data", str(data), "--ndim", "3", "--zoom", "2",
           "--norm", "image", "--crop", "6,6,6", "--size", "0", "--width", "4", "--batch", "2",
           "--held-out-fraction", "0.4", "--val-cases", "1", "--seed", "0", "--iterations", "2",
           "--max-minutes", "0", "--threads", "1", "--out", str(out)]  # --max-minutes 0: one iteration a chunk
    assert tv.run_resumable(cmd, out, max_chunks=5) == 0
    printed = capsys.readouterr().out
    assert "chunk 1:" in printed and "checkpoint kept" in printed
    assert "chunk 2:" in printed and "checkpoint gone (finished)" in printed and "chunk 3:" not in printed
    assert json.loads((out / "data.json").read_text())["iterations"] == 2 and not (out / "checkpoint.pt").exists()
    weights = (out / "weights.pt").read_bytes()
    assert main(cmd[1:]) == 2
    assert f"{out}: already holds a trained model (weights.pt); choose another --out" in capsys.readouterr().err
    assert main([*cmd[1:], "--resume"]) == 0
    assert f"{out}: training already finished; nothing to resume" in capsys.readouterr().err
    assert (out / "weights.pt").read_bytes() == weights and not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("options, message", [
    ({"iterations": 0}, "--iterations must be >= 1 (0 only with --warm-start), got 0"),
    ({"iterations": -3}, "--iterations must be >= 1 (0 only with --warm-start), got -3"),
    ({"lr": 0.0}, "--lr must be > 0, got 0.0"),
    ({"lr": -1e-4}, "--lr must be > 0, got -0.0001"),
    ({"threads": 0}, "--threads must be >= 1, got 0"),
    ({"batch": 0}, "--batch must be >= 1, got 0"),
])
def test_mecca_training_options_refuse_counts_below_one(options, message):
    from clinloop.cli import main
    from clinloop.training.mecca import MECCATrainOptions

    with pytest.raises(ValueError) as e:
        MECCATrainOptions(method="mecca", data="d", out="o", **options)
    assert str(e.value) == message
    assert MECCATrainOptions(method="mecca", data="d", out="o", iterations=0, warm_start="w").iterations == 0
    (k, v), = options.items()
    assert main(["train", "--method", "mecca", "--data", "d", "--out", "o", f"--{k}={v}"]) == 2
