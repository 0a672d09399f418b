"""SPA training options: warm start from a model folder (``--init``)."""
import json

import pytest
import torch

from clinloop.models.spa.model import save_spa
from clinloop.training.spa import SPATrainer, warm_start
from tests.test_spa_model import tiny_net


def _changed(a, b, prefix):
    return [k for k in a if k.startswith(prefix) and not torch.equal(a[k], b[k])]


def test_warm_start_loads_shared_parts_and_fresh_variant(tmp_path):
    src = tiny_net("spa", cond_width=8)
    with torch.no_grad():  # make the source differ from a fresh init everywhere it matters
        for p in src.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_spa(src, tmp_path / "m", extra={"steps": 17})
    ref = {k: v.half().float() for k, v in src.trainable_state_dict().items()}

    net = tiny_net("meduhip", cond_width=8)
    fresh_variant = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("variant.")}
    info = warm_start(net, tmp_path / "m")
    sd = net.state_dict()
    for prefix in ("backbone.prompt_encoder.", "backbone.mask_decoder.", "conditioning."):
        keys = [k for k in ref if k.startswith(prefix)]
        assert keys
        for k in keys:
            torch.testing.assert_close(sd[k], ref[k])
    for k, v in fresh_variant.items():  # a different variant keeps its fresh init
        assert torch.equal(sd[k], v)
    assert info["method"] == "spa" and info["steps"] == 17 and info["fresh"] == ["variant"]
    assert info["loaded"] == ["backbone.prompt_encoder", "backbone.mask_decoder", "conditioning"]
    assert len(info["weights_sha256"]) == 64
    json.dumps(info)  # goes into data.json

    same = tiny_net("spa", cond_width=8)
    info2 = warm_start(same, tmp_path / "m")
    assert info2["fresh"] == [] and "variant" in info2["loaded"]
    variant_keys = [k for k in ref if k.startswith("variant.")]
    assert variant_keys  # the loop below checks something
    for k in variant_keys:
        torch.testing.assert_close(same.state_dict()[k], ref[k])

    # lr_new goes only to the modules the warm start did not load
    tr = SPATrainer(net, lr=1e-4, lr_new=1e-3, n_samples=2, fresh=info["fresh"])
    var_ids = {id(p) for p in net.variant.parameters()}
    cond_ids = {id(p) for p in net.conditioning.parameters()}
    assert var_ids and cond_ids
    groups = [({id(p) for p in g["params"]}, g["lr"]) for o in tr.opt.values() for g in o.param_groups]
    at_new = set().union(*[ids for ids, lr in groups if lr == 1e-3])
    assert at_new == var_ids  # every fresh parameter, and nothing else, gets lr_new
    assert {lr for ids, lr in groups if ids & cond_ids} == {1e-4}


def test_warm_start_rejects_other_architecture(tmp_path):
    save_spa(tiny_net("spa", cond_width=8), tmp_path / "m")
    with pytest.raises(ValueError, match="cond_width"):
        warm_start(tiny_net("spa", cond_width=16), tmp_path / "m")
    with pytest.raises(ValueError, match="no model folder"):
        warm_start(tiny_net("spa", cond_width=8), tmp_path / "nothing")


def test_init_split_must_match_unless_chosen(tmp_path):
    from clinloop.training.spa_warmstart import check_init_split

    save_spa(tiny_net("spa", cond_width=8), tmp_path / "m")
    check_init_split(tmp_path / "m", 1, explicit=False)  # no data.json: nothing to compare
    (tmp_path / "m" / "data.json").write_text(json.dumps({"split": {"kind": "patients", "seed": 0}}))
    check_init_split(tmp_path / "m", 0, explicit=False)  # same split
    with pytest.raises(ValueError, match="split with seed 0.*--split-seed 0"):
        check_init_split(tmp_path / "m", 1, explicit=False)  # --seed 1 alone would move the split
    check_init_split(tmp_path / "m", 1, explicit=True)  # --split-seed 1: the user's choice


def test_train_cli_refuses_a_split_that_differs_from_the_init(tmp_path):
    from clinloop.training.spa import SPATrainOptions, train_model

    save_spa(tiny_net("spa", cond_width=8), tmp_path / "m")
    (tmp_path / "m" / "data.json").write_text(json.dumps({"split": {"kind": "patients", "seed": 0}}))
    with pytest.raises(ValueError, match="--split-seed 0"):
        train_model(SPATrainOptions(method="spa", data=str(tmp_path / "none"), out=str(tmp_path / "o"),
                            init=str(tmp_path / "m"), seed=1, steps=1))


def test_continuation_keeps_the_inits_click_and_zoom_settings(tmp_path):
    """A continuation (``--init``) keeps the init's inference-only settings: before this, a run from
    spa-general wrote ``zoom_in: 0`` into its config and lost the shipped zoom."""
    from clinloop.models import registry
    from clinloop.models.spa.config import SPAConfig
    from clinloop.training.spa_warmstart import INFERENCE_SETTINGS, inference_settings

    shipped = inference_settings(SPAConfig.load(registry.resolve_model_dir("spa-general") / "config.json"))
    assert shipped["zoom_in"] == 2.0 and shipped["zoom_min"] == 0.35 and shipped["zoom_when"] == "missed"
    cfg = SPAConfig(zoom_in=3.0, zoom_min=0.5, zoom_mode="crop", zoom_when="always", honour_clicks=False,
                    click_passes=2)
    (tmp_path / "m").mkdir()
    cfg.save(tmp_path / "m" / "config.json")
    kept = inference_settings(SPAConfig.load(tmp_path / "m" / "config.json"))
    assert kept == {"zoom_in": 3.0, "zoom_min": 0.5, "zoom_mode": "crop", "zoom_when": "always",
                    "honour_clicks": False, "click_passes": 2}
    assert set(kept) == set(INFERENCE_SETTINGS)
    assert SPAConfig(**kept).zoom_mode == "crop"
