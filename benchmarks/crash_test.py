"""Crash test: SIGKILL the workstation mid-session, restart it, verify that
nothing accepted is lost and that open sessions resume exactly.

    .venv/bin/python benchmarks/crash_test.py [--model DIR] [--rounds 3] [--out result.json]

Each round: several sessions are driven through click/choose/accept; one more
request is left in flight and the server process is killed with SIGKILL at a
random moment during it; a new server on the same ``--state-dir`` must then
(1) serve every mask acknowledged by an ``accept`` byte-for-byte, with status
"accepted", (2) rebuild each open session to exactly the proposal it last
answered (or the in-flight one's next state), and (3) let them continue.
Exits non-zero when anything was lost.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serverproc import ServerProcess, demo_image, model_folder  # noqa: E402


def main(argv=None) -> int:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-samples", type=int, default=8, help="SPA samples when no model is given")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="clinloop-crash-"))
    model = model_folder(a.model, work, a.n_samples)
    data = demo_image(work / "case.png")
    state = work / "state"
    accepted: dict[str, bytes] = {}  # session -> PNG of the acknowledged accepted mask
    open_last: dict[str, dict] = {}  # session -> last proposal answered
    problems: list[str] = []
    report = {"model": model, "rounds": []}
    srv = ServerProcess(model, data, state, log=work / "server.log")
    for rnd in range(a.rounds):
        t0 = time.time()
        srv.start()
        c = httpx.Client(base_url=srv.url, timeout=120)
        # --- verify everything from earlier rounds survived the kill
        for sid, png in accepted.items():
            r = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"})
            if r.status_code != 200 or r.content != png:
                problems.append(f"round {rnd}: accepted mask of {sid} lost ({r.status_code})")
            elif c.get(f"/api/sessions/{sid}").json()["status"] != "accepted":
                problems.append(f"round {rnd}: session {sid} no longer accepted")
        resumed = 0
        for sid, last in list(open_last.items()):
            p = c.get(f"/api/sessions/{sid}/proposal").json()
            ok = p.get("mask") == last["mask"] or p.get("iteration") == last["iteration"] + 1  # in-flight one may have landed
            if not ok:
                problems.append(f"round {rnd}: open session {sid} resumed at iteration {p.get('iteration')} "
                                f"(last answered {last['iteration']})")
            r = c.post(f"/api/sessions/{sid}/click", json={"x": 58 + rng.random(), "y": 64, "positive": True})
            if r.status_code != 200:
                problems.append(f"round {rnd}: resumed session {sid} cannot continue ({r.status_code} {r.text[:100]})")
            else:
                resumed += 1
                open_last[sid] = r.json()
        # --- new work: two accepted sessions, one left open
        case = c.get("/api/cases").json()["cases"][0]["case_id"]
        for k in range(3):
            sid = c.post("/api/sessions", json={"case_id": case, "seed": rnd * 10 + k}).json()["session_id"]
            p = c.post(f"/api/sessions/{sid}/click", json={"x": 58 + rng.random(), "y": 64 + rng.random()}).json()
            if p.get("candidates"):
                p = c.post(f"/api/sessions/{sid}/choose", json={"candidate": rng.randrange(len(p["candidates"]))}).json()
            if k < 2:
                assert c.post(f"/api/sessions/{sid}/accept").status_code == 200
                accepted[sid] = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"}).content
            else:
                open_last[sid] = p
        # --- one request in flight, then SIGKILL at a random moment during it
        victim = next(iter(open_last))
        inflight = threading.Thread(target=lambda: _quiet_post(c, f"/api/sessions/{victim}/click",
                                                               {"x": 60.0, "y": 62.0, "positive": False}))
        inflight.start()
        time.sleep(rng.uniform(0.0, 0.4))
        srv.kill()
        inflight.join()
        c.close()
        report["rounds"].append({"round": rnd, "accepted_total": len(accepted), "open": len(open_last),
                                 "resumed": resumed, "seconds": round(time.time() - t0, 1)})
        print(f"round {rnd}: {len(accepted)} accepted, {len(open_last)} open, {resumed} resumed; killed", flush=True)
    # final verification after the last kill
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        for sid, png in accepted.items():
            r = c.get(f"/api/sessions/{sid}/mask", params={"format": "png"})
            if r.status_code != 200 or r.content != png:
                problems.append(f"final: accepted mask of {sid} lost ({r.status_code})")
        for sid in open_last:
            if c.get(f"/api/sessions/{sid}/proposal").status_code != 200:
                problems.append(f"final: open session {sid} cannot be resumed")
    srv.stop()
    report.update(accepted_checked=len(accepted), open_checked=len(open_last), problems=problems,
                  lost=len(problems), state_dir=str(state))
    print(json.dumps(report, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    return 1 if problems else 0


def _quiet_post(c, path, body):
    try:
        c.post(path, json=body)
    except Exception:  # noqa: BLE001 - the server is being killed under this request
        pass


if __name__ == "__main__":
    sys.exit(main())
