"""Structure adapters of a general SPA model (clinloop.models.spa.adapters): a low-rank change of the
mask decoder's linear layers per structure; identity at init, per-thread scope, sessions (2-D and
volumes), training only them, saving, warm starts and the command line."""
import json
import threading

import numpy as np
import pytest
import torch

from clinloop.interaction.session import Session
from clinloop.models.spa.adapters import ALPHA, StructureAdapters, active_structure, adapter_targets, structure_scope
from clinloop.models.spa.config import SPAConfig
from clinloop.models.spa.model import SPAModel, load_spa_net, save_spa
from tests.test_spa_model import _image, tiny_net
from tests.test_spa_protocol import _write_lidc, stub_backbone  # noqa: F401 - fixture


def _strong(net, index=1, value=0.05):
    """Give structure ``index``'s adapters a non-zero B (a fresh one is zero: the identity)."""
    with torch.no_grad():
        for d in net.structure_adapters.deltas.values():
            d.b[index - 1].fill_(value)


def test_one_layer_matches_the_hand_formula_and_other_structures_are_untouched():
    lin = torch.nn.Linear(6, 3)
    dec = torch.nn.Module()
    dec.transformer = torch.nn.Module()
    dec.transformer.proj = lin
    ad = StructureAdapters(dec, n_structures=2, rank=2)
    assert list(ad.deltas) == ["transformer__proj"]
    d = ad.deltas["transformer__proj"]
    x = torch.randn(4, 6)
    with structure_scope(1):
        torch.testing.assert_close(lin(x), x @ lin.weight.T + lin.bias)  # B = 0: the identity
    with torch.no_grad():
        d.b[0] = torch.randn(3, 2)
    want = x @ lin.weight.T + lin.bias + (ALPHA / 2) * x @ d.a[0].T @ d.b[0].T
    with structure_scope(1):
        torch.testing.assert_close(lin(x), want)
    with structure_scope(2):  # structure 2's B is still zero
        torch.testing.assert_close(lin(x), x @ lin.weight.T + lin.bias)
    torch.testing.assert_close(lin(x), x @ lin.weight.T + lin.bias)  # outside any scope: W alone
    with structure_scope(3), pytest.raises(ValueError, match="out of range"):
        lin(x)
    ad.remove()
    with structure_scope(1):
        torch.testing.assert_close(lin(x), x @ lin.weight.T + lin.bias)


def test_targets_and_the_scope_is_per_thread():
    net = tiny_net(structures=["nodule"], structure_rank=2)
    names = set(adapter_targets(net.backbone.mask_decoder))
    assert "transformer.layers.0.mlp.lin1" in names and "output_hypernetworks_mlps.0.layers.2" in names
    assert not any(n.startswith(("iou_prediction_head", "output_hypernetworks_mlps.1")) for n in names)
    seen = []
    with structure_scope(1):
        t = threading.Thread(target=lambda: seen.append(active_structure()))
        t.start()
        t.join()
        assert active_structure() == 1
    assert seen == [0] and active_structure() == 0
    with pytest.raises(ValueError, match="structure_rank"):
        SPAConfig(structure_rank=2)  # adapters are indexed by the token table


def test_sessions_decode_with_the_cases_adapters():
    net = tiny_net(structures=["lesion", "cup"], structure_rank=2)
    model = SPAModel(net)
    img = _image()
    plain = Session(model, img, seed=0).click((25, 20))
    fresh = Session(model, img, seed=0, structure="lesion").click((25, 20))
    np.testing.assert_array_equal(plain.probability, fresh.probability)  # fresh adapters: the identity
    _strong(net, 1)
    told = Session(model, img, seed=0, structure="lesion").click((25, 20))
    cup = Session(model, img, seed=0, structure="cup").click((25, 20))  # its adapters are still zero
    assert not np.array_equal(plain.probability, told.probability)
    np.testing.assert_array_equal(plain.probability, cup.probability)
    np.testing.assert_array_equal(plain.probability, Session(model, img, seed=0).click((25, 20)).probability)
    assert active_structure() == 0  # the session's scope closed with its step
    vol = np.stack([img] * 3)
    v_plain = Session(model, vol, seed=0).click((25, 20, 1))
    v_told = Session(model, vol, seed=0, structure="lesion").click((25, 20, 1))
    assert not np.array_equal(v_plain.probability, v_told.probability)  # volume slices decode with them too


def test_the_ambiguity_samples_decode_with_the_nodules_adapters():
    from clinloop.evaluation.benchmark.ambiguity import spa_samples

    net = tiny_net(structures=["nodule"], structure_rank=2)
    model, img = SPAModel(net), _image()
    target = np.zeros(img.shape[:2], bool)
    target[15:35, 10:30] = True
    fresh = spa_samples(model, img, target, 4, seed=0)
    np.testing.assert_array_equal(fresh, spa_samples(model, img, target, 4, seed=0, structure=None))
    _strong(net, 1, 0.5)
    told = spa_samples(model, img, target, 4, seed=0)
    assert told.shape == fresh.shape and not np.array_equal(told, fresh)
    np.testing.assert_array_equal(fresh, spa_samples(model, img, target, 4, seed=0, structure=None))


