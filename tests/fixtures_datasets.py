"""Tiny fake files in each real dataset layout (LIDC, RIGA, QUBIQ, BU-BIL, ISIC),
so the readers are tested without ../shared/data. Every generator is
deterministic (seeded) and returns the path to hand to ``load_dataset`` plus,
where useful, the arrays it wrote."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _blob(rng, shape, p=0.3):
    """A random but non-trivial binary mask (a filled rectangle plus noise)."""
    m = np.zeros(shape, bool)
    h, w = shape[-2:]
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    m[..., y0:y0 + h // 3 + 1, x0:x0 + w // 3 + 1] = True
    return m | (rng.random(shape) < p * 0.1)


def make_lidc_npz(path: Path, groups=(("P1", 0, (0, 1, 2)), ("P1", 1, (0, 1)), ("P2", 0, (3, 4, 6, 7))),
                  raters: int = 4, size: int = 8, seed: int = 0, **override) -> dict[str, np.ndarray]:
    """An LIDC-style npz; ``groups`` = (patient, nodule, slice numbers). Rows are
    written in a shuffled order (the real file is not sorted either).
    ``override`` replaces or (value ``None``) removes arrays."""
    rng = np.random.default_rng(seed)
    rows = [(p, k, s) for p, k, ss in groups for s in ss]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    n = len(rows)
    arrays = {
        "image": rng.integers(0, 256, (n, size, size)).astype(np.uint8),
        "masks": np.stack([_blob(rng, (raters, size, size)) for _ in range(n)]) if raters else np.zeros((n, 0, size, size), bool),
        "patient": np.array([r[0] for r in rows]),
        "nodule": np.array([r[1] for r in rows], dtype=np.int64),
        "slice": np.array([r[2] for r in rows], dtype=np.int64),
    }
    for k, v in override.items():
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    np.savez_compressed(path, **arrays)
    return arrays


def make_riga_npz(path: Path, n: int = 3, raters: int = 6, size: int = 12, seed: int = 0,
                  bad: tuple[tuple[int, int], ...] = ((1, 2),), **override) -> dict[str, np.ndarray]:
    """A RIGA-style npz: disc blobs with cups inside; ``bad`` (row, rater) pairs
    get rater_ok False and all-zero masks, as in the real file."""
    rng = np.random.default_rng(seed)
    disc = np.zeros((n, raters, size, size), np.uint8)
    cup = np.zeros_like(disc)
    for i in range(n):
        for r in range(raters):
            a = int(rng.integers(1, 3))
            disc[i, r, a:size - a, a:size - a] = 1
            cup[i, r, size // 2 - 2:size // 2 + 2, size // 2 - 2:size // 2 + 1 + (r % 2)] = 1
    ok = np.ones((n, raters), bool)
    for i, r in bad:
        ok[i, r] = False
        disc[i, r] = 0
        cup[i, r] = 0
    arrays = {
        "image": rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8),
        "disc": disc, "cup": cup, "rater_ok": ok,
        "case_id": np.arange(1, n + 1, dtype=np.int64),
    }
    for k, v in override.items():
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    np.savez_compressed(path, **arrays)
    return arrays


def _save_nii(path: Path, a: np.ndarray, zooms=None):
    import nibabel as nib

    aff = np.eye(4)
    if zooms is not None:
        aff[np.arange(len(zooms)), np.arange(len(zooms))] = zooms
    img = nib.Nifti1Image(a, aff)
    if zooms is not None:
        img.header.set_zooms(tuple(zooms))
    nib.save(img, str(path))


def make_qubiq(root: Path, splits=("Training",), cases: int = 3, tasks=(1,), raters: int = 3,
               shape=(8, 10), zooms=(0.5, 0.8), seed: int = 0, missing=(), seg_dtype=np.uint8,
               mask_values=(0, 1)) -> Path:
    """QUBIQ folders ``root/<split>/caseNN/image.nii.gz`` + ``task0T_segRR.nii.gz``.
    ``missing`` lists (split, case number, task, rater) files not to write."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in range(1, cases + 1):
            d = root / split / f"case{c:02d}" if split else root / f"case{c:02d}"
            d.mkdir(parents=True, exist_ok=True)
            _save_nii(d / "image.nii.gz", rng.normal(100, 20, shape).astype(np.float32), zooms)
            for t in tasks:
                for r in range(1, raters + 1):
                    if (split, c, t, r) in missing:
                        continue
                    m = _blob(rng, shape)
                    a = np.where(m, mask_values[1], mask_values[0]).astype(seg_dtype)
                    _save_nii(d / f"task{t:02d}_seg{r:02d}.nii.gz", a, zooms)
    return root


