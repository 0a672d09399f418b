"""Where the browser UI's files live (``/`` and ``/static``)."""
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
