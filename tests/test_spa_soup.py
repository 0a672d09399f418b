"""Weight-space interpolation of two SPA models (``clinloop.training.spa_soup``)."""
import json

import pytest
import torch

from clinloop.models.litemedsam.compact import read_weights
from clinloop.models.spa.model import load_spa_net, save_spa
from clinloop.training.spa_soup import InterpolateConfig, interpolate, interpolate_states
from tests.test_spa_model import tiny_net


def test_interpolate_states_is_the_convex_combination():
    a = {"w": torch.tensor([0.0, 2.0, -4.0]), "n": torch.tensor([3])}
    b = {"w": torch.tensor([1.0, 0.0, 4.0]), "n": torch.tensor([5])}
    out = interpolate_states(a, b, 0.25)
    assert torch.equal(out["w"], torch.tensor([0.25, 1.5, -2.0]))  # 0.75 a + 0.25 b, by hand
    assert torch.equal(out["n"], torch.tensor([5]))  # integers are taken from B
    assert torch.equal(interpolate_states(a, b, 0.0)["w"], a["w"])
    with pytest.raises(ValueError, match="different tensors"):
        interpolate_states(a, {"w": b["w"]}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        interpolate_states(a, {"w": torch.zeros(2), "n": b["n"]}, 0.5)


def test_interpolate_writes_a_loadable_model_between_the_two(tmp_path):
    na, nb = tiny_net("spa", cond_width=8), tiny_net("spa", cond_width=8)
    with torch.no_grad():
        for p in nb.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_spa(na, tmp_path / "a")
    save_spa(nb, tmp_path / "b", extra={"split_seed": 3, "steps": 11})
    from clinloop.cli import main

    rc = main(["interpolate", "--model-a", str(tmp_path / "a"), "--model-b", str(tmp_path / "b"),
               "--out", str(tmp_path / "m")])
    assert rc == 0
    data = json.loads((tmp_path / "m" / "data.json").read_text())
    wa, wb = read_weights(tmp_path / "a" / "weights.pt"), read_weights(tmp_path / "b" / "weights.pt")
    wm = read_weights(tmp_path / "m" / "weights.pt")
    moved = [k for k in wm if wm[k].is_floating_point() and not torch.equal(wa[k], wb[k])]
    assert moved
    for k in moved:  # fp16 storage: within its rounding of the midpoint
        torch.testing.assert_close(wm[k], (wa[k] + wb[k]) / 2, atol=2e-3, rtol=2e-3)
    load_spa_net(tmp_path / "m")  # an ordinary model folder
    saved = json.loads((tmp_path / "m" / "data.json").read_text())
    assert saved == data and saved["split_seed"] == 3 and saved["interpolation"]["alpha"] == 0.5
    assert len(saved["interpolation"]["weights_sha256"]["a"]) == 64
    before = {f: (tmp_path / d / f).read_bytes() for d in ("m", "b") for f in ("weights.pt", "data.json")}
    for out in ("m", "b"):  # a folder holding a model (the last run's, B itself) is never overwritten
        assert main(["interpolate", "--model-a", str(tmp_path / "a"), "--model-b", str(tmp_path / "b"),
                     "--alpha", "0.25", "--out", str(tmp_path / out)]) == 2
        with pytest.raises(ValueError, match=f"{out}: already holds a trained model \\(weights.pt\\); choose another"):
            interpolate(InterpolateConfig(str(tmp_path / "a"), str(tmp_path / "b"), 0.25, str(tmp_path / out)))
    assert {f: (tmp_path / d / f).read_bytes() for d in ("m", "b") for f in ("weights.pt", "data.json")} == before
    with pytest.raises(ValueError, match="alpha"):
        InterpolateConfig("a", "b", 1.5)
    assert main(["interpolate", "--model-a", "a", "--model-b", "b", "--alpha", "-1"]) == 2  # a clear error
    with pytest.raises(ValueError, match="^interpolate --model-b needs a SPA model; lexu-lidc is a lexu model$"):
        interpolate(InterpolateConfig(str(tmp_path / "a"), "lexu-lidc", 0.5, str(tmp_path / "z")))
    assert not (tmp_path / "z").exists()  # refused before anything is written (not LexuConfig's unknown keys)
    save_spa(tiny_net("spa", cond_width=16), tmp_path / "c")
    with pytest.raises(ValueError, match="cond_width"):
        interpolate(InterpolateConfig(str(tmp_path / "a"), str(tmp_path / "c"), 0.5, str(tmp_path / "x")))
    save_spa(tiny_net("spa", cond_width=8, structures=["nodule"]), tmp_path / "t")
    with pytest.raises(ValueError, match="structures"):  # one with structure tokens, one without
        interpolate(InterpolateConfig(str(tmp_path / "a"), str(tmp_path / "t"), 0.5, str(tmp_path / "y")))
