"""The viewer in headless Chromium (Playwright, Debian's ``chromium``) against
a live server with the toy model (:mod:`_toy_server`) and the tiny rater
cases of :mod:`_viewer_fixtures`: zoom/pan/fit, click markers, contour/fill and
opacity, right-drag window/level, candidate hover preview, the experts panel,
the slice strip and per-slice panel of a volume, queued keys, the worklist's
status and resume, and errors in plain words. Each test uses its own user
(``X-Clinloop-User``), so the tests do not depend on each other's order."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("fastapi")

from _toy_server import Toy, live_server  # noqa: E402
from _viewer_fixtures import dataset  # noqa: E402
from test_browser import chromium  # noqa: E402

_LOCK = threading.Lock()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from clinloop.server.app import create_app
    from clinloop.server.worklist import worklist_from_dataset

    d = tmp_path_factory.mktemp("viewer")
    app = create_app(Toy(delay=0.15), state_dir=d / "state", worklist=worklist_from_dataset(dataset()))
    with live_server(app) as (url, _port):
        yield url, app


@pytest.fixture(scope="module")
def browser(site):
    with chromium() as b:
        yield b


def _page(browser, site, user):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, extra_http_headers={"X-Clinloop-User": user})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site[0] + "/")
    page.wait_for_selector(".case")
    return page, errors


def _open(page, case):
    page.click(f".case[data-id='{case}']")
    page.wait_for_function("S.sid && S.pending === 0 && document.querySelector('#status-badge').textContent !== '—'")


def _idle(page):
    page.wait_for_function("S.pending === 0")


def _canvas_xy(page, x, y):
    """Page coordinates of image pixel (x, y) under the current transform."""
    box = page.locator("#view").bounding_box()
    k, tx, ty = map(float, page.get_attribute("#view", "data-transform").split())
    w = page.evaluate("document.getElementById('view').width")
    s = box["width"] / w
    return box["x"] + (tx + (x + 0.5) * k) * s, box["y"] + (ty + (y + 0.5) * k) * s


def _pixel(page, x, y, dx=0):
    """RGB of the canvas at image pixel (x, y) (``dx`` canvas pixels to the right: beside a marker's number)."""
    return page.evaluate(f"""(() => {{ const T = transform(), c = document.getElementById('view');
        const d = c.getContext('2d').getImageData(Math.round(T.tx + ({x} + 0.5) * T.k) + {dx}, Math.round(T.ty + ({y} + 0.5) * T.k), 1, 1).data;
        return [d[0], d[1], d[2]]; }})()""")


def test_zoom_markers_overlay_wl_preview_experts(site, browser):
    page, errors = _page(browser, site, "viewer2d")
    _open(page, "c1")
    t0 = page.get_attribute("#view", "data-transform")
    page.keyboard.press("+")
    assert page.get_attribute("#view", "data-zoom") == "1.250" and page.get_attribute("#view", "data-transform") != t0
    page.keyboard.press("0")
    assert page.get_attribute("#view", "data-zoom") == "1.000" and page.get_attribute("#view", "data-transform") == t0
    box = page.locator("#view").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -100)  # wheel zooms a 2-D image
    assert float(page.get_attribute("#view", "data-zoom")) > 1
    page.keyboard.down(" ")  # space-drag pans, no click is sent
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2)
    page.mouse.up()
    page.keyboard.up(" ")
    assert page.evaluate("S.view.px") == 60 and page.evaluate("S.pending") == 0
    page.click("#zoom-reset")

    page.mouse.click(*_canvas_xy(page, 16, 16))  # include click: the toy draws a 49-px disc around it
    _idle(page)
    assert page.get_attribute("#view", "data-markers") == "1"
    r, g, b = _pixel(page, 16, 16, dx=5)
    assert g > 180 and r < 100  # the green marker
    page.select_option("#mask-mode", "contour")
    assert len(set(_pixel(page, 16, 13))) == 1  # interior: the grey image only
    page.select_option("#mask-mode", "fill")
    page.fill("#opacity", "100")
    page.dispatch_event("#opacity", "input")
    assert _pixel(page, 16, 13) == [0, 200, 255]  # opaque cyan fill
    page.fill("#opacity", "0")
    page.dispatch_event("#opacity", "input")
    assert len(set(_pixel(page, 16, 13))) == 1
    page.select_option("#mask-mode", "both")

    page.hover(".cand[data-k='0']")  # candidate 0 shrinks the disc: its removed ring previews in magenta
    r, g, b = _pixel(page, 16, 12)
    assert page.evaluate("S.preview") == 0 and r > 200 and g < 100
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    assert page.evaluate("S.preview") is None

    # experts: rater C marks rows 16..31; its contour appears at (2, 16) when toggled; Dice 58/561
    page.wait_for_selector("#experts:not(.hidden)")
    assert "Dice 0.103" in page.inner_text("#rater-list .rater:nth-child(3)")
    assert len(set(_pixel(page, 2, 16))) == 1
    page.check("#rater-list input[data-rater='C']")
    assert _pixel(page, 2, 16) == [255, 235, 59]  # rater C's colour (viewing.RATER_RGB[2])
    page.check("#show-agree")
    assert page.is_visible("#cbar-agree")
    page.check("#show-unc")
    assert page.is_visible("#cbar-unc")

    w0 = page.evaluate("S.wl.window")  # right-drag: window/level, not an exclude click
    x, y = _canvas_xy(page, 24, 3)  # clear of the colour bars (bottom right)
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x + 80, y + 10, steps=4)
    page.mouse.up(button="right")
    assert page.evaluate("S.wl.window") > w0 and page.get_attribute("#view", "data-markers") == "1"
    page.keyboard.down("Shift")  # shift+click: exclude, a red marker numbered 2
    page.mouse.click(*_canvas_xy(page, 4, 4))
    page.keyboard.up("Shift")
    _idle(page)
    assert page.get_attribute("#view", "data-markers") == "2"
    assert page.evaluate("S.clicks.map(c => [c.n, c.positive])") == [[1, True], [2, False]]
    r, g, b = _pixel(page, 4, 4, dx=5)
    assert r > 200 and g < 100
    assert not errors, errors


