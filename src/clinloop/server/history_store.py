"""Versioned history writes on top of :class:`~clinloop.server.store.Store`.

A live session remembers the history it was built from (or last wrote); a
write succeeds only while the stored history is still that one
(compare-and-set in one SQL statement), so a stale in-memory copy — e.g. one
rebuilt by a second process on the same state folder — can never overwrite
actions another copy already acknowledged. The comparison is on SQLite's
canonical JSON (``json(...)``), so it does not depend on how the text was
formatted.

(Merge note: these two methods belong in ``store.Store``; they live in a
subclass here only because the store module is edited elsewhere.)
"""
from __future__ import annotations

import json
import time
from typing import Any

from clinloop.server.store import Store


class ServerStore(Store):
    """``Store`` plus compare-and-set history writes."""

    def save_history_if(self, sid: str, expected: list[dict[str, Any]], history: list[dict[str, Any]],
                        status: str) -> bool:
        """Write ``history``/``status`` only if the stored history equals ``expected``.
        Returns False (nothing written) when it does not (a stale copy)."""
        rows = self._q("UPDATE sessions SET history=?, status=?, updated=? WHERE id=? AND json(history)=json(?)"
                       " RETURNING id", (json.dumps(history), status, time.time(), sid, json.dumps(expected)))
        return bool(rows)

    def history_is(self, sid: str, expected: list[dict[str, Any]]) -> bool:
        """Whether the stored history of ``sid`` equals ``expected``."""
        return bool(self._q("SELECT 1 FROM sessions WHERE id=? AND json(history)=json(?)", (sid, json.dumps(expected))))
