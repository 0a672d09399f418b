"""Method registries for ``clinloop train`` and ``clinloop evaluate``.

``train --method M`` imports ``TRAINERS[M]``, a module exposing
``add_train_arguments(parser)`` and ``run_train(args) -> int``.
``evaluate --protocol P`` imports ``PROTOCOLS[P]``, a module exposing
``METHODS`` (names it evaluates), ``add_arguments(parser)`` and
``run(args) -> int``. Method-specific flags are therefore declared by the
method's own module, next to the code that uses them.
"""
from __future__ import annotations

import argparse
import importlib

TRAINERS = {
    "spa": "clinloop.training.spa",
    "meduhip": "clinloop.training.spa",
    "spa-random-gmm": "clinloop.training.spa",
    "spa-mean-variance": "clinloop.training.spa",
    "spa-weights": "clinloop.training.spa",
    "click-litemedsam": "clinloop.training.click_litemedsam",
    "lexu": "clinloop.training.lexu",
    "unet": "clinloop.training.lexu",
    "ensemble": "clinloop.training.lexu",
    "layer-ensemble": "clinloop.training.lexu",
    "mc-dropout": "clinloop.training.lexu",
    "mecca": "clinloop.training.mecca",
    "mecca-no-confidence": "clinloop.training.mecca",
    "interactive-cnn": "clinloop.training.mecca",
    "mecca-unet": "clinloop.training.mecca",
}

PROTOCOLS = {
    "spa": "clinloop.evaluation.spa_protocol",
    "lexu": "clinloop.evaluation.lexu_protocol",
    "mecca": "clinloop.evaluation.mecca_protocol",
}


def load(registry: dict[str, str], key: str, what: str):
    if key not in registry:
        raise ValueError(f"unknown {what} {key!r}; choose from {', '.join(sorted(registry))}")
    try:
        return importlib.import_module(registry[key])
    except ModuleNotFoundError as e:
        if e.name == registry[key]:
            raise ValueError(f"{what} {key!r} is not available in this build ({registry[key]} missing)") from e
        raise
