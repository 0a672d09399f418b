"""Burst benchmark (not a test): N model steps arriving at the same instant, with and
without the model queue, against a real ``clinloop serve`` process on loopback.

    .venv/bin/python benchmarks/bench_server_burst.py [--model DIR] [--burst 16] [--rounds 3]
        [--warmup-rounds 1] [--idle 5] [--configs 2:1,16:2] [--out r.json]

``--configs`` lists servers as ``workers:threads`` (``clinloop serve --workers W
--threads T``). The default compares

* ``2:1`` - the default server (``--workers 2``, cores / workers = 1 torch thread on
  2 cores): at most two steps compute at once, the others wait in the queue;
* ``16:2`` - no effective queue: 16 workers, so all 16 steps compute at once, each
  with 2 torch threads (what every step had before the queue existed).

Each server runs on its embedded example worklist (8 synthetic 128² cases,
shipped ``spa-lidc``). Every case is opened and clicked once first (the image
embeddings are cached, as a worklist prefetch would do). Then:

* *idle*: ``--idle`` steps one after another (nothing else running on the server);
* *burst*: ``--rounds`` times, ``--burst`` clients (client u on case u mod 8)
  release one click each at the same instant (a barrier). ``--warmup-rounds``
  bursts run before and are not recorded: the first burst on a fresh server is
  slower, as it starts the request threads and their torch thread teams.

Every measured step is the first click on a freshly opened session (opening is
not timed). Per server it prints the idle step time (median) and, for the burst,
each request's wall time median / max and its ratio to the idle median, and the
``Server-Timing`` breakdown: ``model`` (computing), ``queue`` (waiting for a model
worker) and ``overhead`` = total - model - queue, median / max. ``ratio_model`` is
the burst's model time over the idle model time: how much slower each
computation ran while sharing the cores. The 1-minute load average is printed
before and after each server (other jobs on the machine inflate every figure,
and a benchmark niced below another job gets more of the CPU the more threads it
runs: that favours ``16:2`` over ``2:1``; compare the two on an idle machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serverproc import ServerProcess, model_folder  # noqa: E402
from bench_server_load import lesion_centres, server_timing  # noqa: E402


def parse_configs(text: str) -> list[tuple[int, int]]:
    """``"2:1,16:2"`` -> ``[(2, 1), (16, 2)]`` (workers, threads per computation)."""
    out = []
    for part in text.split(","):
        w, _, t = part.strip().partition(":")
        if not w.isdigit() or not t.isdigit() or int(w) < 1 or int(t) < 1:
            raise ValueError(f"config {part!r}: expected WORKERS:THREADS, both integers >= 1")
        out.append((int(w), int(t)))
    if not out:
        raise ValueError("no config given")
    return out


def _med_max(x) -> list[float]:
    x = np.asarray(x, dtype=float)
    return [round(float(np.median(x)), 4), round(float(x.max()), 4)]


def summarise_burst(idle: list[dict], burst: list[dict]) -> dict:
    """Idle and burst rows (``seconds`` wall, ``model``, ``queue``, ``total``) -> the report.

    Ratios are to the idle *median*: ``ratio`` = wall / idle wall, ``ratio_model`` =
    model / idle model; each is given as [median, max] over the burst's requests."""
    iw = float(np.median([r["seconds"] for r in idle]))
    im = float(np.median([r["model"] for r in idle]))
    w = np.array([r["seconds"] for r in burst])
    m = np.array([r["model"] for r in burst])
    return {
        "idle": {"n": len(idle), "wall_median": round(iw, 4), "model_median": round(im, 4)},
        "burst": {"n": len(burst), "wall": _med_max(w), "ratio": _med_max(w / iw),
                  "model": _med_max(m), "ratio_model": _med_max(m / im) if im > 0 else None,
                  "queue": _med_max([r["queue"] for r in burst]),
                  "overhead": _med_max([r["total"] - r["model"] - r["queue"] for r in burst])},
    }


def _click(client, url: str, case: str, centre: tuple[float, float], seed: int) -> tuple:
    """Open a session (untimed) and return (session id, a function that clicks it and returns the row)."""
    r = client.post(url + "/api/sessions", json={"case_id": case, "seed": seed})
    r.raise_for_status()
    sid = r.json()["session_id"]

    def go() -> dict:
        t0 = time.perf_counter()
        r = client.post(url + f"/api/sessions/{sid}/click", json={"x": centre[0], "y": centre[1], "positive": True})
        dt = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"click {r.status_code}: {r.text[:200]}")
        st = server_timing(r.headers)
        return {"start": t0, "seconds": dt, "model": st.get("model", 0.0), "queue": st.get("queue", 0.0),
                "total": st.get("total", dt)}

    return sid, go


