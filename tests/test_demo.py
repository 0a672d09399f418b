"""The README's main job: `clinloop demo` on the embedded example, offline."""
import json

import numpy as np
import pytest
from PIL import Image

from clinloop.cli import main
from clinloop.models.registry import DEFAULT_MODEL, shipped_models


@pytest.mark.skipif(DEFAULT_MODEL not in shipped_models(), reason="the shipped default model is missing")
def test_demo_runs_offline_and_writes_its_results(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--iterations", "3"]) == 0
    text = capsys.readouterr().out
    assert "cases                        4" in text and "iteration 1" in text
    rec = json.loads((out / "session.json").read_text())
    dices = rec["dice_per_iteration"]
    assert 1 <= len(dices) <= 3 and all(0.0 <= d <= 1.0 for d in dices)
    assert rec["history"][0]["action"] == "click" and rec["history"][-1]["action"] == "accept"
    mask = np.asarray(Image.open(out / "accepted_mask.png")) > 0
    assert mask.shape == (128, 128)
    # the recorded Dice is the accepted mask's Dice to the user's target (recomputed independently)
    from clinloop.data import load_dataset
    from clinloop.data.fusion import random_subset_fusion

    sample = load_dataset(out / "example")[0]
    target, _ = random_subset_fusion(sample.masks, seed=0, require_nonempty=True)
    inter = (mask & target).sum()
    assert dices[-1] == pytest.approx(2 * inter / (mask.sum() + target.sum()), abs=1e-3)
    assert Image.open(out / "demo.png").size[0] > 1000
    # a second run reuses the example folder and replays identically
    assert main(["demo", "--out", str(out), "--iterations", "3"]) == 0
    assert json.loads((out / "session.json").read_text())["dice_per_iteration"] == dices


def test_demo_refuses_bad_iterations(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--iterations", "0"]) == 2
    assert "--iterations must be >= 1" in capsys.readouterr().err


def test_demo_refuses_a_model_that_takes_no_clicks(tmp_path, capsys):
    from clinloop import load_model

    assert load_model("lexu-lidc").spatial_ndims == (2,)  # a tuple, as every model's (was the int 2)
    assert main(["demo", "--out", str(tmp_path / "d1"), "--model", "lexu-lidc"]) == 2
    assert capsys.readouterr().err == ("clinloop: error: --model lexu-lidc: lexu is not an interactive model (it "
                                       "takes no clicks); the demo needs one that does, e.g. spa-general (the "
                                       "default) or spa-lidc\n")
    assert not (tmp_path / "d1").exists()


def test_demo_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "f").write_text("keep")
    for out, why in ((tmp_path / "f", "exists and is not a folder"), (tmp_path / "f" / "d", f"{tmp_path / 'f'} is a "
                                                                      "file, not a folder")):
        assert main(["demo", "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"clinloop: error: --out {out}: {why}; choose another --out\n"
    assert (tmp_path / "f").read_text() == "keep"


def test_any_file_exists_error_is_one_line_and_exit_2(monkeypatch, capsys):
    """The CLI's fallback for a FileExistsError raised deeper down (e.g. mkdir on a file): no traceback."""
    import clinloop.cli.demo as demo

    def refuse(args):
        raise FileExistsError(17, "File exists", "x/y")

    monkeypatch.setattr(demo, "run", refuse)
    assert main(["demo"]) == 2
    assert capsys.readouterr().err == "clinloop: error: [Errno 17] File exists: 'x/y'\n"
