"""Shared fixtures. Tests that need the real datasets use ``shared_data`` and
are skipped, with the reason, where ``../shared/data`` is absent."""
from __future__ import annotations

import os

import numpy as np
import pytest

# keep CPU tests deterministic and within the 2 cores CI has
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_data():
    from clinloop.paths import shared_data_dir

    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data (the development datasets) is not present; set CLINLOOP_SHARED_DATA")
    return d


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Caches (embeddings etc.) go to a per-session temp folder, never ~/.cache."""
    monkeypatch.setenv("CLINLOOP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
