"""The workstation in headless Chromium with the shipped 3-D MECCA model on a small
volume (:func:`test_server_mecca.nodule_case`), chosen in the model picker of a server
that runs two models: a click segments several slices,
an exclude click (Shift) on another slice refines the 3-D mask, the advice regions
are drawn and listed with their slices, the action-confidence toggle shows the
layer and its colour bar, and undo restores the mask."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from _toy_server import live_server, open_workstation  # noqa: E402
from test_browser import chromium  # noqa: E402
from test_browser_viewer import _canvas_xy, _idle, _open, _pixel  # noqa: E402
from test_server_mecca import FIRST, HINT, nodule_case  # noqa: E402

from clinloop.data.registry import ListDataset  # noqa: E402


def test_mecca_volume_hint_advice_confidence(tmp_path):
    from clinloop.models.registry import load_model
    from clinloop.server.app import create_app
    from clinloop.server.worklist import worklist_from_dataset

    app = create_app(load_model("interactive-cnn-lidc3d"), models=[load_model("mecca-lidc3d")],
                     state_dir=tmp_path / "state",
                     worklist=worklist_from_dataset(ListDataset([nodule_case()], name="mecca3d-browser")))
    with live_server(app) as (url, _port), chromium() as b:
        page, errors = open_workstation(b, url)
        # two models served: the picker replaces the model pill; choose MECCA, then open the case
        assert page.locator("#model-name").is_hidden() and page.locator("#model-pick option").count() == 2
        assert page.input_value("#model-pick") == "interactive-cnn-lidc3d"
        page.select_option("#model-pick", "mecca-lidc3d")
        _open(page, "nod")
        assert page.evaluate("S.pick") == "mecca-lidc3d" and page.input_value("#model-pick") == "mecca-lidc3d"
        assert page.evaluate("S.z") == 6 and page.locator("#conf-toggle").is_hidden()
        page.mouse.click(*_canvas_xy(page, FIRST[0], FIRST[1]))  # include click on the nodule, slice 6
        _idle(page)
        first = page.evaluate("S.prop.area")
        assert first > 0 and page.locator("#slice-strip i.has").count() >= 3
        assert page.get_attribute("#view", "data-roi") == "0-12 6-38 10-42"
        # advice: drawn on the canvas (the layers exist) and listed with the slices they span
        n_adv = page.evaluate("S.layers.advice.length")
        assert n_adv >= 1 and page.locator("#advice .adv").count() == n_adv
        # the action-confidence toggle appears with the layer; on, it changes the canvas and shows its colour bar
        assert page.locator("#conf-toggle").is_visible() and page.locator("#cbar-conf").is_hidden()
        before, outside = _pixel(page, 16, 30), _pixel(page, 2, 2)
        page.check("#show-conf")
        assert page.locator("#cbar-conf").is_visible()
        assert page.get_attribute("#cbar-conf", "data-range") == " ".join(map(str, page.evaluate("S.prop.confidence_range")))
        assert _pixel(page, 16, 30) != before  # the viridis layer is drawn over the image
        assert _pixel(page, 2, 2) == outside  # outside the region no agent acted: transparent
        # Shift+click = exclude hint on slice 6 below the nodule: the 3-D mask shrinks, the voxel is outside
        page.keyboard.down("Shift")
        page.mouse.click(*_canvas_xy(page, HINT[0], HINT[1]))
        page.keyboard.up("Shift")
        _idle(page)
        assert page.evaluate("S.prop.iteration") == 2 and page.evaluate("S.prop.area") != first
        assert page.evaluate("S.clicks.filter(c => !c.positive).length") == 1
        assert "click again to refine" in page.inner_text("#msg")
        # another slice shows the new 3-D mask there; an advice button goes to its region's slice
        btn = page.locator("#advice .adv").first
        target = int(btn.get_attribute("data-z"))
        btn.click()
        _idle(page)
        assert page.evaluate("S.z") == target and page.evaluate("S.prop.z") == target
        page.keyboard.press("u")  # undo: back to the first proposal
        _idle(page)
        assert page.evaluate("S.prop.area") == first and page.evaluate("S.prop.iteration") == 1
        # the session was made with MECCA (the server's default is interactive-cnn)
        assert page.evaluate("(async () => (await getJSON(`/api/sessions/${S.sid}`)).model)()") == "mecca-lidc3d"
        assert not errors, errors
