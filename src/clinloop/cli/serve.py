"""``clinloop serve --data PATH --model MODEL_DIR``: the clinician's workstation
(REST API + browser UI) on http://127.0.0.1:8000 by default.

Without ``--data`` the worklist is the embedded example (8 synthetic multi-rater
cases written once under the state folder), so ``clinloop serve`` alone works
offline on a fresh install."""
from __future__ import annotations

import argparse

EXAMPLE_CASES = 8
DEFAULT_CACHE = 64  # live sessions; 32 clinicians with one open session each (+ warm-ups) fit without replay


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the workstation (web UI + REST API)", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="dataset for the worklist (any supported layout or one image file); "
                   "default: the embedded synthetic example")
    p.add_argument("--format", default=None, help="override dataset layout auto-detection")
    p.add_argument("--model", action="append", default=None, metavar="M",
                   help="interactive model folder or shipped name (default: spa-general); repeat to serve several: "
                        "the first is the default, the page offers the others for new sessions (e.g. --model "
                        "spa-general --model mecca-lidc3d)")
    p.add_argument("--lexu", default=None, help="LEXU model folder/name: rank the worklist by predicted disagreement")
    p.add_argument("--limit", type=int, default=None, help="at most this many worklist cases")
    p.add_argument("--structure", default=None, help="RIGA structure (disc/cup) for the worklist")
    p.add_argument("--task", type=int, default=None, help="QUBIQ task number for the worklist")
    p.add_argument("--volumes", action="store_true",
                   help="LIDC crops: one volume case per nodule (its slices stacked) instead of one case per slice")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=None, help="shared bearer token required on every /api request")
    p.add_argument("--tokens-file", default=None, help="JSON file {token: user name}: per-user bearer tokens")
    p.add_argument("--state-dir", default=None,
                   help="sessions, accepted masks, profiles (default: $CLINLOOP_STATE or ~/.local/share/clinloop)")
    p.add_argument("--max-upload-mb", type=float, default=256.0)
    p.add_argument("--max-voxels", type=int, default=64 * 1024 * 1024)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads per model computation (default: cores / workers)")
    p.add_argument("--workers", type=int, default=2,
                   help="model computations at once; the others queue (default 2: on 2 cores, two 1-thread steps "
                        "at once served 16 clinicians with step p95 0.27-0.38 s against 0.63 s for one 2-thread step at a time; "
                        "benchmarks/bench_server_load.py)")
    p.add_argument("--cache-size", type=int, default=None,
                   help="sessions kept in memory (others are rebuilt by replay when used; one in use is never "
                        f"dropped); default: {DEFAULT_CACHE} or 4 per user of --tokens-file, whichever is larger")
    p.add_argument("--queue-limit", type=int, default=64,
                   help="requests waiting for a model worker before the server answers 503 + Retry-After (default 64)")
    p.add_argument("--queue-timeout", type=float, default=60.0,
                   help="seconds a request may wait for a model worker before 503 (default 60)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a request body may stall before 408 and a closed connection (default 30)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host (and POSTs whose Origin) names NAME, e.g. a reverse proxy's "
                        "public name (repeatable; '*' turns the Host check off). Default: only the bound address")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    from pathlib import Path

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    from clinloop.server.store import Store, default_state_dir

    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    Store(state_dir).close()  # damaged / locked / newer database: one-line error (StoreError) before the model loads
    import torch

    torch.set_num_threads(threads)
    import uvicorn

    from clinloop.server.app import Limits, create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tokens = None
    if args.tokens_file:
        try:
            tokens = json.loads(Path(args.tokens_file).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{args.tokens_file}: cannot read tokens file ({e})") from e
        if not isinstance(tokens, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()):
            raise ValueError(f"{args.tokens_file}: must be a JSON object {{token: user name}}")
    cache = args.cache_size if args.cache_size is not None else max(DEFAULT_CACHE, 4 * len(set((tokens or {}).values())))
    if cache < 1 or args.queue_limit < 0 or args.queue_timeout <= 0 or args.body_timeout <= 0:
        raise ValueError("--cache-size must be >= 1, --queue-limit >= 0, --queue-timeout and --body-timeout > 0")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not (args.token or tokens):
        logging.getLogger("clinloop.server").warning(
            "binding to %s without --token: anyone who can reach this address can read the data", args.host)
    from clinloop.models.registry import load_model

    model, *more = [load_model(m) for m in (args.model or [None])]
    data, data_format = args.data, args.format
    if data is None:
        from clinloop.data.synthetic import write_example

        data, data_format = write_example(state_dir / "example", EXAMPLE_CASES), None
        print(f"no --data: worklist = the embedded example ({EXAMPLE_CASES} synthetic cases, 4 raters) in {data}",
              flush=True)
    opts = {k: v for k, v in (("structure", args.structure), ("task", args.task)) if v is not None}
    if args.volumes:
        opts["volumes"] = True
    from clinloop.server.guard import bound_hosts

    app = create_app(model, state_dir=state_dir, data=data, data_format=data_format,
                     data_options=opts,
                     token=args.token, tokens=tokens, lexu=args.lexu, case_limit=args.limit,
                     limits=Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_voxels=args.max_voxels,
                                   model_workers=args.workers, live_sessions=cache, queue_limit=args.queue_limit,
                                   queue_timeout=args.queue_timeout, body_timeout=args.body_timeout),
                     allowed_hosts=bound_hosts(args.host, args.allowed_host), models=more,
                     trusted_origins=[h for h in args.allowed_host if h != "*"])
    print(f"clinloop workstation: open http://{args.host}:{args.port}/ in a browser  (model {', '.join(app.state.ctx.served)}, "
          f"{len(app.state.worklist.rows)} cases; state in {state_dir}; Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
