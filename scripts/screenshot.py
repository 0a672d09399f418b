"""Take the README's screenshot of the workstation: docs/img/workstation.png.

Starts the workstation in-process on the embedded example (the 8 synthetic
multi-rater cases that ``clinloop serve`` shows without ``--data``) with the
shipped ``spa-lidc`` model, opens it in headless Chromium driven by Playwright,
opens the first case, clicks once on the lesion (the centroid of the raters'
majority), picks candidate 2 and saves the page with the proposal, the
uncertainty heatmap and the K candidates visible.

Needs Debian's Chromium (``apt-get install -y chromium``) and the python
``playwright`` package (in the ``test`` extra); it never runs ``playwright
install``, which would download a browser of its own.

    .venv/bin/python scripts/screenshot.py [--out docs/img/workstation.png]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "workstation.png"))
    ap.add_argument("--model", default=None, help="model folder or shipped name (default: spa-lidc)")
    ap.add_argument("--chromium", default=CHROMIUM)
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=860)
    args = ap.parse_args(argv)
    if not Path(args.chromium).is_file():
        sys.exit(f"{args.chromium} not found: install Debian's chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("python playwright is missing: pip install playwright (never 'playwright install')")
    import uvicorn

    from clinloop.data import load_dataset
    from clinloop.data.synthetic import write_example
    from clinloop.models.registry import load_model
    from clinloop.server.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="clinloop-screenshot-"))
    data = write_example(tmp / "example", 8)
    ds = load_dataset(data)
    x, y = lesion_point(ds, 0)
    h, w = ds[0].image.shape[-2:]
    app = create_app(load_model(args.model), state_dir=tmp / "state", data=data)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.05)
    else:
        sys.exit("the workstation did not start within 20 s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(".case")
            page.click(f".case[data-id='{ds.case_ids[0]}']")
            page.wait_for_function("document.querySelector('#status-badge').textContent === 'open'", timeout=180_000)
            box = page.locator("#view").bounding_box()
            page.mouse.click(box["x"] + (x + 0.5) / w * box["width"], box["y"] + (y + 0.5) / h * box["height"])
            page.wait_for_selector(".cand", timeout=120_000)
            page.keyboard.press("2")  # the clinician picks candidate 2
            page.wait_for_function("document.querySelector('#st-iter').textContent === '2'", timeout=120_000)
            page.check("#show-unc")
            page.wait_for_timeout(300)  # let the canvas redraw with the heatmap
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.should_exit = True
        t.join(timeout=10)
    print(f"wrote {out} (case {ds.case_ids[0]}, click at x={x:.1f}, y={y:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
