"""The worklist: cases from ``--data`` (any supported layout), optionally
ranked by LEXU's predicted disagreement (highest first)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Worklist:
    """Cases from ``--data`` (lazy dataset), optionally ranked by LEXU.

    ``rows``: ``[{case_id, patient_id, name, structure, index[, rank,
    predicted_disagreement]}]`` in worklist order (``name``: a readable label,
    see :func:`case_name`; ``structure``: what to segment, from the dataset);
    ``index``: case id -> dataset index."""

    dataset: Any = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    ranked_by: str | None = None

    def load(self, case_id: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The channels-first image and stored meta of a case (``None``: not in the worklist)."""
        if self.dataset is None or case_id not in self.index:
            return None
        s = self.dataset[self.index[case_id]]
        for r in self.rows:  # large collections list without reading headers: learn the structure now
            if r["case_id"] == case_id and not r.get("structure") and s.structure:
                r["structure"] = s.structure
        meta = {"format": s.provenance.get("format", getattr(self.dataset, "format", "")),
                "modality": str(s.provenance.get("modality", "")), "spacing": list(map(float, s.spacing)),
                "affine": None if s.affine is None else np.asarray(s.affine).tolist(),
                "source": "case", "case_id": case_id, "structure": s.structure or ""}
        return s.image, meta


def build_worklist(data: str | Path | None, data_format: str | None = None, lexu: Any = None,
                   limit: int | None = None, options: dict[str, Any] | None = None) -> Worklist:
    """Load ``data`` (any supported layout) and, with a LEXU predictor (or its
    model folder), rank the cases by predicted disagreement (highest first)."""
    if data is None:
        return Worklist()
    from clinloop.data import load_dataset

    return worklist_from_dataset(load_dataset(data, format=data_format, **(options or {})), lexu, limit)


def case_name(case_id: str, patient_id: str, subject: str | None = None) -> str:
    """A readable case label: the dataset's subject/patient id when it says more
    than a generic case id (BraTS ``Brats18_CBICA_AOO_1`` for ``case_0``), else the case id."""
    who = subject or patient_id
    if who and who != case_id and not case_id.startswith(who):
        return f"{who} ({case_id})"
    return case_id


def _describe(ds: Any, i: int, max_headers: int) -> dict[str, Any]:
    row = {"case_id": str(ds.case_ids[i]), "patient_id": str(ds.patient_ids[i]), "index": i}
    h = None
    if len(ds) <= max_headers:  # big collections list fast; their structure is filled in when a case opens
        try:
            h = ds.header(i)
        except Exception:  # noqa: BLE001 - a damaged case still lists; opening it reports the error
            h = None
    subject = (h.provenance.get("subject_id") if h is not None else None) or None
    row["name"] = case_name(row["case_id"], row["patient_id"], subject)
    row["structure"] = (h.structure if h is not None else None) or getattr(ds, "structure", None) or ""
    return row


def worklist_from_dataset(ds: Any, lexu: Any = None, limit: int | None = None, max_headers: int = 64) -> Worklist:
    """The worklist of a loaded dataset (see :func:`build_worklist`)."""
    n = len(ds) if limit is None else min(len(ds), int(limit))
    rows = [_describe(ds, i, max_headers) for i in range(n)]
    ranked_by = None
    if lexu is not None:
        from clinloop.evaluation.triage import rank_cases

        if isinstance(lexu, (str, Path)):
            from clinloop.models.lexu.model import load_lexu
            from clinloop.models.registry import resolve_model_dir

            lexu = load_lexu(resolve_model_dir(lexu))
        ranked = rank_cases(lexu, [ds[i] for i in range(n)])
        by_id = {r["case_id"]: r for r in rows}
        rows = [{**by_id[str(r["case_id"])], "rank": r["rank"],
                 "predicted_disagreement": r["predicted_disagreement"]} for r in ranked]
        ranked_by = "lexu"
    index: dict[str, int] = {}
    for r in rows:
        index.setdefault(r["case_id"], r["index"])
    return Worklist(ds, rows, index, ranked_by)
