"""``clinloop predict``: segment a whole collection, resumably, in parallel, in shards.

    import clinloop
    summary = clinloop.predict("data/lidc", "preds/")              # shipped LEXU, no clicks
    summary = clinloop.predict("data/lidc", "preds/", model="spa-lidc", prompts="clicks.csv",
                               workers=2, shard="0/4")

Every case of the dataset (any layout :func:`clinloop.data.load_dataset` reads)
gets a folder ``<out>/cases/<name>/`` with its mask, probability and uncertainty
maps (:mod:`clinloop.inference.cases`); ``<out>/predictions.csv`` has one row per
case (columns :data:`~clinloop.inference.cases.COLUMNS`: predicted disagreement,
status ``ok``/``error`` with the message, seconds).

* **Resumable**: a case is finished when its ``done.json`` (written last, after its
  files) exists; a rerun skips finished cases, redoes the others (files are
  written to temporary names and renamed) and never rewrites a finished one.
* **Bad cases** (unreadable file, no prompt for an interactive model) get an
  ``error`` row and are retried by the next run; they never stop the run.
* **Workers**: ``workers`` spawned processes, each loading the model once, torch
  threads = cores // workers.
* **Shards**: ``shard="i/n"`` (0-based ``i``) takes the cases at positions
  ``i, i+n, i+2n, ...`` of the sorted case ids: the n shards partition the
  collection exactly, on any machine. Shards may share one ``out`` folder
  (each run rebuilds ``predictions.csv`` from every finished case's ``done.json``).
* **What made it**: ``<out>/run.json`` (:func:`check_run`, written atomically before any
  case) records the model (its ``config.json`` and ``weights.pt`` sha256), the prompts
  file (sha256 and each case's prompt), the seed and the reader options. A rerun into
  the same ``out`` with another model, seed or reader options, or another prompt for a
  finished case, is refused (``ValueError``): its finished cases are not that run's.
  Prompts added for cases that had none are fine (those cases were not finished).
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clinloop.atomic import file_sha256
from clinloop.config_options import opt
from clinloop.inference.cases import COLUMNS, case_folder_name, finished_row, read_prompts, run_case

DEFAULT_MODEL = "lexu-lidc"
RUN_FILE = "run.json"
SAME_RUN = ("config_sha256", "weights_sha256", "seed", "format", "structure", "task")  # run.json keys a rerun keeps


@dataclass(kw_only=True)
class PredictOptions:
    """``clinloop predict`` (fields = flags)."""

    data: str = opt(help="dataset path (any supported layout)")
    out: str = opt(help="output folder (created; a rerun resumes it)")
    model: str = opt(DEFAULT_MODEL, help="model folder or shipped name (default: the shipped LEXU model, automatic)")
    format: str | None = opt(None, help="override layout auto-detection", type=str)
    structure: str | None = opt(None, help="RIGA structure: cup or disc", type=str)
    task: int | None = opt(None, help="QUBIQ task number", type=int)
    prompts: str | None = opt(None, help="CSV of one click (case_id,x,y[,z]) or box (case_id,x0,y0,x1,y1[,z]) "
                                         "per case, for interactive models (SPA, MedUHIP, LiteMedSAM, MECCA)", type=str)
    workers: int = opt(1, help="worker processes")
    shard: str = opt("0/1", help="i/n: this machine's share of the cases (0-based i)")
    seed: int = opt(0, help="seed of stochastic models (SPA samples)")
    progress: bool = opt(True, help="progress bar", cli=False)


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``ValueError`` otherwise."""
    try:
        i, n = (int(v) for v in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"--shard {shard!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {shard!r}: need 0 <= i < n (i is 0-based)")
    return i, n


def shard_indices(case_ids: list[str], i: int, n: int) -> list[int]:
    """Dataset indices of shard ``i`` of ``n``: positions ``i, i+n, ...`` in sorted-id order."""
    order = sorted(range(len(case_ids)), key=lambda k: str(case_ids[k]))
    return sorted(order[i::n])


def _sha256(path: str | Path | None) -> str | None:
    p = None if path is None else Path(path)
    return file_sha256(p) if p is not None and p.is_file() else None


def run_record(o: PredictOptions, model_dir: Path, fmt: str | None, prompts: dict) -> dict[str, Any]:
    """What produces ``o.out``'s predictions (``run.json``): the model, the sha256 of its ``config.json`` and
    ``weights.pt``, the prompts file (sha256, each case's prompt), the seed and the reader options."""
    return {"model": str(o.model), "model_dir": str(model_dir), "config_sha256": _sha256(model_dir / "config.json"),
            "weights_sha256": _sha256(model_dir / "weights.pt"),
            "prompts": None if o.prompts is None else str(o.prompts),
            "prompts_sha256": _sha256(o.prompts), "seed": o.seed, "format": fmt, "structure": o.structure,
            "task": o.task, "prompt_by_case": json.loads(json.dumps(prompts))}


