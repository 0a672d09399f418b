"""Encode ahead: a background thread that encodes the slices a volumetric SPA step
(:mod:`clinloop.models.spa.volume`) is about to visit, while it decodes the ones it has.

The step walks from the anchor slice a outwards, first up (a+1, a+2, ...) then down
(a-1, a-2, ...). It tells the worker where it is (:meth:`EncodeAhead.at`) and when a
direction has ended (:meth:`EncodeAhead.stop`); the worker encodes, nearest first, the
slices up to ``ahead`` beyond each open direction's frontier, the walking direction
first. So it is **bounded** (at most ``ahead`` slices past each end of the structure
are encoded in vain) and **cancellable** (:meth:`EncodeAhead.cancel`: it stops after
the slice in hand). ``encode(t)`` is the step's own per-slice encoder, which holds a
per-slice lock (:func:`clinloop.models.litemedsam.cache.key_locks`) around the cache
check, the encoding and the cache write, so the step and the worker never encode one
slice twice and the step waits for a slice the worker has in hand. The embedding of
a slice is the same whichever thread computes it (same encoder, same runtime and
thread count), so the step's masks are bit-identical with and without the worker.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class EncodeAhead:
    """Background encoder of one step: ``encode(t)`` for slices ``0 <= t < n`` near the
    frontiers around ``anchor`` (module docstring)."""

    def __init__(self, encode: Callable[[int], object], n: int, anchor: int, ahead: int) -> None:
        if ahead < 1:
            raise ValueError(f"encode-ahead needs ahead >= 1 slice, got {ahead}")
        self.encode, self.n, self.ahead = encode, int(n), int(ahead)
        self.front = {1: int(anchor), -1: int(anchor)}
        self.open = {1: True, -1: True}
        self.walking = 1
        self.claimed: set[int] = {int(anchor)}
        self.encoded: list[int] = []  # slices this worker encoded (or found cached), in order
        self._cv = threading.Condition()
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="clinloop-encode-ahead", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the step's side
    def at(self, direction: int, t: int) -> None:
        """The step now works on slice ``t`` walking in ``direction`` (+1 / -1)."""
        with self._cv:
            self.walking, self.front[direction] = direction, int(t)
            self.claimed.add(int(t))
            self._cv.notify_all()

    def stop(self, direction: int) -> None:
        """The step will visit no more slices in ``direction``."""
        with self._cv:
            self.open[direction] = False
            self._cv.notify_all()

    def cancel(self, wait: bool = False) -> None:
        """Stop after the slice in hand (``wait``: until then)."""
        with self._cv:
            self._cancelled = True
            self._cv.notify_all()
        if wait:
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------ the worker
    def _next(self) -> int | None:
        for d in (self.walking, -self.walking):
            if not self.open[d]:
                continue
            for k in range(1, self.ahead + 1):
                t = self.front[d] + d * k
                if not 0 <= t < self.n:
                    break
                if t not in self.claimed:
                    return t
        return None

    def _run(self) -> None:
        while True:
            with self._cv:
                t = self._next()
                while t is None and not self._cancelled:
                    self._cv.wait()
                    t = self._next()
                if self._cancelled:
                    return
                self.claimed.add(t)
            try:
                self.encode(t)
            except Exception as e:  # noqa: BLE001 - the step encodes the slice itself and reports the error
                log.warning("encode-ahead of slice %d failed (%s: %s); the step encodes it itself", t,
                            type(e).__name__, e)
                return
            self.encoded.append(t)
