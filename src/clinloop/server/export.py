"""Accepted masks as files: NIfTI (with the source affine), PNG, DICOM-SEG.

* ``nii.gz``: uint8 0/1 through :func:`clinloop.data.io.write_mask`, with the
  source image's affine (clinloop index order) or, without one, its spacing.
* ``png``: 2-D masks only, 8-bit 0/255.
* ``dcm``: a binary DICOM Segmentation built with **highdicom** from the
  uploaded DICOM source (single- or multi-frame). Only for DICOM input: other
  formats have no patient/study/frame-of-reference identity to refer to.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = {"nii.gz": "application/gzip", "png": "image/png", "dcm": "application/dicom"}


class ExportError(ValueError):
    """The mask cannot be written in the requested format (a 4xx, not a crash)."""


def mask_bytes(mask: np.ndarray, fmt: str, meta: dict[str, Any], source: Path | None = None) -> bytes:
    """Encode bool ``mask`` (``(H, W)`` or ``(D, H, W)``) as ``fmt``."""
    from clinloop.data.io import write_mask

    mask = np.asarray(mask, dtype=bool)
    if fmt not in FORMATS:
        raise ExportError(f"unknown mask format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "dcm":
        return dicom_seg_bytes(mask, meta, source)
    if fmt == "png" and mask.ndim != 2:
        raise ExportError(f"PNG holds 2-D masks only; this mask is 3-D {mask.shape}: use format=nii.gz")
    affine = meta.get("affine")
    spacing = meta.get("spacing")
    with tempfile.TemporaryDirectory(prefix="clinloop-export-") as d:
        path = Path(d) / f"mask.{fmt}"
        write_mask(path, mask, affine=None if affine is None else np.asarray(affine, dtype=np.float64),
                   spacing=None if (spacing is None or affine is not None or fmt == "png") else spacing)
        return path.read_bytes()


def warm_up() -> None:
    """Encode a tiny mask in each file format once, so the writers' lazy imports (nibabel, PIL:
    ~0.1 s) are paid when the server starts, not by a clinician's first download."""
    for fmt in ("nii.gz", "png"):
        mask_bytes(np.zeros((2, 2), dtype=bool), fmt, {})


def _legacy_geometry(hd, ds, frames: int) -> dict[str, Any]:
    """Plane geometry for a legacy multi-frame source (one ``ImagePositionPatient``
    for all ``frames``, no per-frame functional groups): frame k lies at
    ``IPP + k * step * normal`` (``step``: SpacingBetweenSlices, else
    SliceThickness, else 1 mm; ``normal``: row x column direction). ``{}`` for
    sources highdicom reads itself (single frames, enhanced multi-frame)."""
    if frames < 2 or "PerFrameFunctionalGroupsSequence" in ds or "ImagePositionPatient" not in ds \
            or "ImageOrientationPatient" not in ds or "PixelSpacing" not in ds:
        return {}
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    step = float(getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None) or 1.0)
    ipp = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
    return {"pixel_measures": hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in ds.PixelSpacing],
                                                       slice_thickness=step),
            "plane_orientation": hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT,
                                                             [float(v) for v in iop]),
            "plane_positions": [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT,
                                                         [float(v) for v in ipp + k * step * normal])
                                for k in range(frames)]}


def dicom_seg_bytes(mask: np.ndarray, meta: dict[str, Any], source: Path | None) -> bytes:
    """A binary DICOM SEG (highdicom) referencing the uploaded DICOM ``source``."""
    if meta.get("format") not in ("dicom",) or source is None:
        raise ExportError("DICOM-SEG export needs a DICOM source image; this case came from "
                          f"{meta.get('format', 'an unknown format')}: use format=nii.gz or png")
    try:
        import highdicom as hd
        import pydicom
    except ImportError as e:  # pragma: no cover - highdicom is in the server extra
        raise ExportError(f"DICOM-SEG export needs highdicom ({e}); pip install 'clinloop[server]'") from e
    from clinloop import __version__

    ds = pydicom.dcmread(str(source))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    pix = mask[None] if mask.ndim == 2 else mask
    if pix.shape[0] != frames or pix.shape[1:] != (int(ds.Rows), int(ds.Columns)):
        raise ExportError(f"mask shape {mask.shape} does not match the DICOM source ({frames} x {ds.Rows} x {ds.Columns})")
    algo = hd.AlgorithmIdentificationSequence(
        name="clinloop", version=__version__,
        family=hd.sr.CodedConcept("123109", "DCM", "Manual Processing"))
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="clinloop",
        segmented_property_category=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
        segmented_property_type=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algo)
    try:
        seg = hd.seg.Segmentation(
            source_images=[ds], pixel_array=pix.astype(np.uint8), **_legacy_geometry(hd, ds, frames),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[desc],
            series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="clinloop", manufacturer_model_name="clinloop workstation",
            software_versions=__version__, device_serial_number="0", omit_empty_frames=False)
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        raise ExportError(f"cannot build a DICOM-SEG for this source ({type(e).__name__}: {e})") from e
    import io

    buf = io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()