def test_keys_queued_status_after_accept_and_resume(site, browser):
    page, errors = _page(browser, site, "nurse")
    assert page.inner_text(".case[data-id='c2'] .st") == "new"
    _open(page, "c2")
    assert page.inner_text(".case[data-id='c2'] .st") == "in progress · nurse"
    assert "P-002 (c2)" in page.inner_text(".case[data-id='c2']") and "ring" in page.inner_text(".case[data-id='c2']")
    page.mouse.click(*_canvas_xy(page, 16, 16))
    assert page.is_visible("#progress")  # the model is computing (0.15 s per step)
    page.keyboard.press("1")  # pressed while busy: queued, not dropped
    page.keyboard.press("2")
    _idle(page)
    assert page.inner_text("#st-iter") == "3"
    sid = page.evaluate("S.sid")
    page.keyboard.press("Enter")
    _idle(page)
    assert page.text_content("#status-badge") == "accepted"
    assert page.inner_text(".case[data-id='c2'] .st") == "accepted · nurse"
    page.reload()
    page.wait_for_selector(".case")
    _open(page, "c2")  # reopening resumes the session instead of making a duplicate
    assert page.evaluate("S.sid") == sid and page.text_content("#status-badge") == "accepted"
    store = site[1].state.store
    assert [s["session_id"] for s in store.sessions("nurse")] == [sid]
    assert not errors, errors


def test_volume_slice_strip_and_panel_follow_the_slice(site, browser):
    page, errors = _page(browser, site, "radiologist")
    _open(page, "v1")
    assert page.evaluate("S.z") == 3 and page.locator("#slice-strip i").count() == 6
    page.mouse.click(*_canvas_xy(page, 16, 16))
    _idle(page)
    assert page.get_attribute("#slice-strip i:nth-child(4)", "class") == "has cur"
    assert page.locator("#slice-strip i.has").count() == 1
    assert page.inner_text("#st-area") == "49 / 49" and page.locator(".cand").count() == 2
    assert page.get_attribute("#view", "data-markers") == "1"
    page.keyboard.press("ArrowDown")
    _idle(page)
    assert page.evaluate("S.z") == 2 and page.inner_text("#st-area") == "0 / 49"
    assert page.locator(".cand").count() == 0 and "No mask on slice 2" in page.inner_text("#cands")
    assert page.get_attribute("#view", "data-markers") == "0"  # the click was on slice 3
    assert "slice 0.000" in page.inner_text("#rater-list")  # Dice on this slice: rater 0 marks it, we do not
    page.click("#slice-strip i:nth-child(4)")
    _idle(page)
    assert page.evaluate("S.z") == 3 and page.locator(".cand").count() == 2
    assert not errors, errors


def test_errors_in_plain_words(site, browser):
    page, errors = _page(browser, site, "clerk")
    _open(page, "c1")
    page.mouse.click(*_canvas_xy(page, 16, 16))
    _idle(page)
    page.evaluate("guarded(() => postJSON(`/api/sessions/${S.sid}/choose`, {candidate: 7}))")
    _idle(page)
    msg = page.inner_text("#msg")
    assert page.get_attribute("#msg", "class") == "err" and msg.startswith("Candidate 7 out of range")
    assert not msg[:3].isdigit() and "400" not in msg
    page.evaluate("resume('AAAAAAAAAAAAAAAAAAAAAAAA')")
    _idle(page)
    msg = page.inner_text("#msg")
    assert msg.startswith("No session") and "404" not in msg
    assert not page.is_visible("#timing")  # timings hide behind "details"
    page.check("#details")
    assert page.is_visible("#timing")
    assert not errors, errors
