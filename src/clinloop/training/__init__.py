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
