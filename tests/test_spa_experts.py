"""Structure experts (clinloop.models.spa.experts): a specialist's weights kept as a low-rank change of a
general model for one structure; the truncated SVD, decoding as the specialist in its structure's scope and
as the general model elsewhere, the route until the first corrective click, extraction and its command."""
import json

import numpy as np
import pytest
import torch

from clinloop.interaction.session import Session
from clinloop.models.spa.adapters import active_structure
from clinloop.models.spa.config import SPAConfig
from clinloop.models.spa.experts import is_low_rank, low_rank_factors, part_tensors
from clinloop.models.spa.model import SPAModel, load_spa_net, save_spa
from tests.test_spa_model import _image, tiny_net
from tests.test_spa_protocol import stub_backbone  # noqa: F401 - fixture


def _pair():
    """A general tiny net and a 'specialist': the same net with every trainable tensor moved."""
    general, special = tiny_net(cond_width=8), tiny_net(cond_width=8)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for k, t in part_tensors(special).items():
            t.add_(0.05 * torch.randn(t.shape, generator=g))
    return general, special


def _with_expert(general, special, rank=10_000, route="always", structures=("nodule", "cup")):
    net = tiny_net(cond_width=8, structures=list(structures), expert_rank=rank, structure_route=route)
    net.load_state_dict(general.state_dict(), strict=False)
    net.structure_experts.set_expert(1, part_tensors(general), part_tensors(special))
    return net


def test_low_rank_factors_are_the_truncated_svd():
    d = torch.randn(20, 12, generator=torch.Generator().manual_seed(0))
    a, b, kept = low_rank_factors(d, 3)
    assert a.shape == (3, 12) and b.shape == (20, 3)
    u, s, vh = np.linalg.svd(d.numpy().astype(np.float64), full_matrices=False)
    want = (u[:, :3] * s[:3]) @ vh[:3]
    np.testing.assert_allclose((b @ a).numpy(), want, atol=1e-5)
    # Eckart-Young: what is left is the norm of the dropped singular values
    assert float(torch.linalg.norm(d - b @ a)) == pytest.approx(float(np.sqrt((s[3:] ** 2).sum())), rel=1e-5)
    assert kept == pytest.approx(float((s[:3] ** 2).sum()), rel=1e-9)
    assert is_low_rank(torch.Size([20, 12]), 3) and not is_low_rank(torch.Size([20, 3]), 3)
    assert not is_low_rank(torch.Size([32, 8, 3, 3]), 3)  # convolutions: in full


def test_the_expert_decodes_as_the_specialist_and_every_other_case_as_the_general_model():
    general, special = _pair()
    net = _with_expert(general, special)  # a rank above every side: every tensor's change in full
    img = _image()
    gen = Session(SPAModel(general), img, seed=0).click((25, 20))
    spec = Session(SPAModel(special), img, seed=0).click((25, 20))
    model = SPAModel(net)
    told = Session(model, img, seed=0, structure="nodule").click((25, 20))
    assert not np.array_equal(gen.probability, spec.probability)
    np.testing.assert_allclose(told.probability, spec.probability, atol=1e-5)
    for other in ("cup", None, "liver"):  # no expert (cup's change is zero), none given, not a structure
        np.testing.assert_allclose(Session(model, img, seed=0, structure=other).click((25, 20)).probability,
                                   gen.probability, atol=1e-5)
    assert net.structure_experts.has_expert(1) and not net.structure_experts.has_expert(2)
    assert active_structure() == 0
    vol = np.stack([img] * 3)
    v_gen = Session(SPAModel(general), vol, seed=0).click((25, 20, 1))
    v_told = Session(model, vol, seed=0, structure="nodule").click((25, 20, 1))
    v_spec = Session(SPAModel(special), vol, seed=0).click((25, 20, 1))
    np.testing.assert_allclose(v_told.probability, v_spec.probability, atol=1e-5)  # volume slices too
    assert not np.array_equal(v_told.probability, v_gen.probability)
    low = SPAModel(_with_expert(general, special, rank=2))  # a low-rank change: neither of the two
    p = Session(low, img, seed=0, structure="nodule").click((25, 20)).probability
    assert not np.allclose(p, gen.probability, atol=1e-5)