def check_run(out: Path, record: dict[str, Any]) -> None:
    """``ValueError`` when ``out/run.json`` names another model, seed or reader options than ``record``, or
    another prompt for a case finished in ``out`` (its files are another run's); else write ``record`` there
    (atomically)."""
    from clinloop.atomic import atomic_write_text

    path = out / RUN_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: unreadable ({e}); choose another --out") from None
        def short(v):  # a sha256 by its first 12 digits
            return v[:12] if isinstance(v, str) and len(v) == 64 else v

        diff = [f"{k} {short(old.get(k))!r}, now {short(record[k])!r}" for k in SAME_RUN if old.get(k) != record[k]]
        changed = sorted(c for c, p in (old.get("prompt_by_case") or {}).items()
                         if record["prompt_by_case"].get(c) != p and finished_row(out / "cases" / case_folder_name(c)))
        if changed:
            diff.append(f"another prompt for {len(changed)} finished case(s), e.g. {changed[0]}")
        if diff:
            raise ValueError(f"--out {out} holds the predictions of another run (model {old.get('model')!r}; "
                             f"{'; '.join(diff)}); choose another --out")
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def _dataset(o: PredictOptions):
    from clinloop.data import load_dataset

    extra = {k: v for k, v in (("structure", o.structure), ("task", o.task)) if v is not None}
    return load_dataset(o.data, format=o.format, **extra)


def _load_model(name: str):
    from clinloop.models.registry import load_model, resolve_model_dir

    return load_model(resolve_model_dir(name))


# ---------------------------------------------------------------- worker processes (spawn)
_WORKER: dict[str, Any] = {}


def _init_worker(options: dict, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    o = PredictOptions(**options)
    try:
        _WORKER.update(options=o, model=_load_model(o.model), dataset=_dataset(o),
                       prompts=read_prompts(o.prompts) if o.prompts else {})
    except Exception as e:  # noqa: BLE001 - a failing initializer would be restarted forever: fail the tasks
        _WORKER["error"] = f"{type(e).__name__}: {e}"


def _work(i: int) -> dict:
    w = _WORKER
    if "error" in w:
        raise ValueError(f"predict worker could not start: {w['error']}")
    return run_case(w["model"], w["dataset"], i, Path(w["options"].out), w["prompts"], w["options"].seed)


def _write_csv(ds, out: Path) -> Path:
    """``predictions.csv`` from every case folder's ``done.json`` / ``error.json``, dataset order."""
    from clinloop.atomic import atomic_write_text

    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    wr.writeheader()
    for cid in ds.case_ids:
        folder = out / "cases" / case_folder_name(cid)
        row = finished_row(folder)
        if row is None and (folder / "error.json").is_file():
            try:
                row = json.loads((folder / "error.json").read_text())
            except (OSError, ValueError):
                row = None
        if row is not None:
            wr.writerow(row)
    path = out / "predictions.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def predict(options: PredictOptions) -> dict[str, Any]:
    """Segment this shard's unfinished cases; returns a summary (``cases`` in the
    dataset, ``shard_cases``, ``skipped`` (already finished), ``ok``, ``errors``
    (case id -> message), ``seconds``, ``cases_per_second``, ``csv``)."""
    o = options
    i, n = parse_shard(o.shard)
    if o.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {o.workers}")
    if o.prompts and not Path(o.prompts).is_file():
        raise FileNotFoundError(f"--prompts {o.prompts}: no such file")
    prompts = read_prompts(o.prompts) if o.prompts else {}
    from clinloop.models.registry import read_config, resolve_model_dir
    from clinloop.paths import output_folder

    model_dir = resolve_model_dir(o.model)
    read_config(model_dir)  # a bad --model fails here, before any worker starts
    ds = _dataset(o)
    names = [case_folder_name(c) for c in ds.case_ids]
    if len(set(names)) != len(names):
        dup = sorted({c for c, nm in zip(ds.case_ids, names) if names.count(nm) > 1})
        raise ValueError(f"{o.data}: case ids are not unique ({', '.join(map(str, dup[:5]))})")
    unknown = sorted(set(prompts) - set(map(str, ds.case_ids)))
    if unknown:
        print(f"predict: {len(unknown)} prompt(s) name cases not in {o.data}: {', '.join(unknown[:5])}"
              + (" ..." if len(unknown) > 5 else ""), file=sys.stderr)
    out = output_folder(o.out)  # a clear error when --out is a file
    check_run(out, run_record(o, model_dir, getattr(ds, "format", None) or o.format, prompts))
    mine = shard_indices(ds.case_ids, i, n)
    todo = [k for k in mine if finished_row(out / "cases" / names[k]) is None]
    skipped = len(mine) - len(todo)
    from tqdm import tqdm

    t0 = time.perf_counter()
    rows: list[dict] = []
    bar = tqdm(total=len(mine), initial=skipped, desc="predict", unit="case", disable=not o.progress)
    if o.workers == 1 or len(todo) <= 1:
        model = _load_model(o.model)
        for k in todo:
            rows.append(run_case(model, ds, k, out, prompts, o.seed))
            bar.update(1)
    else:
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // o.workers)
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(o.workers, len(todo)), initializer=_init_worker, initargs=(asdict(o), threads)) as pool:
            for row in pool.imap_unordered(_work, todo):
                rows.append(row)
                bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    csv_path = _write_csv(ds, out)
    errors = {r["case_id"]: r["message"] for r in rows if r["status"] != "ok"}
    for cid, msg in list(errors.items())[:20]:
        print(f"predict: {cid}: {msg}", file=sys.stderr)
    if len(errors) > 20:
        print(f"predict: ... and {len(errors) - 20} more errors (see {csv_path})", file=sys.stderr)
    return {"cases": len(ds), "shard": f"{i}/{n}", "shard_cases": len(mine), "skipped": skipped,
            "ok": len(rows) - len(errors), "errors": errors, "seconds": round(seconds, 3),
            "cases_per_second": round(len(rows) / seconds, 3) if rows and seconds > 0 else None,
            "csv": str(csv_path)}
