"""The workstation in headless Chromium on a volume with a model that has
``start_volume`` (:mod:`_volume_stub`): one click on one slice marks several
slices in the slice strip, the page polls ``GET .../progress`` while the click
runs, and the candidates follow the shown slice."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")

from _toy_server import live_server, open_workstation  # noqa: E402
from _volume_stub import StubVolumeModel  # noqa: E402
from test_browser import _ensure_chromium, _ensure_playwright  # noqa: E402
from test_browser_viewer import _canvas_xy, _idle, _open  # noqa: E402

from clinloop.data.registry import ListDataset  # noqa: E402
from clinloop.data.sample import MultiRaterSample  # noqa: E402


def _case() -> MultiRaterSample:
    zz, yy, xx = np.mgrid[:12, :64, :64]
    inside = ((zz - 6) / 4.0) ** 2 + ((yy - 30) / 12.0) ** 2 + ((xx - 34) / 12.0) ** 2 <= 1
    img = (30 + 10 * np.random.default_rng(1).random((1, 12, 64, 64)) + 120 * inside[None]).astype(np.float32)
    return MultiRaterSample(img, np.zeros((0, 12, 64, 64), bool), case_id="vol", structure="nodule")


def test_one_click_on_a_volume_marks_several_slices(tmp_path):
    from clinloop.server.app import create_app
    from clinloop.server.worklist import worklist_from_dataset

    app = create_app(StubVolumeModel(delay=0.2), state_dir=tmp_path / "state",
                     worklist=worklist_from_dataset(ListDataset([_case()], name="vol3d-browser")))
    exe, pw = _ensure_chromium(), _ensure_playwright()
    with live_server(app) as (url, _port), pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            ctx = b.new_context(viewport={"width": 1440, "height": 900}, extra_http_headers={"X-Clinloop-User": "rad"})
            page = ctx.new_page()
            errors: list[str] = []
            polls: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: polls.append(r.url) if r.url.split("?")[0].endswith("/progress") else None)
            page.goto(url + "/")
            page.wait_for_selector(".case")
            _open(page, "vol")
            assert page.evaluate("S.z") == 6 and page.locator("#slice-strip i").count() == 12
            assert page.locator("#slice-strip i.has").count() == 0
            page.mouse.click(*_canvas_xy(page, 34, 30))
            _idle(page)
            # the stub's discs: radius 5 on slice 6 down to 2 on slices 3 and 9 (tests/_volume_stub.py)
            has = [int(e.get_attribute("data-z")) for e in page.locator("#slice-strip i.has").all()]
            assert has == [3, 4, 5, 6, 7, 8, 9]
            assert polls, "the page did not poll GET .../progress while the click ran (7 slices x 0.2 s)"
            assert page.locator(".cand").count() == 3
            page.click("#slice-strip i:nth-child(4)")  # slice 3: the candidates follow the shown slice
            _idle(page)
            assert page.evaluate("S.z") == 3 and page.locator(".cand").count() == 3
            assert page.locator("#slice-strip i.has").count() == 7
            assert not errors, errors
        finally:
            b.close()


def test_one_click_draws_slice_masks_before_the_3d_result(tmp_path):
    """Progressive display: the masks of finished slices stream in (GET .../progress?since=N)
    and the shown slice's mask is drawn while the 3-D step still runs (S.prop is still empty)."""
    from test_browser import chromium

    from clinloop.server.app import create_app
    from clinloop.server.worklist import worklist_from_dataset

    app = create_app(StubVolumeModel(delay=0.4), state_dir=tmp_path / "state",
                     worklist=worklist_from_dataset(ListDataset([_case()], name="vol3d-stream")))
    with live_server(app) as (url, _port), chromium() as b:
        page, errors = open_workstation(b, url)
        _open(page, "vol")
        before = page.evaluate("document.getElementById('view').toDataURL()")
        page.mouse.click(*_canvas_xy(page, 34, 30))
        # the clicked slice 6 is SPA's anchor (finished first): its mask is drawn, the 3-D result not yet there
        page.wait_for_function("document.getElementById('view').dataset.maskFrom === 'partial'", timeout=20000)
        state = page.evaluate("({prop: S.prop, pending: S.pending, streamed: document.getElementById('view')"
                              ".dataset.streamed, has: document.querySelectorAll('#slice-strip i.has').length})")
        assert state["prop"] is None and state["pending"] > 0, state
        assert "6" in state["streamed"].split() and state["has"] >= 1
        assert page.evaluate("document.getElementById('view').toDataURL()") != before  # the mask is on the canvas
        # more slices arrive one by one before the request answers
        page.wait_for_function("document.getElementById('view').dataset.streamed.split(' ').length >= 3 || S.prop",
                               timeout=20000)
        early = page.evaluate("({prop: S.prop, streamed: document.getElementById('view').dataset.streamed})")
        assert early["prop"] is None and len(early["streamed"].split()) >= 3, early
        _idle(page)
        assert page.evaluate("document.getElementById('view').dataset.maskFrom") == "proposal"
        has = [int(e.get_attribute("data-z")) for e in page.locator("#slice-strip i.has").all()]
        assert has == [3, 4, 5, 6, 7, 8, 9]
        assert not errors, errors
