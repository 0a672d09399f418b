"""Load benchmark (not a test): N concurrent simulated clinicians against a real
``clinloop serve`` process on loopback.

    .venv/bin/python benchmarks/bench_server_load.py [--model DIR] [--users 16] [--iterations 20]
        [--think 1.5] [--workers 2] [--threads 1] [--out r.json]

The server runs on its embedded example worklist (8 synthetic 128² cases;
``--data PATH`` for another). Clinician u opens case u mod 8, then makes
``--iterations`` interaction steps (a click near the lesion centre, then
alternately picking a random candidate and clicking again), then accepts and
downloads the mask. Between steps it looks at the answer for a *think time*
drawn uniformly from [0.5, 1.5] x ``--think`` seconds; the default 1.5 s is the
human pace of SPA's user study (spa.txt §4: 4.3-4.8 s per image for 2.5-3.6
iterations, i.e. ~1.3-1.9 s per iteration including the model's 0.2 s);
``--think 0`` fires steps back to back (a stress test, not a clinician).

The 32-client case (issue 18: a busy department, think 0.3-0.9 s)::

    .venv/bin/python benchmarks/bench_server_load.py --users 32 --think 0.6

A 503 (model queue full) is counted as ``busy`` and retried after its
``Retry-After``, as the browser does; the report adds the server's live-cache
statistics (sessions rebuilt by replay, evictions, 503 refusals). Before
the clock starts every case is opened once, so the image embeddings are cached
(as a worklist prefetch would do).

Every request's wall time is recorded; the ``Server-Timing`` header gives the
model's time and the time spent queueing for the model (``--workers``
computations at once), so ``overhead = total - model - queue`` is the server's
own cost (encoding, SQLite, HTTP). Reports p50/p95/max latency per step kind,
and errors (any non-2xx or exception), and lost actions (acknowledged steps missing from a
session's stored history at the end). Targets: 0 errors, 0 lost; p95 <= 0.5 s on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serverproc import ServerProcess, model_folder  # noqa: E402

_DUR = re.compile(r"(\w+);dur=([0-9.]+)")


def lesion_centres(ds, cases: list[str]) -> dict[str, tuple[float, float]]:
    """Where the simulated clinician clicks: each case's raters' majority centroid (x, y)
    (no majority: any rater's pixels, else the image centre). 2-D cases only."""
    centres = {}
    for case in cases:
        m = ds[ds.case_ids.index(case)].masks
        if m.ndim != 3:
            raise SystemExit(f"{case}: rater masks of shape {m.shape}; this benchmark clicks 2-D images only")
        yy, xx = np.nonzero(m.sum(0) * 2 > m.shape[0])
        if not len(xx):
            yy, xx = np.nonzero(m.any(0))
        if not len(xx):
            yy, xx = np.array([m.shape[-2] / 2]), np.array([m.shape[-1] / 2])
        centres[case] = (float(xx.mean()), float(yy.mean()))
    return centres


def server_timing(headers) -> dict[str, float]:
    """``Server-Timing: model;dur=.., queue;dur=.., total;dur=..`` (ms) -> seconds by name."""
    return {k: float(v) / 1000 for k, v in _DUR.findall(headers.get("server-timing", ""))}


def clinician(url: str, case: str, centre: tuple[float, float], iters: int, seed: int, think: float,
              rows: list, errors: list, lock: threading.Lock, lost: list | None = None) -> None:
    import httpx

    rng = random.Random(seed)
    cx, cy = centre
    with httpx.Client(base_url=url, timeout=300, headers={"X-Clinloop-User": f"clinician{seed}"}) as c:
        def call(kind, method, path, **kw):
            t0 = time.perf_counter()
            try:
                r = c.request(method, path, **kw)
                for _ in range(5):  # model queue full: wait as the server asks (the browser does the same)
                    if r.status_code != 503:
                        break
                    with lock:
                        rows.append({"kind": "busy", "seconds": time.perf_counter() - t0, "model": 0.0, "queue": 0.0,
                                     "server": 0.0, "status": 503})
                    time.sleep(float(r.headers.get("retry-after", "1")))
                    r = c.request(method, path, **kw)
                dt = time.perf_counter() - t0
                timing = server_timing(r.headers)
                with lock:
                    rows.append({"kind": kind, "seconds": dt, "model": timing.get("model", 0.0),
                                 "queue": timing.get("queue", 0.0), "server": timing.get("total", dt),
                                 "status": r.status_code})
                    if r.status_code >= 300:
                        errors.append(f"{kind} {r.status_code} {r.text[:120]}")
                return r
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"{kind} {type(e).__name__}: {e}")
                return None

        r = call("open", "POST", "/api/sessions", json={"case_id": case, "seed": seed})
        if r is None or r.status_code != 200:
            return
        sid = r.json()["session_id"]
        n_cand, acked = 0, 0
        for i in range(iters):
            if think > 0:
                time.sleep(rng.uniform(0.5, 1.5) * think)
            if i % 2 == 1 and n_cand:
                r = call("choose", "POST", f"/api/sessions/{sid}/choose", json={"candidate": rng.randrange(n_cand)})
            else:
                r = call("click", "POST", f"/api/sessions/{sid}/click",
                         json={"x": cx + rng.uniform(-3, 3), "y": cy + rng.uniform(-3, 3), "positive": rng.random() < 0.8})
            if r is not None and r.status_code == 200:
                n_cand = len(r.json().get("candidates") or [])
                acked += 1
        call("accept", "POST", f"/api/sessions/{sid}/accept")
        call("export", "GET", f"/api/sessions/{sid}/mask", params={"format": "nii.gz"})
        if lost is not None:  # every acknowledged step must be in the stored history
            d = c.get(f"/api/sessions/{sid}")
            with lock:
                lost.append(acked - d.json()["iteration"] if d.status_code == 200 else acked)


