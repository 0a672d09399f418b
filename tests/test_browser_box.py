"""The box tool in headless Chromium (issue 17): a rectangle dragged with B held is posted as the
first interaction, drawn as a marker, and yields a mask; undo removes both. A toy model whose box
answer is the box itself (inclusive corners), so the area is counted by hand."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")

from _toy_server import Toy, ToyState, live_server  # noqa: E402
from _viewer_fixtures import dataset  # noqa: E402
from test_browser import chromium  # noqa: E402
from test_browser_viewer import _canvas_xy, _idle, _open, _page  # noqa: E402


class BoxState(ToyState):
    def box(self, b):
        from clinloop.interaction.proposal import Proposal

        x0, y0, x1, y1 = (int(round(v)) for v in b)
        mask = np.zeros(self.shape, bool)
        mask[y0:y1 + 1, x0:x1 + 1] = True
        return Proposal(mask=mask, probability=mask.astype(np.float32), uncertainty=np.zeros(self.shape, np.float32),
                        candidates=np.stack([mask, mask]))


class BoxToy(Toy):
    def start(self, image, *, seed=0, profile=None):
        return BoxState(image.shape[-2:], self.delay)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from clinloop.server.app import create_app
    from clinloop.server.worklist import worklist_from_dataset

    d = tmp_path_factory.mktemp("boxview")
    app = create_app(BoxToy(), state_dir=d / "state", worklist=worklist_from_dataset(dataset()))
    with live_server(app) as (url, _port):
        yield url, app


@pytest.fixture(scope="module")
def browser(site):
    with chromium() as b:
        yield b


def test_drag_with_b_draws_a_box_and_yields_its_mask(site, browser):
    page, errors = _page(browser, site, "boxer")
    _open(page, "c1")
    assert page.get_attribute("#view", "data-box") in (None, "")
    page.keyboard.down("b")
    page.mouse.move(*_canvas_xy(page, 10, 12))
    page.mouse.down()
    page.mouse.move(*_canvas_xy(page, 16, 16), steps=3)
    page.mouse.move(*_canvas_xy(page, 22, 20), steps=3)
    page.mouse.up()
    page.keyboard.up("b")
    page.wait_for_function("S.prop && S.pending === 0")
    assert page.get_attribute("#view", "data-box") == "10 12 22 20"
    assert page.evaluate("S.prop.area") == 13 * 9
    assert page.evaluate("S.clicks.length") == 0  # a drag is no click
    # the box tool button: a second box is refused in plain words, the first stays
    page.click("#mode-box")
    page.mouse.move(*_canvas_xy(page, 2, 2))
    page.mouse.down()
    page.mouse.move(*_canvas_xy(page, 8, 8), steps=3)
    page.mouse.up()
    _idle(page)
    page.wait_for_function("document.getElementById('msg').textContent.includes('first interaction')")
    assert page.get_attribute("#view", "data-box") == "10 12 22 20"
    page.keyboard.press("u")
    _idle(page)
    page.wait_for_function("!S.prop")
    assert page.get_attribute("#view", "data-box") == ""
    assert errors == []
