"""A small deterministic interactive model and a live uvicorn server for the
workstation's hardening tests (races, timeouts, queue limits). The model is
real code (``Session``, replay, the store): only the network is replaced by a
disc around the last click, so hundreds of steps take seconds."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import numpy as np

from clinloop.interaction.proposal import Proposal


class ToyState:
    def __init__(self, shape, delay):
        self.shape, self.delay, self.centre, self.r = shape, delay, None, 3

    def _prop(self) -> Proposal:
        time.sleep(self.delay)
        yy, xx = np.mgrid[:self.shape[0], :self.shape[1]]
        d2 = (yy - self.centre[1]) ** 2 + (xx - self.centre[0]) ** 2
        mask = d2 <= self.r ** 2
        cands = np.stack([d2 <= (self.r + k) ** 2 for k in (-1, 1)])
        return Proposal(mask=mask, probability=mask.astype(np.float32), uncertainty=np.zeros(self.shape, np.float32),
                        candidates=cands)

    def click(self, point, positive):
        self.centre = (round(point[0]), round(point[1]))
        self.r = self.r + 1 if positive else max(1, self.r - 1)
        return self._prop()

    def choose(self, k):
        self.r = max(1, self.r + (-1, 1)[k])
        return self._prop()

    def hint(self, points):
        for p, pos in points:
            self.click(p, pos)
        return self._prop()

    def profile(self):
        return {"r": self.r}


class Toy:
    """``click`` grows a disc at the point (radius +1; -1 when negative); two candidates."""

    spatial_ndims = (2,)

    def __init__(self, delay: float = 0.0, name: str = "toy"):
        self.delay, self.name = delay, name

    def start(self, image, *, seed=0, profile=None):
        return ToyState(image.shape[-2:], self.delay)


def png_bytes(a: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


IMAGE = png_bytes((np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app):
    """Run ``app`` with uvicorn on a free loopback port in a thread; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.025)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        t.join(timeout=10)


def open_workstation(browser, url: str, user: str = "rad"):
    """A 1440x900 page of the workstation at ``url`` as ``user``, with the worklist shown;
    returns ``(page, errors)`` (``errors`` collects the page's JavaScript errors)."""
    page = browser.new_context(viewport={"width": 1440, "height": 900},
                               extra_http_headers={"X-Clinloop-User": user}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector(".case")
    return page, errors
