"""LEXU constants shared by the config, the networks and the trainer (no imports:
every other LEXU module may import this one without a cycle)."""
from __future__ import annotations

METHODS = ("lexu", "unet", "ensemble", "layer-ensemble", "mc-dropout")
ENCODERS = ("cnn", "tinyvit")
TINYVIT_SIZE = 256
DEFAULT_WIDTHS = {"cnn": [16, 24, 32, 48, 64, 96], "tinyvit": [16, 32, 48, 64, 96]}
