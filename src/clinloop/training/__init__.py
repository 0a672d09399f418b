"""Trainers, one module per method family (``clinloop train --method M``)."""
from __future__ import annotations

import sys
from pathlib import Path


def finished_model(out: str | Path, resume: bool) -> bool:
    """Check a trainer's ``--out`` folder before training.

    Returns True when it already holds a finished model (``weights.pt`` and no
    ``checkpoint.pt``) and ``--resume`` was given: there is nothing to do.
    Raises ``ValueError`` when it holds a model and ``--resume`` was not given
    (never overwrite a trained model). False otherwise: train (resuming from
    ``checkpoint.pt`` if the trainer finds one)."""
    out = Path(out)
    if not (out / "weights.pt").is_file():
        return False
    if not resume:
        raise ValueError(f"{out}: already holds a trained model (weights.pt); choose another --out")
    if (out / "checkpoint.pt").is_file():
        return False
    print(f"{out}: training already finished; nothing to resume", file=sys.stderr)
    return True


def resolve_device(name: str):
    """``--device`` -> ``torch.device``; a clear ``ValueError`` when it does not exist on this machine
    (e.g. ``cuda`` on the CPU-only build), instead of a failure deep inside the first step."""
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps): {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: unsupported device type {dev.type!r} (cpu, cuda, mps)")
    return dev


def cpu_only(name: str, method: str) -> None:
    """``--device`` of a trainer that runs on the CPU only (MECCA's rollouts): a clear ``ValueError`` for
    any other device, and (through :func:`resolve_device`) for a name that is not a device."""
    if resolve_device(name).type != "cpu":
        raise ValueError(f"--device {name}: --method {method} trains on the CPU only; use --device cpu")
