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

    ``rows``: ``[{case_id, patient_id, index[, rank, predicted_disagreement]}]``
    in worklist order; ``index``: case id -> dataset index."""

    dataset: Any = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    ranked_by: str | None = None

    def load(self, case_id: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The channels-first image and stored meta of a case (``None``: not in the worklist)."""
        if self.dataset is None or case_id not in self.index:
            return None
        s = self.dataset[self.index[case_id]]
        meta = {"format": s.provenance.get("format", getattr(self.dataset, "format", "")),
                "modality": str(s.provenance.get("modality", "")), "spacing": list(map(float, s.spacing)),
                "affine": None if s.affine is None else np.asarray(s.affine).tolist(),
                "source": "case", "case_id": case_id}
        return s.image, meta


def build_worklist(data: str | Path | None, data_format: str | None = None, lexu: Any = None,
                   limit: int | None = None, options: dict[str, Any] | None = None) -> Worklist:
    """Load ``data`` (any supported layout) and, with a LEXU predictor (or its
    model folder), rank the cases by predicted disagreement (highest first)."""
    if data is None:
        return Worklist()
    from clinloop.data import load_dataset

    ds = load_dataset(data, format=data_format, **(options or {}))
    n = len(ds) if limit is None else min(len(ds), int(limit))
    rows = [{"case_id": str(ds.case_ids[i]), "patient_id": str(ds.patient_ids[i]), "index": i} for i in range(n)]
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
