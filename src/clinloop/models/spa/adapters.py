"""Low-rank decoder adapters per structure (our addition; SPA has none): a general model
with a decoder change of its own for each structure it was trained on.

The structure token of :mod:`.structure` (``t_s``, 256 numbers added to the dense
prompt) did not lift a general model's LIDC Dice (docs/methods/spa.md, "Nor, in a first
run, does a token per structure"). With ``SPAConfig.structure_rank = r > 0`` every linear
layer ``W`` of the mask decoder's two-way transformer and of its first output
hypernetwork (the one the tail path decodes with) gets, per structure ``s``, a rank-``r``
change (LoRA, Hu et al. 2021):

    W_s x = W x + (alpha / r) B_s A_s x,     A_s (r, in), B_s (out, r)

``B_s`` starts at zero, so a fresh set of adapters is the identity on the model it is
added to (as the token is); index 0 (no structure, or one the model has no adapter for)
is ``W`` itself. Trained with ``--structure-only`` the shared weights stay frozen: the
generic answer, and every structure without its own adapter, remain exactly the init's,
and each structure's adapter learns only from that structure's episodes.

Which structure is active is a per-thread scope (:func:`structure_scope`): the layers'
forward hooks read it, so the backbone's modules keep their signatures and state-dict
keys. :meth:`clinloop.models.spa.model.SPANet.structure_scope` opens it around a step's
decoding (sessions, volume slices, training episodes); threads (the server's sessions)
do not see each other's scope.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

ALPHA = 8.0  # alpha: the update's scale is alpha / r (LoRA's convention; r = 8 gives 1)
_ACTIVE = threading.local()


def active_structure() -> int:
    """The structure index decoding uses in this thread now (0: none)."""
    return getattr(_ACTIVE, "index", 0)


@contextmanager
def structure_scope(index: int) -> Iterator[None]:
    """Decode with structure ``index``'s adapters in this thread (0: none) until the block ends."""
    previous = active_structure()
    _ACTIVE.index = int(index)
    try:
        yield
    finally:
        _ACTIVE.index = previous


def adapter_targets(decoder: nn.Module) -> dict[str, nn.Linear]:
    """The linear layers that get adapters: the transformer's and output hypernetwork 0's, by name."""
    out = {}
    for name, m in decoder.named_modules():
        if isinstance(m, nn.Linear) and (name.startswith("transformer.")
                                         or name.startswith("output_hypernetworks_mlps.0.")):
            out[name] = m
    return out


class LowRankDelta(nn.Module):
    """``(alpha / r) B_s A_s x`` for one linear layer, one ``(A_s, B_s)`` per structure ``s = 1..S``."""

    def __init__(self, linear: nn.Linear, n_structures: int, rank: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.empty(n_structures, rank, linear.in_features))
        self.b = nn.Parameter(torch.zeros(n_structures, linear.out_features, rank))
        bound = 1 / math.sqrt(linear.in_features)  # nn.Linear's own initial range; B = 0 keeps W_s = W
        nn.init.uniform_(self.a, -bound, bound)
        self.scale = ALPHA / rank

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        """Forward hook of the adapted layer: ``W x`` plus structure ``s``'s change (None: unchanged)."""
        s = active_structure()
        if not s:
            return None
        if s > self.a.shape[0]:
            raise ValueError(f"structure index {s} out of range 1..{self.a.shape[0]}")
        x = args[0]
        a, b = self.a[s - 1].to(x.dtype), self.b[s - 1].to(x.dtype)
        return output + self.scale * F.linear(F.linear(x, a), b)


class StructureAdapters(nn.Module):
    """The adapters of ``decoder`` (``mask_decoder``) for ``n_structures`` structures at rank ``rank``."""

    def __init__(self, decoder: nn.Module, n_structures: int, rank: int) -> None:
        super().__init__()
        if n_structures < 1 or rank < 1:
            raise ValueError(f"structure adapters need >= 1 structure and rank >= 1; got {n_structures}, {rank}")
        self.rank = int(rank)
        targets = adapter_targets(decoder)
        # "." is not allowed in a module name: transformer.layers.0.mlp.lin1 -> transformer__layers__0__mlp__lin1
        self.deltas = nn.ModuleDict({k.replace(".", "__"): LowRankDelta(m, n_structures, rank)
                                     for k, m in targets.items()})
        self._handles = [m.register_forward_hook(self.deltas[k.replace(".", "__")].hook) for k, m in targets.items()]

    def remove(self) -> None:
        """Detach the hooks (the decoder runs as if without adapters)."""
        for h in self._handles:
            h.remove()
        self._handles = []
