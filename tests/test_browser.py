"""The workstation page in headless Chromium (Debian's ``chromium``) driven by
Playwright: open a worklist case, click on the structure, pick a candidate
with the keyboard, accept, download the mask — and save a screenshot a person
can look at (``$CLINLOOP_SCREENSHOTS`` or the test's temp folder; the path is
printed).

Installs what it needs when it can (``apt-get install -y chromium`` as root,
``pip install playwright`` into this interpreter — never ``playwright
install``, which downloads its own browser); otherwise skips with the reason.
"""
from __future__ import annotations

import contextlib

import importlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
CHROMIUM = "/usr/bin/chromium"


def _ensure_chromium() -> str:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=600)
        if not Path(CHROMIUM).is_file():
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
            subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=600)
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed and could not be installed (needs root and apt-get)")
    return CHROMIUM


def _ensure_playwright():
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"], capture_output=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"python playwright is missing and pip could not install it: {r.stderr.decode()[-300:]}")
        importlib.invalidate_caches()
        return importlib.import_module("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    import uvicorn

    from test_server import shared_model, test_image

    from clinloop.server.app import create_app

    d = tmp_path_factory.mktemp("browser")
    from PIL import Image

    Image.fromarray(test_image()).save(d / "nodule_slice.png")
    app = create_app(shared_model(), state_dir=d / "state", data=d / "nodule_slice.png")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app, d
    server.should_exit = True
    t.join(timeout=10)


@contextlib.contextmanager
def chromium():
    """Headless Debian Chromium through Playwright (installed on first use), closed afterwards."""
    exe = _ensure_chromium()
    pw = _ensure_playwright()
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_click_pick_accept_download(live_server, tmp_path):
    exe = _ensure_chromium()
    pw = _ensure_playwright()
    url, app, d = live_server
    shots = Path(os.environ.get("CLINLOOP_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector(".case")  # the worklist
        assert "model:" in page.inner_text("#model-name")
        page.click(".case")
        page.wait_for_function("document.querySelector('#status-badge').textContent === 'open'", timeout=120_000)
        # click on the bright disc: image pixel (44, 50) -> canvas position
        box = page.locator("#view").bounding_box()
        page.mouse.click(box["x"] + (44.5 / 96) * box["width"], box["y"] + (50.5 / 96) * box["height"])
        page.wait_for_selector(".cand", timeout=60_000)
        from test_server import n_candidates

        assert page.locator(".cand").count() == n_candidates()
        assert page.inner_text("#st-iter") == "1"
        page.keyboard.press("2")  # pick candidate 2
        page.wait_for_function("document.querySelector('#st-iter').textContent === '2'", timeout=60_000)
        page.check("#show-unc")
        page.screenshot(path=str(shots / "workstation_proposal.png"))
        page.keyboard.press("Enter")  # accept
        page.wait_for_function("document.querySelector('#status-badge').textContent === 'accepted'", timeout=30_000)
        with page.expect_download() as dl:
            page.click("#exp-png")
        path = tmp_path / dl.value.suggested_filename
        dl.value.save_as(path)
        page.screenshot(path=str(shots / "workstation_accepted.png"))
        print(f"\nscreenshots: {shots / 'workstation_proposal.png'}, {shots / 'workstation_accepted.png'}")
        browser.close()
    assert not errors, errors
    assert path.name.endswith("_mask.png")
    from PIL import Image

    got = np.asarray(Image.open(path)) == 255
    sessions = app.state.store.accepted_list("local")
    assert len(sessions) == 1
    np.testing.assert_array_equal(got, app.state.store.accepted_mask(sessions[0]["session_id"], "local"))
    history = app.state.store.session(sessions[0]["session_id"], "local")["history"]
    assert [h["action"] for h in history] == ["click", "choose", "accept"]
    assert history[1]["candidate"] == 1  # key "2" -> candidate index 1
    x, y = history[0]["point"]
    assert abs(x - 44) <= 1 and abs(y - 50) <= 1  # the canvas maps clicks to image pixels


def _proposal_mask(page) -> np.ndarray:
    """The current proposal's mask, from the REST API the page uses (palette PNG: index > 0 = in the mask)."""
    import base64
    import io

    from PIL import Image

    p = page.evaluate("fetch(`/api/sessions/${S.sid}/proposal`).then(r => r.json())")
    data = p["mask"].split(",", 1)[-1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))) > 0


def _worklist_page(browser, url: str, user: str):
    """A fresh context for ``user`` on the page, its worklist shown: ``(context, page, page errors)``."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, extra_http_headers={"X-Clinloop-User": user})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector(".case")
    return ctx, page, errors


def test_corrective_click_changes_the_mask_at_the_clicked_pixel(live_server):
    """An include click outside the proposal and an exclude (shift) click inside it each put the
    clicked pixel on the asked side (the shipped default model, its click constraint on)."""
    url, _app, _d = live_server
    with chromium() as b:
        ctx, page, errors = _worklist_page(b, url, "corrective")
        page.click(".case")
        page.wait_for_function("document.querySelector('#status-badge').textContent !== '—' && S.sid", timeout=120_000)
        box = page.locator("#view").bounding_box()

        def at(x, y):
            return box["x"] + ((x + 0.5) / 96) * box["width"], box["y"] + ((y + 0.5) / 96) * box["height"]

        page.mouse.click(*at(44, 50))
        page.wait_for_function("document.querySelector('#st-iter').textContent === '1'", timeout=60_000)
        m1 = _proposal_mask(page)
        assert m1.shape == (96, 96) and m1[50, 44]
        x_out = next(x for x in range(45, 96) if not m1[50, x])  # first pixel right of the centre outside the mask
        page.mouse.click(*at(x_out, 50))
        page.wait_for_function("document.querySelector('#st-iter').textContent === '2'", timeout=60_000)
        m2 = _proposal_mask(page)
        assert m2[50, x_out]
        ys = [y for y in range(96) if m2[y, 44]]
        page.keyboard.down("Shift")
        page.mouse.click(*at(44, ys[0]))  # exclude the top edge pixel of the mask's centre column
        page.keyboard.up("Shift")
        page.wait_for_function("document.querySelector('#st-iter').textContent === '3'", timeout=60_000)
        m3 = _proposal_mask(page)
        assert not m3[ys[0], 44]
        assert page.get_attribute("#view", "data-markers") == "3"
        ctx.close()
    assert not errors, errors


def test_an_upload_names_its_structure(live_server):
    """The structure field lists the model's own structures (GET /api/info) and goes with the upload:
    the session and its title carry it."""
    from clinloop.interaction.session import model_structures
    from test_server import shared_model

    url, _app, d = live_server
    with chromium() as b:
        ctx, page, errors = _worklist_page(b, url, "upload")
        listed = page.eval_on_selector_all("#structure-names option", "os => os.map(o => o.value)")
        assert listed == model_structures(shared_model())
        page.fill("#upload-structure", "nodule")
        page.set_input_files("#file", str(d / "nodule_slice.png"))
        page.wait_for_function("S.sid && document.querySelector('#status-badge').textContent === 'open'",
                               timeout=120_000)
        assert "· nodule ·" in page.inner_text("#case-title")
        desc = page.evaluate("fetch(`/api/sessions/${S.sid}`).then(r => r.json())")
        assert desc["structure"] == "nodule" and desc["case_id"] is None
        ctx.close()
    assert not errors, errors
