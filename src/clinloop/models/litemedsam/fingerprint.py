"""Names of encoder weights: the key of the embedding cache and of the ONNX export.

Its own module because both :mod:`.cache` and :mod:`.encoder_runtime` need it and
the cache calls the runtime (no import cycle).
"""
from __future__ import annotations

import hashlib

import numpy as np
from torch import nn


def encoder_id(encoder: nn.Module) -> str:
    """Name of an encoder's weights: its ``weights_id`` attribute, else a sha256
    fingerprint of its state dict (so fine-tuned or random encoders never share
    entries with the pretrained one)."""
    if getattr(encoder, "image_encoder", None) is not None:  # a whole LiteMedSAM
        encoder = encoder.image_encoder
    wid = getattr(encoder, "weights_id", None)
    if wid:
        return str(wid)
    h = hashlib.sha256(repr(getattr(encoder, "config", type(encoder).__name__)).encode())
    for k, v in encoder.state_dict().items():
        h.update(k.encode())
        h.update(np.ascontiguousarray(v.detach().cpu().numpy()).tobytes())
    return "enc-" + h.hexdigest()[:16]