def test_loading_new_weights_merges_again():
    general, special = _pair()
    net = _with_expert(general, special)
    model, img = SPAModel(net), _image()
    before = Session(model, img, seed=0, structure="nodule").click((25, 20)).probability
    assert net.structure_experts._merged  # cached
    sd = net.state_dict()
    sd["conditioning.conv3.bias"] = sd["conditioning.conv3.bias"] + 3.0
    net.load_state_dict(sd)
    assert not net.structure_experts._merged
    after = Session(model, img, seed=0, structure="nodule").click((25, 20)).probability
    assert not np.array_equal(before, after)
    net.float()  # moved or cast: merged again on the next use
    assert not net.structure_experts._merged


def _decoding_indices(net, actions):
    model, img = SPAModel(net), _image()
    seen, part = [], net.part

    def spy(name):
        seen.append(active_structure())
        return part(name)

    net.part = spy
    s = Session(model, img, seed=0, structure="nodule")
    out = []
    for act in actions:
        seen.clear()
        (s.click(*act[1:]) if act[0] == "click" else s.choose(act[1]))
        out.append(sorted(set(seen)))
    del net.part
    return out


def test_until_corrected_the_expert_decodes_first_clicks_and_choices_then_the_shared_weights():
    general, special = _pair()
    acts = [("click", (25, 20)), ("choose", 0), ("click", (5, 5), False), ("choose", 1)]
    net = _with_expert(general, special, route="until-corrected")
    assert _decoding_indices(net, acts) == [[1], [1], [0], [0]]
    net = _with_expert(general, special, route="always")
    assert _decoding_indices(net, acts) == [[1], [1], [1], [1]]
    with pytest.raises(ValueError, match="structure_route"):
        SPAConfig(structure_route="sometimes")
    with pytest.raises(ValueError, match="expert_rank"):
        SPAConfig(expert_rank=4)  # experts are indexed by the structures
    with pytest.raises(ValueError, match="expert_rank"):
        SPAConfig(expert_rank=4, structures=["nodule"], structure_rank=2)


