"""A learnt token per structure (our addition; SPA has none): one set of weights for
every structure a general model was trained on, told which structure it segments.

A general SPA model (``clinloop train --mix``) shares its decoder between a lung nodule,
an optic cup and a brain tumour; on LIDC it stays below the model trained on LIDC alone
(docs/methods/spa.md, "Where the LIDC gap lies"). With ``SPAConfig.structures`` the net
learns one vector ``t_s (C,)`` per structure ``s`` and adds it to the dense prompt
embedding, which SAM's decoder adds to every image token (as it adds its learnt
``no_mask_embed`` when no mask prompt is given):

    dense_s = E_I(mask prompt) + t_s           (broadcast over the 64 x 64 positions)

``t_0`` is the zero vector and never learns (``padding_idx``): a structure the model
was not trained on, or none given, gets exactly the decoder's generic answer, and a
fresh token table is the identity on the model it is added to (a warm start begins
where its init ended). Training drops the token for a share of the episodes
(``--structure-drop``) so that the generic answer keeps working.

Which structure a case is comes from its reader (``MultiRaterSample.structure``:
"nodule", "disc", "cup", "whole tumour", "left atrium", ...), matched without regard to
case or surrounding blanks; so Drishti-GS1's disc and cup use the tokens the RIGA
photos taught.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def normalise_structure(name: str | None) -> str:
    """The key a structure name is matched by: stripped, lower case ('' for None)."""
    return "" if name is None else str(name).strip().lower()


def check_structures(structures: Sequence[str]) -> None:
    """Non-empty names, unique after :func:`normalise_structure`; else a ValueError naming them."""
    keys = [normalise_structure(s) for s in structures]
    if any(not k for k in keys):
        raise ValueError(f"structure names must be non-empty; got {list(structures)!r}")
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"structure names must be unique (case-insensitive); repeated: {', '.join(dup)}")


class StructureToken(nn.Module):
    """``t_s``: one ``(C,)`` vector per structure, added to the dense prompt embedding.

    ``structures``: the names, in the order of their indices 1 .. S (index 0: none)."""

    def __init__(self, structures: Sequence[str], channels: int) -> None:
        super().__init__()
        check_structures(structures)
        self.structures = [str(s) for s in structures]
        self._index = {normalise_structure(s): i + 1 for i, s in enumerate(self.structures)}
        self.embed = nn.Embedding(len(self.structures) + 1, channels, padding_idx=0)
        nn.init.zeros_(self.embed.weight)

    def index(self, name: str | None) -> int:
        """The token index of structure ``name``: 0 (no token) when it is None or not learnt."""
        return self._index.get(normalise_structure(name), 0)

    def forward(self, dense: torch.Tensor, index: int) -> torch.Tensor:
        """``dense (B, C, h, w)`` + ``t_index`` (``index`` 0 returns ``dense`` itself)."""
        if not 0 <= int(index) <= len(self.structures):
            raise ValueError(f"structure index {index} out of range 0..{len(self.structures)}")
        if int(index) == 0:
            return dense
        t = self.embed.weight[int(index)]
        return dense + t.to(dense.dtype)[None, :, None, None]
