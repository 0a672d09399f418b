"""Interactive LiteMedSAM baselines for the SPA protocol.

* ``box-litemedsam``: the pretrained LiteMedSAM (box-prompted, as MedSAM was
  trained). The first interaction is a box (:meth:`LiteMedSAMState.box`, from
  the simulated user's tight box); later interactions are clicks; the previous
  low-res logits are fed back as the mask prompt (SAM's interactive loop).
* ``click-litemedsam``: the same loop with clicks only, using a fine-tuned
  prompt encoder / mask decoder state loaded from a model folder
  (``weights.pt`` with keys ``prompt_encoder.*`` / ``mask_decoder.*``, an
  optional ``backbone.`` prefix is stripped); without a folder, the pretrained
  decoder (which was never trained on points, so expect poor clicks).

Clicks accumulate as point prompts. Proposals are at the input size
(LiteMedSAM's ``postprocess_logits``); ``candidates`` is ``None``.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clinloop.interaction.proposal import Proposal


class LiteMedSAMState:
    def __init__(self, model: "InteractiveLiteMedSAM", image: np.ndarray) -> None:
        from clinloop.models.litemedsam.preprocess import preprocess

        if image.ndim != 3:
            raise ValueError(f"{model.name} segments 2-D images; got an image of shape {image.shape[1:]}")
        self.model = model
        self.x, self.info = preprocess(image)
        self.e_x = model.embedding(self.x)
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.boxm: np.ndarray | None = None
        self.logits: torch.Tensor | None = None

    def box(self, box) -> Proposal:
        """A box prompt ``(x0, y0, x1, y1)`` (inclusive input pixels)."""
        from clinloop.models.litemedsam.preprocess import box_to_model

        if not self.model.accepts_box:
            raise ValueError(f"{self.model.name} takes clicks only, not boxes")
        self.boxm = box_to_model(box, self.info)
        return self._step()

    def click(self, point, positive: bool) -> Proposal:
        from clinloop.models.litemedsam.preprocess import points_to_model

        if len(point) != 2:
            raise ValueError(f"{self.model.name} takes 2-D points (x, y); got {tuple(point)}")
        self.points.append(tuple(points_to_model([point], self.info)[0]))
        self.labels.append(1 if positive else 0)
        return self._step()

    def choose(self, k: int) -> Proposal:
        raise ValueError(f"{self.model.name} offers no candidates to choose from")

    def hint(self, points) -> Proposal:
        raise ValueError(f"{self.model.name} takes single clicks, not hint maps")

    def profile(self) -> dict[str, Any]:
        return {"method": self.model.name}

    @torch.inference_mode()
    def _step(self) -> Proposal:
        from clinloop.models.litemedsam.preprocess import postprocess_logits

        net = self.model.net
        pts = None
        if self.points:
            pts = (torch.tensor([self.points], dtype=torch.float32), torch.tensor([self.labels], dtype=torch.long))
        box = None if self.boxm is None else torch.tensor(self.boxm[None], dtype=torch.float32)
        logits, _ = net.decode(self.e_x, points=pts, boxes=box, masks=self.logits, multimask_output=False)
        self.logits = logits[:, :1]
        p = torch.sigmoid(postprocess_logits(self.logits[0, 0], self.info))
        return Proposal(mask=(p > 0.5).numpy(), probability=p.numpy().astype(np.float32),
                        uncertainty=(4 * p * (1 - p)).numpy().astype(np.float32), extra={"method": self.model.name})


class InteractiveLiteMedSAM:
    """``InteractiveModel`` wrapper; ``accepts_box`` distinguishes the two baselines."""

    spatial_ndims = (2,)

    def __init__(self, net, name: str, accepts_box: bool) -> None:
        self.net, self.name, self.accepts_box = net.eval(), name, accepts_box
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        from clinloop.models.litemedsam.cache import embed

        key = hashlib.sha1(x.numpy().tobytes()).hexdigest()
        if key not in self._cache:
            self._cache[key] = embed([x], self.net, cache=True, progress=False)
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
        return self._cache[key]

    def start(self, image: np.ndarray, *, seed: int = 0, profile: dict[str, Any] | None = None) -> LiteMedSAMState:
        return LiteMedSAMState(self, np.asarray(image, dtype=np.float32))


def load_box_litemedsam(folder: str | Path | None = None) -> InteractiveLiteMedSAM:
    """Pretrained LiteMedSAM, box first (``folder`` is accepted for the registry and ignored)."""
    from clinloop.models.litemedsam import build_litemedsam

    return InteractiveLiteMedSAM(build_litemedsam(True), "box-litemedsam", accepts_box=True)


def load_click_litemedsam(folder: str | Path | None = None) -> InteractiveLiteMedSAM:
    """LiteMedSAM with the fine-tuned prompt encoder / decoder of ``folder/weights.pt`` (``folder`` None: the
    pretrained one; a folder without ``weights.pt`` is a ``DataError`` naming the file, as for SPA)."""
    from clinloop.errors import DataError
    from clinloop.models.litemedsam import build_litemedsam
    from clinloop.models.litemedsam.compact import read_weights, weights_file

    path = None if folder is None else weights_file(folder)
    net = build_litemedsam(True)
    if path is not None:
        sd = {k.removeprefix("backbone."): v for k, v in read_weights(path).items()}
        sd = {k: v for k, v in sd.items() if k.startswith(("prompt_encoder.", "mask_decoder."))}
        if not sd:
            raise DataError("no prompt_encoder.* / mask_decoder.* weights in the file", path)
        missing, unexpected = net.load_state_dict(sd, strict=False)
        if unexpected:
            raise DataError(f"unexpected keys {unexpected[:3]}", path)
    return InteractiveLiteMedSAM(net, "click-litemedsam", accepts_box=False)