def summarise(rows: list[dict]) -> dict:
    out = {}
    for kind in sorted({r["kind"] for r in rows}) + ["step"]:
        sel = [r for r in rows if (r["kind"] in ("click", "choose") if kind == "step" else r["kind"] == kind)]
        if not sel:
            continue
        s = np.array([r["seconds"] for r in sel])
        ov = np.array([r["server"] - r["model"] - r["queue"] for r in sel])
        m = np.array([r["model"] for r in sel])
        q = np.array([r["queue"] for r in sel])
        out[kind] = {"n": len(sel), "p50": round(float(np.percentile(s, 50)), 4), "p95": round(float(np.percentile(s, 95)), 4),
                     "max": round(float(s.max()), 4), "model_p50": round(float(np.percentile(m, 50)), 4),
                     "model_p95": round(float(np.percentile(m, 95)), 4),
                     "queue_p50": round(float(np.percentile(q, 50)), 4), "queue_p95": round(float(np.percentile(q, 95)), 4),
                     "overhead_p50": round(float(np.percentile(ov, 50)), 4),
                     "overhead_p95": round(float(np.percentile(ov, 95)), 4)}
    return out


def main(argv=None) -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--n-samples", type=int, default=8, help="SPA samples when no model is given")
    ap.add_argument("--threads", type=int, default=1, help="the server's --threads (per model computation)")
    ap.add_argument("--workers", type=int, default=2, help="the server's --workers (model computations at once)")
    ap.add_argument("--think", type=float, default=1.5, help="mean think time between steps, seconds (0: back to back)")
    ap.add_argument("--data", default=None, help="worklist dataset (default: the server's embedded example)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-size", type=int, default=None, help="the server's --cache-size (default: its default)")
    ap.add_argument("--max-seconds", type=float, default=1800, help="stop waiting after this long")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    load0 = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="clinloop-load-"))
    model = model_folder(a.model, work, a.n_samples)
    srv = ServerProcess(model, a.data, work / "state", threads=a.threads, workers=a.workers,
                        log=work / "server.log",
                        extra=[] if a.cache_size is None else ["--cache-size", str(a.cache_size)]).start()
    import httpx

    try:
        from clinloop.data import load_dataset

        cases = [r["case_id"] for r in httpx.get(srv.url + "/api/cases").json()["cases"]]
        ds = load_dataset(a.data or work / "state" / "example")
        centres = lesion_centres(ds, cases)
        for case in cases:
            # warm-up (a worklist prefetch): the image embedding is computed once and cached
            sid = httpx.post(srv.url + "/api/sessions", json={"case_id": case}, timeout=600).json()["session_id"]
            httpx.post(srv.url + f"/api/sessions/{sid}/click", json={"x": centres[case][0], "y": centres[case][1]},
                       timeout=600)
        rows, errors, lock, lost = [], [], threading.Lock(), []
        threads = [threading.Thread(target=clinician, daemon=True,
                                    args=(srv.url, cases[u % len(cases)], centres[cases[u % len(cases)]], a.iterations,
                                          a.seed * 1000 + u, a.think, rows, errors, lock, lost))
                   for u in range(a.users)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, a.max_seconds - (time.perf_counter() - t0)))
        wall = time.perf_counter() - t0
        stuck = sum(t.is_alive() for t in threads)
        live = httpx.get(srv.url + "/api/info", timeout=30).json().get("live", {})
    finally:
        srv.stop()
    res = {"model": model, "users": a.users, "iterations": a.iterations, "think_seconds": a.think,
           "server_threads": a.threads, "server_workers": a.workers, "cases": len(cases),
           "cores": os.cpu_count(), "load_average_before": load0, "wall_seconds": round(wall, 1),
           "requests": len(rows), "errors": len(errors) + stuck, "error_samples": errors[:5],
           "throughput_rps": round(len(rows) / wall, 2), "busy_503": sum(r["kind"] == "busy" for r in rows),
           "lost_actions": int(sum(abs(x) for x in lost)), "sessions_checked": len(lost),
           "live_cache": live, "latency": summarise([r for r in rows if r["kind"] != "busy"])}
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
