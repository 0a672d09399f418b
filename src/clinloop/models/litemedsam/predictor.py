"""``LiteMedSAMPredictor``: the stateful front end (segment-anything's
``SamPredictor``). Not an ``nn.Module``: it holds a model, the current image's
embedding and how the image maps to the model frame.

``set_image`` preprocesses and embeds once (through the on-disk cache; the
encoder runs in ONNX Runtime or torch eager, see :mod:`.encoder_runtime`);
``predict`` answers any number of prompts in *input-image pixels* and returns
masks at the input size plus the low-resolution logits to feed back as the
next ``mask_input``. Frames are documented in :mod:`.preprocess`.
"""
from __future__ import annotations

import numpy as np
import torch

from .build import LiteMedSAM, build_litemedsam
from .cache import EmbeddingCache, embed
from .preprocess import IMG_SIZE, ResizeInfo, box_to_model, points_to_model, postprocess_logits, preprocess, resize_info

NOT_SET = "An image must be set with .set_image(...) before predict"


class LiteMedSAMPredictor:
    """``LiteMedSAMPredictor(model=None, cache=True)``; ``model=None`` builds the
    pretrained LiteMedSAM. ``cache``: True (default on-disk cache), an
    :class:`~.cache.EmbeddingCache`, or False."""

    def __init__(self, model: LiteMedSAM | None = None, cache: bool | EmbeddingCache = True) -> None:
        self.model = model if model is not None else build_litemedsam(True)
        self.cache = cache
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def reset_image(self) -> None:
        self.embedding: torch.Tensor | None = None  # (1, 256, 64, 64)
        self.info: ResizeInfo | None = None
        self.input_image: torch.Tensor | None = None  # (3, 256, 256) preprocessed

    @property
    def is_image_set(self) -> bool:
        return self.embedding is not None

    @property
    def original_size(self) -> tuple[int, int]:
        self._require_image()
        return self.info.original_size

    def set_image(self, image) -> None:
        """``image``: (H, W) grey (any dtype, e.g. CT in HU), (H, W, 3) RGB, or
        (1|3, H, W). Computes (or loads from the cache) its embedding."""
        x, info = preprocess(image, IMG_SIZE)
        self.reset_image()
        self.embedding = embed(x[None], self.model, cache=self.cache, progress=False)
        self.info, self.input_image = info, x

    def set_embedding(self, embedding: torch.Tensor, original_size: tuple[int, int]) -> None:
        """Use a precomputed embedding ``(256, 64, 64)`` or ``(1, 256, 64, 64)`` of an
        image of size ``original_size`` = (H, W) (e.g. from :func:`.cache.embed`)."""
        e = torch.as_tensor(embedding, dtype=torch.float32)
        if e.ndim == 3:
            e = e[None]
        if tuple(e.shape) != (1, 256, 64, 64):
            raise ValueError(f"embedding must be (256, 64, 64) or (1, 256, 64, 64); got {tuple(e.shape)}")
        self.reset_image()
        self.embedding, self.info = e.to(self.device), resize_info(original_size)

    def _require_image(self) -> None:
        if self.embedding is None:
            raise ValueError(NOT_SET)

    def predict(self, points=None, point_labels=None, box=None, mask_input=None, multimask_output: bool = False,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment the current image from prompts in input-image pixels.

        Arguments:
          points: ``(N, 2)`` as (x, y) = (column, row); needs ``point_labels``.
          point_labels: ``(N,)``, 1 = foreground click, 0 = background click.
          box: ``(4,)`` x0, y0, x1, y1, inclusive pixel corners.
          mask_input: ``(256, 256)`` or ``(1, 256, 256)`` low-res logits from a
            previous call (model frame), fed back as the dense prompt.
          multimask_output: 3 masks (ambiguity-aware) instead of 1.
          return_logits: return the input-size logits instead of boolean masks.

        Returns ``masks (M, H, W)`` bool (or float logits), ``iou (M,)`` float32
        predicted IoU, ``lowres (M, 256, 256)`` float32 logits in the model frame;
        M = 3 with ``multimask_output``, else 1.
        """
        self._require_image()
        pts = lab = bx = msk = None
        if (points is None) != (point_labels is None):
            raise ValueError("points and point_labels must be given together")
        if points is not None:
            p = np.asarray(points, dtype=np.float64)
            lab_np = np.asarray(point_labels)
            if p.ndim != 2 or p.shape[1] != 2:
                raise ValueError(f"points must be (N, 2) as (x, y); got shape {p.shape}")
            if lab_np.shape != (p.shape[0],):
                raise ValueError(f"point_labels must be ({p.shape[0]},) for {p.shape[0]} points; got shape {lab_np.shape}")
            if not np.isin(lab_np, (0, 1)).all():
                raise ValueError(f"point_labels must be 1 (foreground) or 0 (background); got {np.unique(lab_np).tolist()}")
            if not np.isfinite(p).all():
                raise ValueError("points contain NaN or infinite values")
            pts = torch.tensor(points_to_model(p, self.info), dtype=torch.float32, device=self.device)[None]
            lab = torch.tensor(lab_np, dtype=torch.int64, device=self.device)[None]
        if box is not None:
            b = np.asarray(box, dtype=np.float64)
            if b.shape != (4,) or not np.isfinite(b).all():
                raise ValueError(f"box must be 4 finite numbers x0, y0, x1, y1; got {b.tolist() if b.size < 9 else b.shape}")
            bx = torch.tensor(box_to_model(b, self.info), dtype=torch.float32, device=self.device)[None]
        if mask_input is not None:
            m = torch.as_tensor(np.asarray(mask_input), dtype=torch.float32)
            if m.ndim == 2:
                m = m[None]
            if tuple(m.shape) != (1, IMG_SIZE, IMG_SIZE):
                raise ValueError(f"mask_input must be low-res logits (256, 256) or (1, 256, 256); got {tuple(m.shape)}")
            msk = m[None].to(self.device)
        lowres, iou = self.predict_torch(None if pts is None else (pts, lab), bx, msk, multimask_output)
        logits = postprocess_logits(lowres[0], self.info)
        out = logits.cpu().numpy() if return_logits else (logits > 0).cpu().numpy()
        return out, iou[0].cpu().numpy().astype(np.float32), lowres[0].cpu().numpy().astype(np.float32)

    def predict_torch(self, points: tuple[torch.Tensor, torch.Tensor] | None = None, boxes: torch.Tensor | None = None,
                      mask_input: torch.Tensor | None = None, multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched decoding of B prompt sets in the *model frame* against the one
        image embedding (shared, not copied): ``points`` ((B, N, 2), (B, N)),
        ``boxes (B, 4)``, ``mask_input (B, 1, 256, 256)``. Returns low-res logits
        ``(B, M, 256, 256)`` and IoU ``(B, M)``. Runs without autograd."""
        self._require_image()
        with torch.inference_mode():
            return self.model.decode(self.embedding, points, boxes, mask_input, multimask_output)