def test_extract_expert_writes_the_general_model_with_the_specialists_change(tmp_path, capsys,
                                                                              stub_backbone):  # noqa: F811
    from clinloop.cli import main
    from clinloop.training.spa_experts import ExtractExpertConfig, extract_expert

    general, special = _pair()
    save_spa(general, tmp_path / "g", extra={"split": {"seed": 0}, "command": "clinloop train ..."})
    save_spa(special, tmp_path / "s", extra={"split": {"seed": 0, "val_fraction": 0.2},
                                             "train_case_ids": ["P1/n0/s0", "P2/n1/s3"]})
    rc = main(["extract-expert", "--general", str(tmp_path / "g"), "--specialist", str(tmp_path / "s"),
               "--structure", "nodule", "--rank", "4", "--out", str(tmp_path / "m")])
    assert rc == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg["structures"], cfg["expert_rank"], cfg["structure_route"]) == (["nodule"], 4, "until-corrected")
    data = json.loads((tmp_path / "m" / "data.json").read_text())
    assert data["split"] == {"seed": 0} and data["expert"]["specialist_split"]["val_fraction"] == 0.2
    assert len(data["expert"]["weights_sha256"]["general"]) == 64
    kept = total = 0.0  # the share of ||Δ||² kept, from the saved weights with numpy's SVD
    gs, ss = part_tensors(load_spa_net(tmp_path / "g")), part_tensors(load_spa_net(tmp_path / "s"))
    for k, g in gs.items():
        d = (ss[k] - g).double().numpy()
        total += (d ** 2).sum()
        low = d.ndim == 2 and min(d.shape) > 4
        kept += (np.linalg.svd(d, compute_uv=False)[:4] ** 2).sum() if low else (d ** 2).sum()
    assert 0 < data["expert"]["delta_energy_kept"] < 1
    assert data["expert"]["delta_energy_kept"] == pytest.approx(kept / total, abs=1e-4)
    assert data["expert"]["train_patient_ids"] == ["P1", "P2"]
    from clinloop.evaluation.spa3d_protocol import held_back

    class Volumes(list):
        patient_ids = ["P0", "P1", "P2", "P3"]

    # the spa-3d protocol holds back by data.json: the specialist's patients are not held back either
    assert held_back(Volumes(range(4)), str(tmp_path / "m"), "spa")[:2] == ([0, 3], 2)
    net = load_spa_net(tmp_path / "m")
    g = load_spa_net(tmp_path / "g")
    for k, v in part_tensors(g).items():  # the shared weights are the general model's
        torch.testing.assert_close(part_tensors(net)[k], v)
    merged = net.structure_experts.merged(net, 1)
    w = "transformer.layers.0.mlp.lin1.weight"  # a matrix: rank 4 of the change
    d = special.backbone.mask_decoder.state_dict()[w] - general.backbone.mask_decoder.state_dict()[w]
    a, b, _ = low_rank_factors(d, 4)
    got = merged["backbone.mask_decoder"].state_dict()[w] - g.backbone.mask_decoder.state_dict()[w]
    torch.testing.assert_close(got, b @ a, atol=2e-3, rtol=0)  # fp16 storage
    bias = "conditioning.conv1.bias"  # a vector: in full
    want = part_tensors(load_spa_net(tmp_path / "s"))[bias]
    torch.testing.assert_close(merged["conditioning"].conv1.bias, want, atol=2e-3, rtol=0)
    save_spa(tiny_net(cond_width=16), tmp_path / "w")
    with pytest.raises(ValueError, match="cond_width"):
        extract_expert(ExtractExpertConfig(str(tmp_path / "g"), str(tmp_path / "w"), "nodule", 4,
                                           out=str(tmp_path / "x")))
    with pytest.raises(ValueError, match="plain SPA model"):
        extract_expert(ExtractExpertConfig(str(tmp_path / "m"), str(tmp_path / "s"), "nodule", 4,
                                           out=str(tmp_path / "y")))
    assert main(["extract-expert", "--general", "g", "--specialist", "s", "--structure", "nodule",
                 "--rank", "0"]) == 2  # a clear error
    capsys.readouterr()
    assert main(["extract-expert", "--general", str(tmp_path / "g"), "--specialist", "lexu-lidc", "--structure",
                 "nodule", "--out", str(tmp_path / "z")]) == 2  # a model of another family: named as such
    assert capsys.readouterr().err == ("clinloop: error: extract-expert --specialist needs a SPA model; lexu-lidc "
                                       "is a lexu model\n")
    before = (tmp_path / "m" / "weights.pt").read_bytes()
    for out in ("m", "g"):  # a folder that holds a model (the last extraction, the general model) is kept
        assert main(["extract-expert", "--general", str(tmp_path / "g"), "--specialist", str(tmp_path / "s"),
                     "--structure", "nodule", "--rank", "2", "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err == (f"clinloop: error: {tmp_path / out}: already holds a trained model (weights.pt); "
                       "choose another --out\n")
    assert (tmp_path / "m" / "weights.pt").read_bytes() == before
    assert main(["train", "--method", "spa", "--data", str(tmp_path), "--init", str(tmp_path / "m"),
                 "--out", str(tmp_path / "t"), "--steps", "1"]) == 2
    assert "extracted, not trained" in capsys.readouterr().err


def test_replay_keeps_the_structure():
    """Session.replay (the server's rebuild after an eviction) decodes with the case's structure, as the
    session it rebuilds did (it dropped it: a nodule's expert session replayed as the general model)."""
    general, special = _pair()
    model, img = SPAModel(_with_expert(general, special)), _image()
    s = Session(model, img, seed=0, structure="nodule")
    p = s.click((25, 20))
    same = Session.replay(model, img, s.history, seed=0, structure="nodule")
    np.testing.assert_array_equal(same.proposal.probability, p.probability)
    plain = Session.replay(model, img, s.history, seed=0)
    assert not np.array_equal(plain.proposal.probability, p.probability)