def run_server(model: str, workers: int, threads: int, a, work: Path) -> dict:
    import httpx
    from clinloop.data import load_dataset

    load0 = [round(x, 2) for x in os.getloadavg()]
    state = work / f"state-{workers}x{threads}"
    srv = ServerProcess(model, None, state, threads=threads, workers=workers, log=work / f"server-{workers}x{threads}.log",
                        extra=["--queue-limit", str(max(64, a.burst)), "--cache-size", str(4 * a.burst + 64)]).start()
    try:
        url = srv.url
        cases = [r["case_id"] for r in httpx.get(url + "/api/cases").json()["cases"]]
        centres = lesion_centres(load_dataset(state / "example"), cases)
        with httpx.Client(timeout=600) as c:
            for i, case in enumerate(cases):  # warm-up: embeddings cached
                _click(c, url, case, centres[case], 10_000 + i)[1]()
            idle = []
            for i in range(a.idle):
                case = cases[i % len(cases)]
                _, go = _click(c, url, case, centres[case], 20_000 + i)
                idle.append(go())
        burst, errors = [], []
        lock = threading.Lock()
        for rnd in range(-a.warmup_rounds, a.rounds):  # rnd < 0: warm-up bursts, not recorded
            barrier = threading.Barrier(a.burst)

            def client(u: int) -> None:
                case = cases[u % len(cases)]
                with httpx.Client(timeout=600) as c:
                    try:
                        c.get(url + "/api/info")  # connection open before the barrier
                        _, go = _click(c, url, case, centres[case], 40_000 + 1000 * rnd + u)
                        barrier.wait()
                        row = go()
                        if rnd >= 0:
                            with lock:
                                burst.append({**row, "round": rnd})
                    except Exception as e:  # noqa: BLE001
                        barrier.abort()
                        with lock:
                            errors.append(f"{type(e).__name__}: {e}")

            ts = [threading.Thread(target=client, args=(u,), daemon=True) for u in range(a.burst)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=a.max_seconds)
            time.sleep(1.0)
    finally:
        srv.stop()
    load1 = [round(x, 2) for x in os.getloadavg()]
    res = {"workers": workers, "threads": threads, "load_average_before": load0, "load_average_after": load1,
           "errors": len(errors), "error_samples": errors[:5]}
    if idle and burst:
        res.update(summarise_burst(idle, burst))
        # each round: from the first request sent to the last answer
        res["burst"]["round_seconds"] = [round(max(r["start"] + r["seconds"] for r in burst if r["round"] == k)
                                               - min(r["start"] for r in burst if r["round"] == k), 3)
                                         for k in sorted({r["round"] for r in burst})]
        res["rows"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k != "start"}
                       for r in burst]
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n-samples", type=int, default=8, help="SPA samples when no model is given")
    ap.add_argument("--burst", type=int, default=16, help="simultaneous model steps")
    ap.add_argument("--rounds", type=int, default=3, help="bursts per server")
    ap.add_argument("--warmup-rounds", type=int, default=1,
                    help="bursts run first and not recorded (the server's request and torch threads get started)")
    ap.add_argument("--idle", type=int, default=5, help="steps one at a time on the idle server (the reference)")
    ap.add_argument("--configs", default="2:1,16:2", help="servers to compare, WORKERS:THREADS[,...]")
    ap.add_argument("--max-seconds", type=float, default=600, help="stop waiting for a client after this long")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    configs = parse_configs(a.configs)
    work = Path(tempfile.mkdtemp(prefix="clinloop-burst-"))
    model = model_folder(a.model, work, a.n_samples)
    t0 = time.time()
    res = {"model": model, "burst": a.burst, "rounds": a.rounds, "cores": os.cpu_count(),
           "warmup_rounds": a.warmup_rounds,
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "servers": []}
    for w, t in configs:
        r = run_server(model, w, t, a, work)
        res["servers"].append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "rows"}), flush=True)
    res["wall_seconds"] = round(time.time() - t0, 1)
    print("\nserver            load (before-after)  idle step  burst wall med / max (x idle)      "
          "model med / max (x idle model)   queue med / max  overhead med / max")
    for r in res["servers"]:
        if "burst" not in r:
            print(f"--workers {r['workers']} --threads {r['threads']}: no result ({r['error_samples']})")
            continue
        b = r["burst"]
        print(f"--workers {r['workers']:<2} --threads {r['threads']}  {r['load_average_before'][0]:.2f}-{r['load_average_after'][0]:.2f}"
              f"            {r['idle']['wall_median']:.3f} s    {b['wall'][0]:.2f} / {b['wall'][1]:.2f} s "
              f"({b['ratio'][0]:.1f}x / {b['ratio'][1]:.1f}x)      "
              f"{b['model'][0]:.2f} / {b['model'][1]:.2f} s ({b['ratio_model'][0]:.1f}x / {b['ratio_model'][1]:.1f}x)"
              f"    {b['queue'][0]:.2f} / {b['queue'][1]:.2f} s    "
              f"{1000 * b['overhead'][0]:.0f} / {1000 * b['overhead'][1]:.0f} ms   errors {r['errors']}")
        print(f"    each burst, first request sent to last answer: {', '.join(f'{x:.2f}' for x in b['round_seconds'])} s")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0 if all(r["errors"] == 0 and "burst" in r for r in res["servers"]) else 1


if __name__ == "__main__":
    sys.exit(main())
