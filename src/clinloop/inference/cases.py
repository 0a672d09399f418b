"""One case of ``clinloop predict``: run a model on a sample, write its maps.

A model is either *automatic* (LEXU and its baselines: ``predict(image)``) or
*interactive* (SPA/MedUHIP, click-/box-LiteMedSAM, MECCA: a ``Session`` on the sample, then
one click or box from the prompts CSV). Outputs per case (folder
``<out>/cases/<name>/``):

* ``mask``: the binary segmentation (probability >= 0.5, or the model's proposal);
* ``probability``: the predicted foreground probability in [0, 1];
* ``uncertainty``: the model's pixel uncertainty map (LEXU: the predicted
  disagreement map Ĥ; SPA: the sample variance; MECCA: 1 - confidence).

Volumes and images read from NIfTI (samples that carry an ``affine``) are
written as ``.nii.gz`` with the source affine (mask uint8, maps float32); 2-D
photos as PNG (mask 0/255, probability ``round(255 p)``, uncertainty
``round(255 u / max u)``: a display map, ``uncertainty_max`` in the CSV gives the
scale). ``done.json`` is written last (atomically) and holds the case's CSV row:
a case is finished exactly when it exists.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

COLUMNS = ("case_id", "patient_id", "status", "message", "predicted_disagreement", "uncertainty_max",
           "foreground_fraction", "seconds", "mask", "probability", "uncertainty")


class NoPrompt(ValueError):
    """An interactive model met a case without a click or box in the prompts CSV."""


def case_folder_name(case_id: str) -> str:
    """A file-system-safe folder name for ``case_id`` (a short hash is appended
    when characters had to be replaced, so two ids never share a folder)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(case_id)).strip(".") or "case"
    if safe != str(case_id):
        safe += "-" + hashlib.sha1(str(case_id).encode()).hexdigest()[:8]
    return safe


def read_prompts(path: str | Path) -> dict[str, dict]:
    """The prompts CSV -> ``{case_id: {"point": (x, y[, z])} | {"box": (x0, y0, x1, y1)[, "z": z]}}``.

    Header required: ``case_id,x,y[,z]`` (a first positive click, input pixels,
    x = column) or ``case_id,x0,y0,x1,y1[,z]`` (a box, inclusive corners). UTF-8 text (a byte-order mark
    is allowed); an empty file, a header without ``case_id``, a bad row or a case given twice is a
    ``ValueError`` naming the file (and the lines)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                         "save the prompts CSV as UTF-8") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read prompts ({e})") from e
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames:
        raise ValueError(f"{path}: empty prompts file; need a header case_id,x,y[,z] or case_id,x0,y0,x1,y1[,z] "
                         "and one row per case")
    if "case_id" not in reader.fieldnames:
        raise ValueError(f"{path} line 1: header {','.join(reader.fieldnames)!r} has no case_id column; need "
                         "case_id,x,y[,z] or case_id,x0,y0,x1,y1[,z]")
    out: dict[str, dict] = {}
    line_of: dict[str, int] = {}
    for row in reader:
        k = reader.line_num
        try:
            cid = row["case_id"]
            if row.get("x0") not in (None, ""):
                p: dict = {"box": tuple(float(row[c]) for c in ("x0", "y0", "x1", "y1"))}
                if row.get("z") not in (None, ""):
                    p["z"] = float(row["z"])
            else:
                p = {"point": tuple(float(row[c]) for c in ("x", "y", "z") if row.get(c) not in (None, ""))}
                if len(p["point"]) < 2:
                    raise KeyError("x, y")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} line {k}: need case_id,x,y[,z] or case_id,x0,y0,x1,y1[,z] ({e})") from None
        if cid in out:
            raise ValueError(f"{path}: case {cid!r} has two prompts (lines {line_of[cid]} and {k}); keep one")
        out[cid], line_of[cid] = p, k
    return out


def segment(model, sample, prompt: dict | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``sample`` -> ``(mask, probability, uncertainty, image_level)`` at the
    sample's spatial shape. Automatic 2-D models run slice by slice on volumes
    (axis D), their image-level score summed over the slices (LEXU: Σ Ĥ). An interactive model runs
    one :class:`~clinloop.interaction.session.Session` step, as in the workstation: a volume goes to
    ``start_volume`` where the model has one (SPA follows the click through the slices), the prompt is
    checked against the image, and a model that takes the case's structure gets the sample's (spa-general
    decodes a "nodule" with its expert)."""
    image = np.asarray(sample.image, dtype=np.float32)
    if hasattr(model, "start"):  # interactive
        from clinloop.interaction.session import Session

        if prompt is None:
            raise NoPrompt("no prompt: this model needs a click or box per case (--prompts CSV)")
        session = Session(model, sample, seed=seed)
        if "box" in prompt:
            prop = session.box(tuple(prompt["box"]) + ((prompt["z"],) if "z" in prompt else ()))
        else:
            prop = session.click(prompt["point"], True)
        unc = np.asarray(prop.uncertainty, dtype=np.float32)
        return (np.asarray(prop.mask, bool), np.asarray(prop.probability, np.float32), unc, float(unc.sum()))
    if sample.spatial_ndim == 2:
        prob, unc, score = model.predict(image)
    else:
        slices = [model.predict(image[:, d]) for d in range(image.shape[1])]
        prob = np.stack([s[0] for s in slices])
        unc = np.stack([s[1] for s in slices])
        score = float(sum(s[2] for s in slices))
    prob = np.asarray(prob, np.float32)
    return prob >= 0.5, prob, np.asarray(unc, np.float32), float(score)


