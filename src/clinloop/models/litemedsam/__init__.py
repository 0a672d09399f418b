"""LiteMedSAM (MedSAM's TinyViT-based lite variant), our own implementation that
loads the pretrained checkpoint with ``strict=True``.

Components (one module each): :mod:`.image_encoder` (TinyViT),
:mod:`.prompt_encoder`, :mod:`.transformer`, :mod:`.mask_decoder`; assembly in
:mod:`.build`; weights in :mod:`.weights`; input handling in
:mod:`.preprocess`; the on-disk embedding cache in :mod:`.cache`; how the
encoder runs (ONNX Runtime or torch eager) in :mod:`.encoder_runtime`; the stateful
:class:`~.predictor.LiteMedSAMPredictor` in :mod:`.predictor`.
"""
from .build import MODEL_REGISTRY, LiteMedSAM, build_litemedsam
from .weights import WeightsNotFoundError, weights_available

__all__ = ["LiteMedSAM", "MODEL_REGISTRY", "build_litemedsam", "WeightsNotFoundError", "weights_available",
           "LiteMedSAMPredictor"]


def __getattr__(name):  # keep the predictor (and its cache/tqdm imports) lazy
    if name == "LiteMedSAMPredictor":
        from .predictor import LiteMedSAMPredictor
        return LiteMedSAMPredictor
    raise AttributeError(name)
