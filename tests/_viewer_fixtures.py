"""A tiny worklist with raters for the viewer's tests: a 2-D case with three
raters whose Dice to the toy model's disc can be counted by hand, a second
2-D case of another structure, and a 6-slice volume with two raters.

The toy model (:mod:`_toy_server`) answers a positive click at (16, 16) with
the disc x² + y² <= 16 around it: 49 pixels (9 on the centre row, 7 on rows
±1 and ±2, 5 on rows ±3, 1 on rows ±4), 29 of them on rows 16..20."""
from __future__ import annotations

import numpy as np

from clinloop.data.registry import ListDataset
from clinloop.data.sample import MultiRaterSample


def disc(shape=(32, 32), c=(16, 16), r=4) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - c[1]) ** 2 + (xx - c[0]) ** 2 <= r * r


def samples() -> list[MultiRaterSample]:
    rng = np.random.default_rng(0)
    img = (40 + 20 * rng.random((1, 32, 32)) + 150 * disc()[None]).astype(np.float32)
    half = np.zeros((32, 32), bool)
    half[16:] = True  # rater C: rows 16..31, every column (512 px)
    a = MultiRaterSample(img, np.stack([disc(), np.zeros((32, 32), bool), half]), case_id="c1",
                         patient_id="P-001", structure="disc", rater_ids=["A", "B", "C"])
    b = MultiRaterSample(img.copy(), np.zeros((0, 32, 32), bool), case_id="c2", patient_id="P-002", structure="ring")
    vol = np.repeat(img[:, None], 6, axis=1)
    r0 = np.zeros((6, 32, 32), bool)
    r0[2], r0[3] = disc(), disc()
    r1 = np.zeros((6, 32, 32), bool)
    r1[3] = disc()
    v = MultiRaterSample(vol, np.stack([r0, r1]), case_id="v1", patient_id="P-003", structure="disc",
                         provenance={"modality": "MR"})
    return [a, b, v]


def dataset() -> ListDataset:
    return ListDataset(samples(), name="viewer-test")
