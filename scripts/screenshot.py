"""Take the user guide's screenshots of the workstation (docs/img/).

Starts the workstation in-process with the shipped default model (``spa-general``) and
drives it in headless Chromium (Playwright):

* ``workstation.png``: the embedded example (the 8 synthetic multi-rater cases
  that ``clinloop serve`` shows without ``--data``), one click on the lesion
  (the centroid of the raters' majority), candidate 2 picked, the uncertainty
  heatmap with its colour bar on;
* ``workstation-experts.png``: the same case with the four raters' contours,
  their Dice to the proposal, the proposal as a contour, zoomed in;
* ``workstation-volume.png``: the first case of ``--volume-data`` (default: a
  synthetic 24-slice volume with four raters), clicked on three slices at the
  centre of the raters' majority: the slice strip marks the slices that hold a mask.

Needs Debian's Chromium (``apt-get install -y chromium``) and the python
``playwright`` package (in the ``test`` extra); it never runs ``playwright
install``, which would download a browser of its own. The user guide's pictures
(a BraTS volume; its first click encodes the slices, minutes on one core):

    .venv/bin/python scripts/screenshot.py --volume-data ../shared/data/brats2018_flair --timeout 900
"""
from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lesion_point(dataset, index: int = 0) -> tuple[float, float]:
    """(x, y) = (column, row) of the centroid of case ``index``'s majority mask."""
    from clinloop.data.fusion import majority_vote

    s = dataset[index]
    m = majority_vote(s.masks, s.rater_valid)
    rows, cols = np.nonzero(m)
    if rows.size == 0:
        raise ValueError(f"case {dataset.case_ids[index]!r} has an empty majority mask: no lesion to click")
    return float(cols.mean()), float(rows.mean())


class _Server:
    """The workstation app on a free loopback port (uvicorn in a thread)."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(400):
            if self.server.started:
                return f"http://127.0.0.1:{self.port}/"
            time.sleep(0.05)
        sys.exit("the workstation did not start within 20 s")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _click(page, x: float, y: float, w: int, h: int, wait_ms: int) -> None:
    """Click image pixel (x, y) of a w x h image shown at zoom 1 (the canvas fits the image); wait up to
    ``wait_ms`` for the answer."""
    box = page.locator("#view").bounding_box()
    page.mouse.click(box["x"] + (x + 0.5) / w * box["width"], box["y"] + (y + 0.5) / h * box["height"])
    page.wait_for_function("S.pending === 0", timeout=wait_ms)


def _open(page, case_id: str, wait_ms: int) -> None:
    page.wait_for_selector(".case")
    page.click(f".case[data-id='{case_id}']")
    page.wait_for_function("S.sid && S.pending === 0", timeout=wait_ms)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "workstation.png"),
                    help="the main picture; the others go beside it")
    ap.add_argument("--model", default=None, help="model folder or shipped name (default: spa-general)")
    ap.add_argument("--volume-data", default=None,
                    help="a 3-D dataset for workstation-volume.png (default: a synthetic 24-slice volume)")
    ap.add_argument("--chromium", default=CHROMIUM)
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=860)
    ap.add_argument("--timeout", type=float, default=180.0,
                    help="seconds one step (opening a case, a click) may take; a first click on a real volume "
                         "encodes its slices and takes minutes on one core (docs/methods/spa.md, Speed)")
    args = ap.parse_args(argv)
    wait_ms = int(args.timeout * 1000)
    if not Path(args.chromium).is_file():
        sys.exit(f"{args.chromium} not found: install Debian's chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("python playwright is missing: pip install playwright (never 'playwright install')")

    from clinloop.data import load_dataset
    from clinloop.data.synthetic import make_synthetic_dataset, write_example
    from clinloop.models.registry import load_model
    from clinloop.server.app import create_app
    from clinloop.server.worklist import worklist_from_dataset

    tmp = Path(tempfile.mkdtemp(prefix="clinloop-screenshot-"))
    data = write_example(tmp / "example", 8)
    ds = load_dataset(data)
    x, y = lesion_point(ds, 0)
    h, w = ds[0].image.shape[-2:]
    model = load_model(args.model)
    vol = load_dataset(args.volume_data) if args.volume_data else make_synthetic_dataset(2, (24, 128, 128), seed=3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shots = {k: out.with_name(out.stem + k + out.suffix) for k in ("", "-experts", "-volume")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        with _Server(create_app(model, state_dir=tmp / "state", data=data)) as url:
            page.goto(url)
            _open(page, ds.case_ids[0], wait_ms)
            _click(page, x, y, w, h, wait_ms)
            page.keyboard.press("2")  # the clinician picks candidate 2
            page.wait_for_function("S.pending === 0 && document.querySelector('#st-iter').textContent === '2'",
                                   timeout=wait_ms)
            page.check("#show-unc")
            page.wait_for_timeout(300)  # let the canvas redraw with the heatmap
            page.screenshot(path=str(shots[""]))
            page.uncheck("#show-unc")
            page.select_option("#mask-mode", "contour")
            for cb in page.locator("#rater-list input").all():
                cb.check()
            page.keyboard.press("+")
            page.keyboard.press("+")
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots["-experts"]))
        with _Server(create_app(model, state_dir=tmp / "state-volume", worklist=worklist_from_dataset(vol))) as url:
            page.goto(url)
            _open(page, vol.case_ids[0], wait_ms)
            s = vol[0]
            zs = np.nonzero(s.masks.mean(axis=0).reshape(s.masks.shape[1], -1).max(axis=1) >= 0.5)[0]
            d, vh, vw = s.spatial_shape
            for z in (int(zs[len(zs) // 4]), int(zs[len(zs) // 2]), int(zs[3 * len(zs) // 4])):
                page.evaluate(f"goSlice({z})")
                page.wait_for_function(f"S.pending === 0 && S.z === {z}", timeout=wait_ms)
                rows, cols = np.nonzero(s.masks[:, z].mean(axis=0) >= 0.5)
                _click(page, float(cols.mean()), float(rows.mean()), vw, vh, wait_ms)
            page.check("#show-agree")
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots["-volume"]))
        browser.close()
    print(f"wrote {', '.join(map(str, shots.values()))} (case {ds.case_ids[0]}, click at x={x:.1f}, y={y:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
