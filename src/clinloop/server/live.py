"""Live sessions: the in-memory cache of rebuilt ``Session`` objects, one lock
per session, and the model queue (:class:`ModelGate`).

Serialisation that survives eviction
------------------------------------
Every request on a session runs inside ``LiveCache.use(sid, ...)``: it *pins*
the session's slot (a counter), takes the slot's lock, rebuilds the session by
replay when it is not in memory, and unpins on the way out. A pinned slot is
never evicted, so two requests on one session always share one lock and one
in-memory copy — the lock cannot be dropped with an evicted copy while
another request still holds it. When every cached session is pinned the cache
grows past its capacity until requests finish (it is bounded by the number of
requests in flight). A history write or an accept additionally names the
store revision its copy was built from (``Live.rev``, the store's
``expected_rev``), so even two processes on one state folder never overwrite
each other's actions silently: the stale copy's write is refused (409) and the
copy dropped.

The model queue
---------------
:class:`ModelGate` lets ``workers`` model computations run at once; others
wait. With ``queue_limit`` / ``queue_timeout`` the wait is bounded: a request
that would be queued behind ``queue_limit`` others, or waited ``queue_timeout``
seconds, raises :class:`Busy` (the server answers 503 with ``Retry-After``).
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterator

import numpy as np

from clinloop.interaction.session import Session


class Busy(Exception):
    """The model queue (or a session's lock) is full: retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = int(retry_after)


class ModelGate:
    """At most ``workers`` model computations at once; the others wait their turn.

    Every request runs in the ASGI thread pool (up to 40 threads). Without a gate,
    16 clinicians' steps ran together on 2 cores, each with torch's own threads:
    the cores thrashed and every step took 12-16x its idle time
    (``benchmarks/bench_server_burst.py``, docs/server.md). With the gate a
    step waits in line (reported as ``queue`` in the ``Server-Timing`` header)
    and then runs at full speed. Use ``with gate(request):`` (``request`` needs
    a ``.state`` namespace; ``queue_seconds``/``model_seconds`` are added to it).

    ``queue_limit``: at most this many requests wait (``None``: unbounded);
    ``queue_timeout``: seconds a request may wait (``None``: forever). Beyond
    either, :class:`Busy` is raised with a ``retry_after`` estimated from the
    mean model time.
    """

    def __init__(self, workers: int, queue_limit: int | None = None, queue_timeout: float | None = None) -> None:
        if workers < 1:
            raise ValueError(f"model_workers must be >= 1, got {workers}")
        if queue_limit is not None and queue_limit < 0:
            raise ValueError(f"queue_limit must be >= 0 or None, got {queue_limit}")
        if queue_timeout is not None and not queue_timeout > 0:
            raise ValueError(f"queue_timeout must be > 0 or None, got {queue_timeout}")
        self.workers, self.queue_limit, self.queue_timeout = workers, queue_limit, queue_timeout
        self._sem = threading.Semaphore(workers)
        self._lock = threading.Lock()
        self.waiting = 0  # requests queued now
        self.refused = 0  # requests answered Busy so far
        self._mean = 0.5  # running mean of one computation's seconds (for Retry-After)

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (1 .. 120)."""
        return int(min(120, max(1, math.ceil((self.waiting + 1) * self._mean / self.workers))))

    def _refuse(self, why: str) -> Busy:
        with self._lock:
            self.refused += 1
        ra = self.retry_after()
        return Busy(f"the model is busy ({why}); retry in {ra} s", ra)

    @contextlib.contextmanager
    def __call__(self, request: Any):
        t0 = time.perf_counter()
        if not self._sem.acquire(blocking=False):
            with self._lock:
                full = self.queue_limit is not None and self.waiting >= self.queue_limit
                if not full:
                    self.waiting += 1
            if full:
                raise self._refuse(f"{self.queue_limit} requests already waiting")
            try:
                got = self._sem.acquire(timeout=self.queue_timeout)
            finally:
                with self._lock:
                    self.waiting -= 1
            if not got:
                raise self._refuse(f"waited {self.queue_timeout:g} s for a model worker")
        t1 = time.perf_counter()
        request.state.queue_seconds = getattr(request.state, "queue_seconds", 0.0) + (t1 - t0)
        try:
            yield
        finally:
            dt = time.perf_counter() - t1
            self._sem.release()
            self._mean = 0.9 * self._mean + 0.1 * dt
            request.state.model_seconds = getattr(request.state, "model_seconds", 0.0) + dt


def user_image(image: np.ndarray) -> np.ndarray:
    """Stored channels-first image -> what ``Session`` expects ((H,W), (H,W,3), (D,H,W))."""
    if image.ndim == 3:
        if image.shape[0] == 1:
            return image[0]
        if image.shape[0] == 2:  # e.g. grey + alpha-like channels: average to grey
            return image.mean(axis=0)
        return np.moveaxis(image[:3], 0, -1)  # RGB (extra channels dropped)
    if image.shape[0] != 1:
        raise ValueError(f"multi-channel volumes are not supported (shape {image.shape}); send one channel")
    return image[0]


def last_slice(history: list[dict[str, Any]]) -> int:
    """The slice of the latest action that names one (an ``(x, y, z)`` click, a box on slice ``z``, a hint's
    last point); 0 when none does (a 2-D session, or no action yet)."""
    for h in reversed(history):
        if len(h.get("point") or ()) == 3:
            return int(round(float(h["point"][2])))
        if len(h.get("box") or ()) == 5:
            return int(round(float(h["box"][4])))
        if h.get("points") and len(h["points"][-1][0]) == 3:
            return int(round(float(h["points"][-1][0][2])))
    return 0


class Live:
    """An in-memory session with its stored facts.

    ``row``: the store's session row; ``image``: channels-first float32;
    ``rev``: the store revision this copy was built from or last wrote — the
    one a history write or an accept must find there
    (:meth:`~clinloop.server.store.Store.save_history`'s ``expected_rev``); ``z``: last slice acted on (3-D);
    ``window``: the default display window (computed on first use)."""

    def __init__(self, session: Session, row: dict[str, Any], image: np.ndarray, meta: dict[str, Any]):
        self.session, self.row, self.image, self.meta = session, row, image, meta
        self.rev: int = int(row.get("rev") or 0)
        self.z = last_slice(row.get("history") or [])  # a session rebuilt by replay answers where it was
        self.window: tuple[float, float] | None = None

    @property
    def owner(self) -> str:
        return str(self.row["owner"])


class _Slot:
    __slots__ = ("lock", "pins", "live")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pins = 0
        self.live: Live | None = None


class LiveCache:
    """At most ``capacity`` unpinned sessions in memory (least recently used
    evicted first); see the module docstring. ``lock_timeout``: seconds a
    request waits for another request on the same session before :class:`Busy`."""

    def __init__(self, capacity: int, lock_timeout: float | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"live session cache size must be >= 1, got {capacity}")
        self.capacity, self.lock_timeout = int(capacity), lock_timeout
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._lru: OrderedDict[str, None] = OrderedDict()  # slots holding a Live, oldest first
        self.rebuilds = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._lru)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"sessions": len(self._lru), "capacity": self.capacity, "in_use": sum(s.pins > 0 for s in
                                                                                        self._slots.values()),
                    "rebuilds": self.rebuilds, "evictions": self.evictions}

    def _evict(self, keep: str | None = None) -> None:  # with self._lock held; ``keep``: just added
        if len(self._lru) <= self.capacity:
            return
        for sid in list(self._lru):
            if len(self._lru) <= self.capacity:
                break
            slot = self._slots.get(sid)
            if slot is not None and slot.pins == 0 and sid != keep:
                del self._lru[sid]
                del self._slots[sid]
                slot.live = None
                self.evictions += 1

    def add(self, sid: str, live: Live) -> None:
        """Cache a session that was just created."""
        with self._lock:
            slot = self._slots.setdefault(sid, _Slot())
            slot.live = live
            self._lru[sid] = None
            self._lru.move_to_end(sid)
            self._evict(keep=sid)

    def cached(self, sid: str) -> Live | None:
        """The in-memory copy, if any (no pinning: for tests and statistics)."""
        with self._lock:
            slot = self._slots.get(sid)
            return slot.live if slot is not None else None

    @contextlib.contextmanager
    def use(self, sid: str, owner: str, build: Callable[[], Live], not_found: Callable[[], Exception]) -> Iterator[Live]:
        """Pin session ``sid``, take its lock, rebuild it with ``build()`` when it
        is not in memory, yield it; unpin (and evict others) on exit. A cached
        copy owned by someone else raises ``not_found()`` (ids do not leak)."""
        with self._lock:
            slot = self._slots.setdefault(sid, _Slot())
            slot.pins += 1
            if slot.live is not None:
                self._lru.move_to_end(sid)
        try:
            if not slot.lock.acquire(timeout=-1 if self.lock_timeout is None else self.lock_timeout):
                raise Busy("another request on this session is still running; retry shortly", 2)
            try:
                if slot.live is None:
                    live = build()
                    with self._lock:
                        slot.live = live
                        self._lru[sid] = None
                        self.rebuilds += 1
                elif slot.live.owner != owner:
                    raise not_found()
                yield slot.live
            finally:
                slot.lock.release()
        finally:
            with self._lock:
                slot.pins -= 1
                if slot.pins == 0 and slot.live is None and self._slots.get(sid) is slot:
                    del self._slots[sid]  # a failed rebuild leaves nothing behind
                self._evict()

    def drop(self, sid: str) -> None:
        """Forget the in-memory copy (call with the session in use: it is rebuilt on next use)."""
        with self._lock:
            slot = self._slots.get(sid)
            if slot is not None:
                slot.live = None
                self._lru.pop(sid, None)
