"""clinloop: uncertainty-aware, clinician-in-the-loop medical image segmentation.

Heavy parts (torch models, the server) are imported lazily so that
``import clinloop`` and the data/metrics API stay fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "Session", "train", "evaluate", "predict", "benchmark"]


def __getattr__(name):  # PEP 562 lazy attributes
    if name == "load_model":
        from clinloop.models.registry import load_model

        return load_model
    if name in ("train", "evaluate", "predict", "benchmark"):  # the Python API (clinloop.api)
        from clinloop import api

        return getattr(api, name)
    if name == "Session":
        from clinloop.interaction.session import Session

        return Session
    raise AttributeError(f"module 'clinloop' has no attribute {name!r}")
