"""Load benchmark (not a test): N concurrent simulated clinicians against a real
``clinloop serve`` process on loopback.

    .venv/bin/python benchmarks/bench_server_load.py [--model DIR] [--users 16] [--iterations 20] [--out r.json]

Each clinician opens a session on the worklist case, then makes
``--iterations`` interaction steps (a click, then alternately picking a random
candidate and clicking near the structure), then accepts and downloads the
mask. Every request's wall time is recorded; from the ``Server-Timing`` header
we also get the model's time, so ``overhead = total - model`` is the server's
own cost (encoding, SQLite, queueing for a worker thread). Reports p50/p95/max
latency per step kind, overhead, and errors (any non-2xx or exception).
Targets: 0 errors; p95 <= 0.5 s on 2 cores (reachable only when the model's own
step is well below 0.5 s / users-per-core).
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
from _serverproc import ServerProcess, demo_image, model_folder  # noqa: E402

_DUR = re.compile(r"(\w+);dur=([0-9.]+)")


def clinician(url: str, case: str, iters: int, seed: int, rows: list, errors: list, lock: threading.Lock) -> None:
    import httpx

    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=300, headers={"X-Clinloop-User": f"clinician{seed}"}) as c:
        def call(kind, method, path, **kw):
            t0 = time.perf_counter()
            try:
                r = c.request(method, path, **kw)
                dt = time.perf_counter() - t0
                timing = dict((k, float(v) / 1000) for k, v in _DUR.findall(r.headers.get("server-timing", "")))
                with lock:
                    rows.append({"kind": kind, "seconds": dt, "model": timing.get("model", 0.0),
                                 "server": timing.get("total", dt), "status": r.status_code})
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
        n_cand = 0
        for i in range(iters):
            if i % 2 == 1 and n_cand:
                r = call("choose", "POST", f"/api/sessions/{sid}/choose", json={"candidate": rng.randrange(n_cand)})
            else:
                r = call("click", "POST", f"/api/sessions/{sid}/click",
                         json={"x": 58 + rng.uniform(-4, 4), "y": 64 + rng.uniform(-4, 4), "positive": rng.random() < 0.8})
            if r is not None and r.status_code == 200:
                n_cand = len(r.json().get("candidates") or [])
        call("accept", "POST", f"/api/sessions/{sid}/accept")
        call("export", "GET", f"/api/sessions/{sid}/mask", params={"format": "nii.gz"})


def summarise(rows: list[dict]) -> dict:
    out = {}
    for kind in sorted({r["kind"] for r in rows}) + ["step"]:
        sel = [r for r in rows if (r["kind"] in ("click", "choose") if kind == "step" else r["kind"] == kind)]
        if not sel:
            continue
        s = np.array([r["seconds"] for r in sel])
        ov = np.array([r["server"] - r["model"] for r in sel])
        m = np.array([r["model"] for r in sel])
        out[kind] = {"n": len(sel), "p50": round(float(np.percentile(s, 50)), 4), "p95": round(float(np.percentile(s, 95)), 4),
                     "max": round(float(s.max()), 4), "model_p50": round(float(np.percentile(m, 50)), 4),
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
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    ap.add_argument("--max-seconds", type=float, default=1800, help="stop waiting after this long")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="clinloop-load-"))
    model = model_folder(a.model, work, a.n_samples)
    srv = ServerProcess(model, demo_image(work / "case.png"), work / "state", threads=a.threads,
                        log=work / "server.log").start()
    import httpx

    try:
        case = httpx.get(srv.url + "/api/cases").json()["cases"][0]["case_id"]
        # warm-up: the image embedding is computed once and cached (what a worklist prefetch would do)
        sid = httpx.post(srv.url + "/api/sessions", json={"case_id": case}, timeout=600).json()["session_id"]
        httpx.post(srv.url + f"/api/sessions/{sid}/click", json={"x": 58, "y": 64}, timeout=600)
        rows, errors, lock = [], [], threading.Lock()
        threads = [threading.Thread(target=clinician, args=(srv.url, case, a.iterations, u, rows, errors, lock), daemon=True)
                   for u in range(a.users)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, a.max_seconds - (time.perf_counter() - t0)))
        wall = time.perf_counter() - t0
        stuck = sum(t.is_alive() for t in threads)
    finally:
        srv.stop()
    res = {"model": model, "users": a.users, "iterations": a.iterations, "cores": os.cpu_count(), "wall_seconds": round(wall, 1),
           "requests": len(rows), "errors": len(errors) + stuck, "error_samples": errors[:5],
           "throughput_rps": round(len(rows) / wall, 2), "latency": summarise(rows)}
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
