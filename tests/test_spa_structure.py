"""Structure tokens of a general SPA model (clinloop.models.spa.structure): one learnt vector per
structure added to the dense prompt embedding; training, saving, warm starts and sessions."""
import json

import numpy as np
import pytest
import torch

from clinloop.models.spa.config import SPAConfig
from clinloop.models.spa.model import SPAModel, load_spa_net, save_spa
from clinloop.interaction.session import structure_options
from clinloop.models.spa.structure import StructureToken
from tests.test_spa_model import _image, tiny_net
from tests.test_spa_protocol import _write_lidc, stub_backbone  # noqa: F401 - fixture


def _prompt():
    return (torch.tensor([[[100.0, 120.0]]]), torch.tensor([[1]]))


def test_token_table_indices_and_identity_at_init():
    t = StructureToken(["nodule", "Left Atrium"], 4)
    assert t.index("NODULE ") == 1 and t.index("left atrium") == 2
    assert t.index("cup") == 0 and t.index(None) == 0 and t.index("") == 0
    dense = torch.randn(1, 4, 3, 3)
    assert t(dense, 0) is dense
    torch.testing.assert_close(t(dense, 2), dense)  # zero-initialised: the identity
    with torch.no_grad():
        t.embed.weight[2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = t(dense, 2)
    torch.testing.assert_close(out - dense, torch.tensor([1.0, 2.0, 3.0, 4.0])[None, :, None, None].expand(1, 4, 3, 3))
    with pytest.raises(ValueError, match="out of range"):
        t(dense, 3)
    with pytest.raises(ValueError, match="unique"):
        StructureToken(["cup", "Cup"], 4)
    with pytest.raises(ValueError, match="non-empty"):
        SPAConfig(structures=["disc", " "])


def test_encode_interaction_adds_the_token_to_dense_only():
    net = tiny_net(structures=["nodule", "disc"])
    s0, d0 = net.encode_interaction(_prompt(), None)
    s1, d1 = net.encode_interaction(_prompt(), None, structure=net.structure_index("disc"))
    torch.testing.assert_close(s1, s0)
    torch.testing.assert_close(d1, d0)  # a fresh table changes nothing
    with torch.no_grad():
        net.structure.embed.weight[2] = 0.5
    s2, d2 = net.encode_interaction(_prompt(), None, structure=2)
    torch.testing.assert_close(s2, s0)
    torch.testing.assert_close(d2 - d0, torch.full_like(d0, 0.5))
    plain = tiny_net()
    assert plain.structure is None and plain.structure_index("disc") == 0
    with pytest.raises(ValueError, match="without structure tokens"):
        plain.encode_interaction(_prompt(), None, structure=1)


def test_sessions_use_the_cases_structure(tmp_path):
    from clinloop.data.synthetic import make_synthetic_sample
    from clinloop.interaction.session import Session

    net = tiny_net(structures=["lesion"])
    with torch.no_grad():
        net.structure.embed.weight[1] = 3.0  # a strong token: the answer must change
    model = SPAModel(net)
    img = _image()
    plain = Session(model, img, seed=0).click((25, 20))
    told = Session(model, img, seed=0, structure="Lesion").click((25, 20))
    other = Session(model, img, seed=0, structure="cup").click((25, 20))  # no token for it: the generic answer
    assert not np.array_equal(plain.probability, told.probability)
    np.testing.assert_array_equal(plain.probability, other.probability)
    sample = make_synthetic_sample((40, 52), seed=0)  # structure "lesion"
    s = Session(model, sample, seed=0)
    assert s.structure == "lesion" and s._state.structure_id == 1
    assert structure_options(model, "lesion") == {"structure": "lesion"}
    assert structure_options(object(), "lesion") == {} and structure_options(model, None) == {}

    from clinloop.server.volume import lift

    driven = lift(model)  # the server's wrapper passes it on
    assert driven.takes_structure and driven.start(img[None], seed=0, structure="lesion").structure_id == 1


def test_save_load_round_trip_and_warm_start_checks(tmp_path):
    from clinloop.training.spa_warmstart import warm_start

    net = tiny_net(structures=["nodule", "cup"], cond_width=8)
    with torch.no_grad():
        net.structure.embed.weight[1:] = torch.randn(2, net.channels)
    save_spa(net, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["structures"] == ["nodule", "cup"]
    back = load_spa_net(tmp_path / "m", checkpoint=None)
    torch.testing.assert_close(back.structure.embed.weight, net.structure.embed.weight.half().float())
    assert back.structure_index("cup") == 2
    same = tiny_net(structures=["nodule", "cup"], cond_width=8)
    info = warm_start(same, tmp_path / "m")
    assert "structure" in info["loaded"]
    torch.testing.assert_close(same.structure.embed.weight, back.structure.embed.weight)
    with pytest.raises(ValueError, match="structure tokens"):
        warm_start(tiny_net(cond_width=8), tmp_path / "m")


def test_training_moves_the_token_of_the_cases_structure_only():
    from clinloop.training.spa_trainer import SPATrainer, TrainCase

    net = tiny_net(structures=["nodule", "cup"])
    masks = np.zeros((2, 256, 256), bool)
    masks[:, 100:140, 90:150] = True
    case = TrainCase(torch.randn(256, 64, 64).half(), masks, np.ones(2, bool), "c0", structure="Nodule")
    tr = SPATrainer(net, lr=1e-4, n_samples=2, user_iterations=1, structure_drop=0.0, structure_lr=1e-2)
    tr.train_case(case)
    w = net.structure.embed.weight.detach()
    assert float(w[1].abs().max()) > 1e-3  # the nodule token learnt
    assert float(w[0].abs().max()) == 0.0 and float(w[2].abs().max()) == 0.0  # none and cup did not
    dropped = tiny_net(structures=["nodule", "cup"])
    SPATrainer(dropped, n_samples=2, user_iterations=1, structure_drop=1.0).train_case(case)
    assert float(dropped.structure.embed.weight.detach().abs().max()) == 0.0  # every episode without its token
    with pytest.raises(ValueError, match="structure_drop"):
        SPATrainer(tiny_net(), structure_drop=1.5)


def test_train_cli_learns_tokens_and_a_continuation_keeps_them(tmp_path, stub_backbone):  # noqa: F811
    from clinloop.cli import main

    _write_lidc(tmp_path / "lidc.npz", n=6)
    common = ["--data", str(tmp_path / "lidc.npz"), "--format", "lidc", "--val-fraction", "0.5", "--per-nodule",
              "1", "--cond-width", "8", "--user-iterations", "1", "--train-samples", "2", "--seed", "0"]
    out = tmp_path / "tok"
    assert main(["train", "--method", "spa", *common, "--steps", "2", "--structure-tokens",
                 "--structure-drop", "0", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    info = json.loads((out / "data.json").read_text())
    assert cfg["structures"] == ["nodule"] and info["structures"] == ["nodule"] and info["structure_drop"] == 0.0
    net = load_spa_net(out, checkpoint=None)
    assert float(net.structure.embed.weight[1].detach().abs().max()) > 0  # learnt in two steps
    cont = tmp_path / "cont"
    assert main(["train", "--method", "spa", *common, "--steps", "0", "--init", str(out), "--out", str(cont)]) == 0
    assert json.loads((cont / "config.json").read_text())["structures"] == ["nodule"]
    torch.testing.assert_close(load_spa_net(cont, checkpoint=None).structure.embed.weight, net.structure.embed.weight)
    from clinloop.training.spa import add_structure_tokens
    from clinloop.training.spa_trainer import TrainCase

    other = TrainCase(None, np.zeros((1, 4, 4), bool), np.ones(1, bool), structure="cup")
    with pytest.raises(ValueError, match="lack cup"):
        add_structure_tokens(net, [other])
    with pytest.raises(ValueError, match="names no structure"):
        add_structure_tokens(tiny_net(), [TrainCase(None, other.masks, other.valid)])
