"""Compact weights (int8 deltas against the pretrained LiteMedSAM checkpoint)."""
from __future__ import annotations

import pytest
import torch

from clinloop.errors import DataError
from clinloop.models.litemedsam import compact, weights_available
from clinloop.models.litemedsam import weights as W


def _fake_reference():
    g = torch.Generator().manual_seed(0)
    return {"mask_decoder.lin.weight": torch.randn(6, 5, generator=g), "mask_decoder.lin.bias": torch.randn(6, generator=g),
            "prompt_encoder.emb.weight": torch.randn(1, 4, generator=g)}


def test_pack_unpack_error_bound_and_what_is_stored():
    ref = _fake_reference()
    g = torch.Generator().manual_seed(1)
    state = {"backbone.mask_decoder.lin.weight": ref["mask_decoder.lin.weight"] + 0.01 * torch.randn(6, 5, generator=g),
             "backbone.mask_decoder.lin.bias": ref["mask_decoder.lin.bias"] + 0.5,  # 1-D: fp16, not a delta
             "backbone.prompt_encoder.emb.weight": ref["prompt_encoder.emb.weight"].clone(),  # unchanged: zero delta
             "conditioning.conv.weight": torch.randn(3, 2, 1, 1, generator=g)}  # not in the checkpoint: fp16
    obj = compact.pack(state, ref, "sha")
    assert set(obj["deltas"]) == {"backbone.mask_decoder.lin.weight", "backbone.prompt_encoder.emb.weight"}
    assert obj["deltas"]["backbone.mask_decoder.lin.weight"]["q"].dtype == torch.int8
    assert obj["tensors"]["conditioning.conv.weight"].dtype == torch.float16
    back = compact.unpack(obj, ref)
    assert set(back) == set(state)
    d = state["backbone.mask_decoder.lin.weight"] - ref["mask_decoder.lin.weight"]
    bound = d.abs().amax(1, keepdim=True) / 127 / 2  # half a quantisation step per row
    err = (back["backbone.mask_decoder.lin.weight"] - state["backbone.mask_decoder.lin.weight"]).abs()
    assert (err <= bound + 1e-7).all() and err.max() > 0
    assert torch.equal(back["backbone.prompt_encoder.emb.weight"], ref["prompt_encoder.emb.weight"])
    torch.testing.assert_close(back["backbone.mask_decoder.lin.bias"], state["backbone.mask_decoder.lin.bias"],
                               atol=2e-3, rtol=0)  # fp16
    ref_bad = dict(ref, **{"mask_decoder.lin.weight": torch.zeros(5, 6)})
    with pytest.raises(ValueError, match="shape"):
        compact.unpack(obj, ref_bad)


def test_read_weights_plain_and_bad_files(tmp_path):
    plain = {"a.weight": torch.ones(2, 2, dtype=torch.float16), "n": torch.tensor(3)}
    torch.save(plain, tmp_path / "plain.pt")
    sd = compact.read_weights(tmp_path / "plain.pt")
    assert sd["a.weight"].dtype == torch.float32 and int(sd["n"]) == 3
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="cannot read model weights"):
        compact.read_weights(tmp_path / "junk.pt")
    torch.save({"format": "something-else", "tensors": {}}, tmp_path / "fmt.pt")
    with pytest.raises(DataError, match="unknown weights format"):
        compact.read_weights(tmp_path / "fmt.pt")


@pytest.mark.skipif(not weights_available(), reason=f"LiteMedSAM weights not installed ({W.INSTALL_HINT})")
def test_write_read_against_the_real_checkpoint(tmp_path):
    ref, sha = compact.pretrained_reference()
    k = "mask_decoder.transformer.layers.0.mlp.lin1.weight"
    g = torch.Generator().manual_seed(2)
    state = {k: ref[k] + 0.004 * torch.randn(ref[k].shape, generator=g)}
    compact.write_weights(tmp_path / "w.pt", state)
    back = compact.read_weights(tmp_path / "w.pt")
    assert (back[k] - state[k]).abs().max() <= (state[k] - ref[k]).abs().max() / 254 + 1e-6
    assert (tmp_path / "w.pt").stat().st_size < state[k].numel() * 1.1  # ~1 byte per weight
    obj = torch.load(tmp_path / "w.pt", weights_only=True)
    obj["reference_sha256"] = "0" * 64  # made against another checkpoint: refused, not silently wrong
    torch.save(obj, tmp_path / "other.pt")
    with pytest.raises(DataError, match="deltas against LiteMedSAM checkpoint"):
        compact.read_weights(tmp_path / "other.pt")
