"""swap_pnet: an interactive model with another P-Net as its start p^(0)."""
import json

import numpy as np
import pytest
import torch

from clinloop.models.mecca.config import MECCAConfig
from clinloop.models.mecca.model import MECCAModel, build_networks, load_mecca
from clinloop.training.mecca_swap import swap_pnet


def _model(folder, method, seed, patients=("p0", "p1"), **kw):
    torch.manual_seed(seed)
    kw = {"ndim": 2, "width": 4, "conf_width": 4, "head_dilations": (2, 4), "conf_dilations": (1, 2), **kw}
    cfg = MECCAConfig(method=method, **kw)
    m = MECCAModel(cfg, build_networks(cfg))
    m.save(folder, data={"train_patients": list(patients), "command": f"train {method}"}, metrics={"dice": 0.5})
    return m


def test_the_swapped_model_starts_from_the_other_pnet_and_keeps_its_policy(tmp_path):
    _model(tmp_path / "m", "mecca", 0, init="pnet-mask", init_width=4)
    other = _model(tmp_path / "p", "mecca-unet", 1)
    out = swap_pnet(tmp_path / "m", tmp_path / "p", tmp_path / "s")
    a, s = load_mecca(tmp_path / "m"), load_mecca(out)
    for k, v in a.nets["policy"].state_dict().items():  # the policy is untouched
        torch.testing.assert_close(s.nets["policy"].state_dict()[k], v)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 12, 12)).astype(np.float32))
    want = (torch.sigmoid(other.nets["net"](x)) > 0.5).float()  # p^(0) = the other P-Net's mask
    torch.testing.assert_close(s.initial(x), want)
    assert not torch.equal(a.initial(x), s.initial(x))
    d = json.loads((out / "data.json").read_text())
    assert d["init_swapped"]["model"] == str(tmp_path / "m")  # as given: a shipped name stays a name
    assert d["init_swapped"]["model_command"] == "train mecca" and len(d["init_swapped"]["pnet_weights_sha256"]) == 64


def test_swap_refuses_other_patients_other_grids_and_models_without_a_start(tmp_path):
    _model(tmp_path / "m", "mecca", 0, init="pnet-mask", init_width=4)
    _model(tmp_path / "p_other", "mecca-unet", 1, patients=("p0", "p9"))
    with pytest.raises(ValueError, match="other patients"):
        swap_pnet(tmp_path / "m", tmp_path / "p_other", tmp_path / "s")
    _model(tmp_path / "p_zoom", "mecca-unet", 1, zoom=2)
    with pytest.raises(ValueError, match="zoom"):
        swap_pnet(tmp_path / "m", tmp_path / "p_zoom", tmp_path / "s")
    _model(tmp_path / "plain", "mecca", 0)
    with pytest.raises(ValueError, match="no P-Net start"):
        swap_pnet(tmp_path / "plain", tmp_path / "p_other", tmp_path / "s")


def test_swap_and_init_from_take_over_the_pnets_inference_refinements(tmp_path):
    from clinloop.training.mecca_swap import init_from

    _model(tmp_path / "m", "mecca", 0, init="pnet-mask", init_width=4)
    _model(tmp_path / "p", "mecca-unet", 1, flip_average=True, one_component=True)
    s = load_mecca(swap_pnet(tmp_path / "m", tmp_path / "p", tmp_path / "s"))
    assert (s.cfg.flip_average, s.cfg.one_component) == (True, True)
    cfg = MECCAConfig(method="interactive-cnn", ndim=2, width=4, init="pnet-mask")
    state, width = init_from(tmp_path / "p", cfg)
    assert width == 4 and (cfg.flip_average, cfg.one_component) == (True, True) and state
    with pytest.raises(ValueError, match="mecca-unet"):
        init_from(tmp_path / "m", cfg)


def test_a_unet_pnet_swaps_in_and_starts_a_training_with_its_architecture(tmp_path):
    """A P-Net of the other architecture (pnet_arch "unet") replaces a dilated start network:
    the saved model rebuilds it from init_arch / init_width and starts from its mask."""
    from clinloop.training.mecca_swap import init_from

    _model(tmp_path / "m", "mecca", 0, init="pnet-mask", init_width=4)
    other = _model(tmp_path / "u", "mecca-unet", 1, pnet_arch="unet", unet_levels=2, width=3)
    s = load_mecca(swap_pnet(tmp_path / "m", tmp_path / "u", tmp_path / "s"))
    assert (s.cfg.init_arch, s.cfg.init_width) == ("unet", 3)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 1, 11, 13)).astype(np.float32))
    with torch.no_grad():
        want = (torch.sigmoid(other.nets["net"](x)) > 0.5).float()
    torch.testing.assert_close(s.initial(x), want)
    cfg = MECCAConfig(method="mecca", ndim=2, width=4, init="pnet-mask")
    state, width = init_from(tmp_path / "u", cfg)
    assert (cfg.init_arch, cfg.unet_levels, width) == ("unet", 2, 3)
    cfg.init_width = width
    build_networks(cfg)["init"].load_state_dict(state)  # the run's start network takes the U-Net's weights
