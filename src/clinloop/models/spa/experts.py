"""Structure experts (our addition; SPA has none): a general model that decodes one structure
with a specialist's weights, kept as a low-rank change of its own.

A general SPA model shares every weight between a lung nodule, an optic cup and a brain
tumour; trained for corrective clicks and eight structures it stays below the model trained on
LIDC alone on LIDC's candidate choices (docs/methods/spa.md, "Where the LIDC gap lies" and
what follows), and neither more training, weight averaging, a structure token nor trained
decoder adapters (:mod:`.adapters`) closed the gap. What does close it is the specialist's
own change: with ``SPAConfig.expert_rank = r > 0`` the net holds, per structure ``s``, the
difference to a specialist ``Δ_s = θ_spec − θ_gen`` for every tensor of the trainable parts
(prompt encoder E_I, mask decoder, preference conditioning, distribution generator):

* a 2-D weight with both sides larger than ``r`` as its best rank-``r`` approximation
  ``B_s A_s`` (truncated SVD: the closest rank-``r`` matrix in the Frobenius norm,
  Eckart-Young), ``A_s = sqrt(S_r) V_r^T``, ``B_s = U_r sqrt(S_r)``;
* every other tensor (biases, layer norms, tokens, convolutions) in full.

Inside structure ``s``'s scope (:func:`clinloop.models.spa.adapters.structure_scope`, opened
by sessions around a step) the net decodes with ``θ_gen + Δ_s``: a merged copy of the four
parts, made once per structure and cached (read-only; threads share it). Index 0 (no structure,
or one without an expert) decodes with ``θ_gen`` itself, so every other structure keeps the
general model's answers exactly.

Experts are extracted (:mod:`clinloop.training.spa_experts`, ``clinloop extract-expert``), not
trained. ``SPAConfig.structure_route = "until-corrected"`` (what extraction writes) decodes a
session's steps with the expert only until its first corrective click: the specialist was
trained on first clicks and candidate choices, the shared weights on corrective clicks too.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

PARTS = ("backbone.prompt_encoder", "backbone.mask_decoder", "conditioning", "variant")


def part_tensors(net: nn.Module) -> dict[str, torch.Tensor]:
    """The floating tensors of the parts an expert changes, by state-dict key."""
    return {k: v for k, v in net.state_dict().items() if k.startswith(tuple(p + "." for p in PARTS))
            and v.is_floating_point()}


def is_low_rank(shape: torch.Size, rank: int) -> bool:
    """Whether a tensor of ``shape`` is kept at rank ``rank`` (a matrix with both sides larger than it)."""
    return len(shape) == 2 and min(shape) > rank


def low_rank_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(A (r, in), B (out, r), kept)`` with ``B A`` the best rank-``r`` approximation of ``delta (out, in)``
    and ``kept`` its squared Frobenius norm (the sum of the ``r`` largest squared singular values)."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (root[:, None] * vh[:rank]).float(), (u[:, :rank] * root).float(), float(s[:rank].pow(2).sum())


class _Delta(nn.Module):
    """One tensor's change per structure: ``a (S, r, in)`` and ``b (S, out, r)``, or ``d (S, *shape)``."""

    def __init__(self, shape: torch.Size, n_structures: int, rank: int) -> None:
        super().__init__()
        if is_low_rank(shape, rank):
            self.register_buffer("a", torch.zeros(n_structures, rank, shape[1]))
            self.register_buffer("b", torch.zeros(n_structures, shape[0], rank))
        else:
            self.register_buffer("d", torch.zeros(n_structures, *shape))

    def value(self, s: int) -> torch.Tensor:
        """Δ_s (structure index ``s`` >= 1)."""
        if hasattr(self, "d"):
            return self.d[s - 1]
        return self.b[s - 1] @ self.a[s - 1]

    def set(self, s: int, delta: torch.Tensor, rank: int) -> tuple[float, float]:
        """Store ``delta`` as structure ``s``'s change (rank-``rank`` factors or in full); returns the squared
        norms ``(kept, total)`` of the stored change and of ``delta``."""
        total = float(delta.double().pow(2).sum())
        if hasattr(self, "d"):
            self.d[s - 1] = delta
            return total, total
        a, b, kept = low_rank_factors(delta, rank)
        self.a[s - 1], self.b[s - 1] = a, b
        return kept, total


def _key(name: str) -> str:
    return name.replace(".", "__")  # "." is not allowed in a module name


class StructureExperts(nn.Module):
    """Δ_s for ``n_structures`` structures at rank ``rank`` over the tensors of ``net``'s parts."""

    def __init__(self, net: nn.Module, n_structures: int, rank: int) -> None:
        super().__init__()
        if n_structures < 1 or rank < 1:
            raise ValueError(f"structure experts need >= 1 structure and rank >= 1; got {n_structures}, {rank}")
        self.rank = int(rank)
        self.names = list(part_tensors(net))
        self.deltas = nn.ModuleDict({_key(k): _Delta(v.shape, n_structures, rank)
                                     for k, v in part_tensors(net).items()})
        self._merged: dict[int, dict[str, nn.Module]] = {}
        # the net's load_state_dict reaches this hook too: new weights, merge again
        self.register_load_state_dict_post_hook(lambda m, _: m.clear())

    def _apply(self, fn, *args, **kwargs):
        self.clear()  # the net moved or cast (this runs for every submodule): merge again
        return super()._apply(fn, *args, **kwargs)

    def clear(self) -> None:
        """Forget the merged copies (after the net's or the experts' tensors change)."""
        self._merged.clear()

    def set_expert(self, s: int, general: dict[str, torch.Tensor],
                   specialist: dict[str, torch.Tensor]) -> float:
        """Δ_s = specialist − general for every tensor (both: :func:`part_tensors` of nets of one architecture).
        Returns the share of ||Δ_s||² the stored change keeps (1 when every tensor is kept in full)."""
        kept = total = 0.0
        for k in self.names:
            if specialist[k].shape != general[k].shape:
                raise ValueError(f"tensor {k!r} has shape {tuple(specialist[k].shape)} in the specialist but "
                                 f"{tuple(general[k].shape)} in the general model")
            k_kept, k_total = self.deltas[_key(k)].set(s, specialist[k].float() - general[k].float(), self.rank)
            kept, total = kept + k_kept, total + k_total
        self.clear()
        return kept / total if total else 1.0

    def has_expert(self, s: int) -> bool:
        """Whether structure ``s`` has a non-zero change."""
        return any(bool(t[s - 1].any()) for m in self.deltas.values() for t in m.buffers())

    def merged(self, net: nn.Module, s: int) -> dict[str, nn.Module]:
        """The parts of ``net`` with θ + Δ_s (``PARTS`` name -> module), made once and cached (as ordinary
        tensors, also when first asked for inside ``torch.inference_mode``)."""
        if s not in self._merged:
            parts = {}
            with torch.inference_mode(False), torch.no_grad():
                for p in PARTS:
                    m = copy.deepcopy(net.get_submodule(p))
                    for name, t in [*m.named_parameters(), *m.named_buffers()]:
                        k = f"{p}.{name}"
                        if _key(k) in self.deltas:
                            t.add_(self.deltas[_key(k)].value(s).to(t.dtype))
                    parts[p] = m.requires_grad_(False).eval()
            self._merged[s] = parts
        return self._merged[s]