def write_case(folder: Path, sample, mask, prob, unc) -> dict[str, str]:
    """Write the three maps into ``folder`` atomically; returns their file names."""
    from clinloop.data.writers import write_image, write_mask

    umax = float(unc.max()) if unc.size else 0.0
    if sample.spatial_ndim == 3 or sample.affine is not None:
        geo = {"affine": sample.affine, "spacing": sample.spacing}
        names = {"mask": "mask.nii.gz", "probability": "probability.nii.gz", "uncertainty": "uncertainty.nii.gz"}
        write_mask(folder / names["mask"], mask, **geo)
        write_image(folder / names["probability"], prob[None], **geo)
        write_image(folder / names["uncertainty"], unc[None], **geo)
    else:
        names = {"mask": "mask.png", "probability": "probability.png", "uncertainty": "uncertainty.png"}
        write_mask(folder / names["mask"], mask)
        write_image(folder / names["probability"], np.round(np.clip(prob, 0, 1) * 255)[None])
        scaled = np.round(unc / umax * 255) if umax > 0 else np.zeros_like(unc)
        write_image(folder / names["uncertainty"], np.clip(scaled, 0, 255)[None])
    return names


def finished_row(folder: Path) -> dict | None:
    """The CSV row of a finished case (``done.json`` readable and every file it
    names present), else None: the case is to be (re)done."""
    try:
        row = json.loads((folder / "done.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("status") != "ok":
        return None
    if not all((folder / Path(str(row.get(k, ""))).name).is_file() for k in ("mask", "probability", "uncertainty")):
        return None
    return row


def run_case(model, dataset, i: int, out: Path, prompts: dict, seed: int) -> dict:
    """Segment case ``i`` of ``dataset`` into ``out/cases/<name>/``; returns its CSV
    row. Any failure (unreadable file, no prompt, model error) becomes a row with
    ``status`` ``error`` and the message, and an ``error.json`` (retried next run)."""
    from clinloop.atomic import atomic_write_text

    cid = dataset.case_ids[i]
    folder = out / "cases" / case_folder_name(cid)
    row = {c: "" for c in COLUMNS}
    row.update(case_id=cid, patient_id=dataset.patient_ids[i])
    t0 = time.perf_counter()
    try:
        sample = dataset[i]
        mask, prob, unc, score = segment(model, sample, prompts.get(cid), seed)
        folder.mkdir(parents=True, exist_ok=True)
        names = write_case(folder, sample, mask, prob, unc)
        row.update(status="ok", predicted_disagreement=score, uncertainty_max=float(unc.max()),
                   foreground_fraction=float(mask.mean()),
                   **{k: f"cases/{folder.name}/{v}" for k, v in names.items()})
    except Exception as e:  # noqa: BLE001 - a bad case is reported, not fatal
        row.update(status="error", message=f"{type(e).__name__}: {e}".replace("\n", " ")[:500])
    row["seconds"] = round(time.perf_counter() - t0, 4)
    folder.mkdir(parents=True, exist_ok=True)
    if row["status"] == "ok":
        atomic_write_text(folder / "done.json", json.dumps(row) + "\n")  # last: marks the case finished
        (folder / "error.json").unlink(missing_ok=True)
    else:
        atomic_write_text(folder / "error.json", json.dumps(row) + "\n")
    return row
