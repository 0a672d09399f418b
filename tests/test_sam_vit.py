"""SAM ViT-B's image encoder (timing reference of the speed report): its size by hand,
and the windowed attention checked against the global one."""
import torch

from clinloop.models.litemedsam.sam_vit import SAMViTEncoder, _Block, _rel_pos


def test_vit_b_has_sams_parameter_count():
    # by hand: patch embed 3·16·16·768 + 768 = 590,592; position 64·64·768 = 3,145,728;
    # a block: 2 LayerNorms 3,072 + qkv 1,771,776 + proj 590,592 + MLP 4,722,432 = 7,087,872,
    # plus relative positions 2·(2·14 − 1)·64 = 3,456 (windowed) or 2·(2·64 − 1)·64 = 16,256 (global);
    # 8 windowed + 4 global blocks 85,147,136; neck 196,608 + 512 + 589,824 + 512 = 787,456
    n = sum(p.numel() for p in SAMViTEncoder().parameters())
    assert n == 590_592 + 3_145_728 + 8 * (7_087_872 + 3_456) + 4 * (7_087_872 + 16_256) + 787_456 == 89_670_912


def test_shapes_and_relative_position_lookup():
    torch.manual_seed(0)
    enc = SAMViTEncoder(img_size=64, dim=48, depth=3, heads=4, window=3, global_blocks=(1,), out_chans=32).eval()
    with torch.inference_mode():
        assert enc(torch.rand(2, 3, 64, 64)).shape == (2, 32, 4, 4)  # 4² tokens, windows of 3² (padded to 6²)
    table = torch.arange(5.0)[:, None]
    got = _rel_pos(3, 3, table)[..., 0]
    assert torch.equal(got, torch.tensor([[2.0, 1.0, 0.0], [3.0, 2.0, 1.0], [4.0, 3.0, 2.0]]))  # table[i - j + 2]


def test_one_window_equals_global_attention_and_windows_do_not_mix():
    torch.manual_seed(1)
    x = torch.randn(1, 6, 6, 16)
    windowed, full = _Block(16, 2, window=6, grid=6), _Block(16, 2, window=0, grid=6)
    full.load_state_dict(windowed.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(windowed(x), full(x))
        small = _Block(16, 2, window=4, grid=6)  # 6² padded to 8²: windows rows/cols 0-3 and 4-5
        y = small(x)
        x2 = x.clone()
        x2[0, 5, 5] += 10.0  # a token of the bottom-right window
        y2 = small(x2)
    assert torch.equal(y[0, :4, :4], y2[0, :4, :4])  # the top-left window does not see it
    assert not torch.allclose(y[0, 4:, 4:], y2[0, 4:, 4:])