def _png(path: Path, a: np.ndarray):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def make_bubil_dataset(d: Path, names=("B01", "B02"), persons=(1, 2), tools=("Amira", "ImageJ"),
                       size=(12, 16), mask_size=None, ann_folder="ExpertsAnnotations", rgb_for=("Person2_Amira",),
                       upper_for=("Person1_ImageJ",), missing=(), seed: int = 0) -> dict[str, np.ndarray]:
    """One ``BU-BIL_DatasetN`` folder. Cell = 0, background = 255; masks of the
    raters in ``rgb_for`` are saved as RGB; those in ``upper_for`` are named
    ``Seg_<NAME>.png`` (upper case) to test case-insensitive matching.
    ``mask_size`` (bigger than ``size``) imitates Dataset6: masks drawn in a
    larger frame with the cell centred at a known place. Returns the boolean
    masks written, keyed ``"<name>/<rater>"`` (in the mask frame)."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in names:
        _png(d / "RawImages" / f"{name}.png", rng.integers(0, 256, size).astype(np.uint8))
        for p in persons:
            for t in tools:
                rid = f"Person{p}_{t}"
                if (name, rid) in missing:
                    continue
                fs = mask_size or size
                m = np.zeros(fs, bool)
                cy, cx = fs[0] // 2, fs[1] // 2
                m[cy - 2:cy + 2 + p % 2, cx - 3:cx + 2] = True
                a = np.where(m, 0, 255).astype(np.uint8)
                if rid in rgb_for:
                    a = np.repeat(a[..., None], 3, axis=-1)
                fname = f"Seg_{name.upper()}.png" if rid in upper_for else f"seg_{name}.png"
                _png(d / ann_folder / rid / fname, a)
                written[f"{name}/{rid}"] = m
        gold = np.full(mask_size or size, 255, np.uint8)
        _png(d / "GoldStandard" / f"seg_{name.lower()}.png", gold)
    return written


def make_isic(root: Path, images=("001", "002"), features=("net_atyp", "str_chrys"),
              raters=("Ann", "Bob", "Cy"), size=(9, 13), seed: int = 0, drop=()) -> dict[str, np.ndarray]:
    """UDA2-style folder; every (image, feature) gets all ``raters`` except the
    (image, feature, rater) triples in ``drop``. Returns the masks written,
    keyed ``"<image>/<feature>__<rater>"``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    index, written = [], {}
    h, w = size
    for im in images:
        rgb = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        Image.fromarray(rgb).save(root / f"UDA2_pilot_{im}.jpg", quality=95)
        arrays = {"shape": np.array([h, w], dtype=np.int64)}
        for f in features:
            for r in raters:
                if (im, f, r) in drop:
                    continue
                m = _blob(rng, (h, w))
                arrays[f"{f}__{r}"] = np.packbits(m, axis=-1)
                written[f"{im}/{f}__{r}"] = m
                index.append({"image": im, "feature": f, "rater": r})
        np.savez_compressed(root / f"UDA2_pilot_{im}_masks.npz", **arrays)
    (root / "index.json").write_text(json.dumps(index, indent=0))
    return written


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its bytes (a truncated download)."""
    b = Path(path).read_bytes()
    Path(path).write_bytes(b[: int(len(b) * keep)])
    return path


def corrupt_middle(path: Path, n: int = 64) -> Path:
    """Overwrite ``n`` bytes in the middle of a file (a damaged copy)."""
    b = bytearray(Path(path).read_bytes())
    mid = len(b) // 2
    b[mid:mid + n] = bytes((x ^ 0xFF) for x in b[mid:mid + n])
    Path(path).write_bytes(bytes(b))
    return path


# ------------------------------------------------------------ 3-D NIfTI layouts
def volume_affine(zooms=(0.5, 0.75, 2.0), origin=(10.0, -20.0, 30.0), flip_x=True) -> np.ndarray:
    """A nibabel (i,j,k) -> world affine with non-trivial spacing, origin and a
    flipped first axis (as radiological NIfTI files have)."""
    aff = np.diag([*zooms, 1.0])
    if flip_x:
        aff[0, 0] = -zooms[0]
    aff[:3, 3] = origin
    return aff


def _save_vol(path: Path, a: np.ndarray, affine: np.ndarray):
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(a, affine)
    zooms = tuple(np.linalg.norm(affine[:3, :3], axis=0)) + (1.0,) * max(0, a.ndim - 3)
    img.header.set_zooms(zooms[: a.ndim])
    nib.save(img, str(path))


def coded_volume(shape=(6, 5, 4), channels: int | None = 2) -> np.ndarray:
    """``a[x, y, z, c] = 1000 c + 100 x + 10 y + z`` (float32), so every voxel's
    value tells where it came from; ``channels=None`` gives a 3-D ``(X, Y, Z)``."""
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    base = (100 * x + 10 * y + z).astype(np.float32)
    if channels is None:
        return base
    return np.stack([base + 1000 * c for c in range(channels)], axis=-1)


def coded_labels(shape=(6, 5, 4), shift: int = 0) -> np.ndarray:
    """Label map (uint8): value 1 where x < 2, value 2 where x >= 4 and y < 2
    (shifted along y by ``shift`` for a second case), 0 elsewhere."""
    lab = np.zeros(shape, np.uint8)
    lab[:2] = 1
    lab[4:, shift:shift + 2] = 2
    return lab


def make_decathlon(root: Path, n_cases: int = 2, shape=(6, 5, 4), channels: int | None = 2,
                   label_names=None, affine=None, test: int = 1, v2: bool = False, **doc_override) -> Path:
    """An MSD folder (``v2``: nnU-Net v2 naming, one file per channel). Case k
    is ``case_00k``: image :func:`coded_volume` ``+ 10000 k``, labels
    :func:`coded_labels` with ``shift=k``. ``doc_override`` replaces (value
    ``None``: removes) dataset.json keys; ``label_names`` is MSD's ``labels``
    (value -> name; turned into name -> value for ``v2``)."""
    affine = volume_affine() if affine is None else affine
    labels = label_names or {"0": "background", "1": "edema", "2": "tumour"}
    n_ch = 1 if channels is None else channels
    mods = {str(c): f"mod{c}" for c in range(n_ch)}
    doc = {"name": "TinyTask", "tensorImageSize": "4D" if channels else "3D", "modality": mods, "labels": labels,
           "numTraining": n_cases, "numTest": test, "training": [], "test": []}
    for k in range(n_cases):
        cid = f"case_{k:03d}"
        img = coded_volume(shape, channels) + 10000 * k
        _save_vol(root / "labelsTr" / f"{cid}.nii.gz", coded_labels(shape, k), affine)
        if v2:
            for c in range(n_ch):
                _save_vol(root / "imagesTr" / f"{cid}_{c:04d}.nii.gz", img[..., c] if channels else img, affine)
        else:
            _save_vol(root / "imagesTr" / f"{cid}.nii.gz", img, affine)
        doc["training"].append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    for k in range(test):
        cid = f"case_{100 + k:03d}"
        img = coded_volume(shape, channels)
        if v2:
            for c in range(n_ch):
                _save_vol(root / "imagesTs" / f"{cid}_{c:04d}.nii.gz", img[..., c] if channels else img, affine)
        else:
            _save_vol(root / "imagesTs" / f"{cid}.nii.gz", img, affine)
        doc["test"].append(f"./imagesTs/{cid}.nii.gz")
    if v2:
        doc = {"name": "TinyTask", "channel_names": mods, "labels": {v: int(k) for k, v in labels.items()},
               "numTraining": n_cases, "file_ending": ".nii.gz"}
    for key, v in doc_override.items():
        if v is None:
            doc.pop(key, None)
        else:
            doc[key] = v
    (root / "dataset.json").write_text(json.dumps(doc, indent=1))
    return root


def make_brats(root: Path, cases=("case_0", "case_1"), naming: str = "deepvoxnet", shape=(6, 5, 4),
               affine=None) -> dict[str, np.ndarray]:
    """BraTS case folders. ``naming="deepvoxnet"``: ``FLAIR.nii.gz``, ``GT_W.nii.gz``
    (0/1) and ``subject_id.txt`` (``Subject_id: Brats18_TEST_<n>_1``);
    ``"challenge"``: ``<case>_flair.nii.gz`` and ``<case>_seg.nii.gz`` with labels
    0/1/2/4. Returns the whole-tumour masks written ``(X, Y, Z)``, keyed by case."""
    affine = volume_affine((1.0, 1.0, 1.0), (0.0, 239.0, 0.0)) if affine is None else affine
    out = {}
    for n, case in enumerate(cases):
        d = root / case
        flair = coded_volume(shape, None) + 10000 * n
        seg = np.zeros(shape, np.uint8)
        seg[1:3, 1:3, 1:3] = 2  # edema
        seg[2, 2, 1:3] = 1  # necrotic core
        seg[1, 1, 1 + n % 2] = 4  # enhancing
        out[case] = seg > 0
        if naming == "deepvoxnet":
            _save_vol(d / "FLAIR.nii.gz", flair, affine)
            _save_vol(d / "GT_W.nii.gz", (seg > 0).astype(np.float32), affine)
            (d / "subject_id.txt").write_text(f"Case_id: Brats18_TEST_{n}_1\nSubject_id: Brats18_TEST_{n}_1")
        else:
            _save_vol(d / f"{case}_flair.nii.gz", flair, affine)
            _save_vol(d / f"{case}_seg.nii.gz", seg, affine)
            _save_vol(d / f"{case}_t1.nii.gz", flair * 0, affine)
    return out


def make_drishti(root: Path, splits=(("Training", ("drishtiGS_002", "drishtiGS_004")), ("Test", ("drishtiGS_001",))),
                 size: int = 16, seed: int = 0) -> Path:
    """Drishti-GS1 layout: per case image.jpg and disc/cup agreement PNGs (expert counts 0..4,
    the cup nested in the disc), cdr.txt and crop.json."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    for split, names in splits:
        for name in names:
            d = root / split / name
            _png(d / "image.jpg", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
            disc = np.clip(4 - np.floor(r - size / 4), 0, 4).astype(np.uint8)
            cup = np.clip(4 - np.floor(r - size / 8), 0, 4).astype(np.uint8)
            _png(d / "disc_agreement.png", disc)
            _png(d / "cup_agreement.png", cup)
            (d / "cdr.txt").write_text("0.5 0.6 0.55 0.5")
            (d / "crop.json").write_text('{"crop_xyxy": [0, 0, 10, 10]}')
    return root
