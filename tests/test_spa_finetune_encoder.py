"""SPA training option ``--finetune-encoder``: the TinyViT image encoder trains with
the segmentation update; the saved model holds it and loading uses it."""
import numpy as np
import torch

from clinloop.models.spa.config import SPAConfig
from clinloop.models.spa.model import SPANet, load_spa_net, save_spa


def _net():
    from clinloop.models.litemedsam import build_litemedsam

    torch.manual_seed(0)
    net = SPANet(SPAConfig(method="spa", n_samples=2, cond_width=8, finetune_encoder=True), build_litemedsam(None))
    torch.nn.init.normal_(net.conditioning.conv3.weight, std=0.5)
    return net


def test_one_step_trains_the_encoder_and_the_model_folder_keeps_it(tmp_path, monkeypatch):
    from clinloop.data.synthetic import make_synthetic_sample
    from clinloop.models.litemedsam.preprocess import mask_to_model, preprocess
    from clinloop.training.spa import SPATrainer, TrainCase

    net = _net()
    enc = net.backbone.image_encoder
    assert all(p.requires_grad for p in enc.parameters()) and net.backbone.weights_id is None
    s = make_synthetic_sample((64, 64), seed=0)
    x, info = preprocess(s.image[0])
    case = TrainCase(None, np.stack([mask_to_model(m, info).numpy() > 0.5 for m in s.masks]),
                     np.ones(len(s.masks), bool), image=x)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    tr = SPATrainer(net, lr=1e-4, n_samples=2, seed=0, user_iterations=1, encoder_lr=1e-3)
    assert any(g["lr"] == 1e-3 and g["params"][0] is next(enc.parameters()) for g in tr.opt["seg"].param_groups)
    row = tr.train_case(case)
    assert np.isfinite(row["loss_seg"])
    changed = [k for k, v in enc.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 10  # the encoder's weights moved
    assert not enc.training  # normalisation statistics stay the pretrained ones
    # no embeddings without the images
    case.image = None
    try:
        tr.train_case(case)
        raise AssertionError("expected ValueError")
    except ValueError as e:
        assert "keep_images" in str(e)

    save_spa(net, tmp_path / "m")
    from clinloop.models.litemedsam.compact import read_weights

    sd = read_weights(tmp_path / "m" / "weights.pt")
    assert any(k.startswith("backbone.image_encoder.") for k in sd)
    import clinloop.models.litemedsam as lm

    real = lm.build_litemedsam
    monkeypatch.setattr(lm, "build_litemedsam", lambda checkpoint=True, eval_mode=True: real(None, eval_mode))
    loaded = load_spa_net(tmp_path / "m")
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(loaded.backbone.image_encoder.state_dict()[k], v.half().float() if v.is_floating_point() else v)
    assert loaded.backbone.image_encoder.weights_id.startswith("spa-ft-")  # own embedding-cache key