def test_training_only_the_structure_parameters_keeps_the_shared_weights():
    from clinloop.training.spa_trainer import SPATrainer, TrainCase

    net = tiny_net(structures=["nodule", "cup"], structure_rank=2)
    shared = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("structure")}
    masks = np.zeros((2, 256, 256), bool)
    masks[:, 100:140, 90:150] = True
    case = TrainCase(torch.randn(256, 64, 64).half(), masks, np.ones(2, bool), "c0", structure="nodule")
    tr = SPATrainer(net, lr=1e-4, n_samples=2, user_iterations=1, structure_lr=1e-2, structure_only=True)
    assert tr.structure_drop == 0.0 and list(tr.opt) == ["seg"]
    tr.train_case(case)
    for k, v in net.state_dict().items():
        if not k.startswith("structure"):
            torch.testing.assert_close(v, shared[k], msg=k)
    bs = [d.b.detach() for d in net.structure_adapters.deltas.values()]  # each (S, out, r)
    assert max(float(b[0].abs().max()) for b in bs) > 1e-4  # nodule's learnt
    assert max(float(b[1].abs().max()) for b in bs) == 0.0  # cup's did not
    assert float(net.structure.embed.weight[1].detach().abs().max()) > 0
    with pytest.raises(ValueError, match="structure tokens"):
        SPATrainer(tiny_net(), structure_only=True)
    both = SPATrainer(tiny_net(structures=["nodule", "cup"], structure_rank=2), structure_lr=1e-2)
    with pytest.raises(ValueError, match=r"optimisers \['seg'\].*--structure-only"):
        both.load_state(tr.state())  # a --structure-only checkpoint resumed without the flag: named, not a KeyError


def test_save_load_and_warm_start_keep_the_adapters(tmp_path):
    from clinloop.training.spa_warmstart import warm_start

    net = tiny_net(structures=["nodule"], structure_rank=2, cond_width=8)
    _strong(net, 1, 0.01)
    save_spa(net, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["structure_rank"] == 2
    back = load_spa_net(tmp_path / "m", checkpoint=None)
    key = "structure_adapters.deltas.transformer__layers__0__mlp__lin1.b"
    torch.testing.assert_close(back.state_dict()[key], net.state_dict()[key].half().float())
    same = tiny_net(structures=["nodule"], structure_rank=2, cond_width=8)
    assert "structure_adapters" in warm_start(same, tmp_path / "m")["loaded"]
    torch.testing.assert_close(same.state_dict()[key], back.state_dict()[key])
    with pytest.raises(ValueError, match="rank 2 there but 4 here"):
        warm_start(tiny_net(structures=["nodule"], structure_rank=4, cond_width=8), tmp_path / "m")


def test_train_cli_structure_only_and_a_continuation_keeps_them(tmp_path, stub_backbone):  # noqa: F811
    from clinloop.cli import main

    _write_lidc(tmp_path / "lidc.npz", n=6)
    common = ["--data", str(tmp_path / "lidc.npz"), "--format", "lidc", "--val-fraction", "0.5", "--per-nodule",
              "1", "--cond-width", "8", "--user-iterations", "1", "--train-samples", "2", "--seed", "0"]
    base = tmp_path / "base"
    assert main(["train", "--method", "spa", *common, "--steps", "1", "--out", str(base)]) == 0
    out = tmp_path / "ad"
    assert main(["train", "--method", "spa", *common, "--steps", "2", "--init", str(base), "--structure-tokens",
                 "--structure-rank", "2", "--structure-only", "--out", str(out)]) == 0
    info = json.loads((out / "data.json").read_text())
    assert info["structure_rank"] == 2 and info["structure_only"] is True
    assert "structure_adapters" in info["init"]["fresh"]
    a, b = load_spa_net(base, checkpoint=None).state_dict(), load_spa_net(out, checkpoint=None).state_dict()
    for k, v in a.items():  # the shared weights are the init's
        torch.testing.assert_close(b[k], v, msg=k)
    assert any(float(v.abs().max()) > 0 for k, v in b.items() if k.startswith("structure_adapters") and k.endswith(".b"))
    cont = tmp_path / "cont"
    assert main(["train", "--method", "spa", *common, "--steps", "0", "--init", str(out), "--out", str(cont)]) == 0
    assert json.loads((cont / "config.json").read_text())["structure_rank"] == 2
    assert main(["train", "--method", "spa", *common, "--steps", "0", "--init", str(out), "--structure-rank", "4",
                 "--out", str(tmp_path / "bad")]) != 0
    assert main(["train", "--method", "spa", *common, "--steps", "0", "--structure-only",
                 "--out", str(tmp_path / "bad2")]) != 0
