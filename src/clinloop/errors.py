"""Exceptions raised on bad input. All are ``ValueError`` subclasses so callers
that only know the standard library still catch them; the CLI turns them into a
one-line message and a non-zero exit."""
from __future__ import annotations

from pathlib import Path


class ClinloopError(ValueError):
    """Base class for clinloop's input errors."""


class DataError(ClinloopError):
    """A file or array could not be used as data. The message names the file
    (when there is one) and the problem."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class UnknownFormatError(DataError):
    """No reader recognises a path (or the requested format does not exist)."""
