"""One image or volume on its own: an unlabeled, one-case dataset.

Accepts any file :func:`clinloop.data.io.read_image` reads (``.png``, ``.jpg``,
``.jpeg``, ``.npy``, ``.nii``, ``.nii.gz``, ``.dcm`` or a file with the DICOM
magic) or a folder holding one DICOM series. The result has one case (id: the
file name without its suffix) with zero raters (``masks`` of shape
``(0, *spatial)``), for inference, the demo and the server.

Options: ``channels_first=True`` reads a 3-D/4-D ``.npy`` as ``(C, H, W)`` /
``(C, D, H, W)`` instead of a grey ``(D, H, W)`` volume (see
:mod:`clinloop.data.io`).

Registered last, so any dataset layout that matches a folder wins over "a DICOM
series".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clinloop.data.io import IMAGE_SUFFIXES, file_suffix, is_dicom_file, is_dicom_series_dir, read_image
from clinloop.data.registry import Dataset, register_reader
from clinloop.data.sample import MultiRaterSample
from clinloop.errors import DataError


def detect(path: Path) -> bool:
    if path.is_file():
        return file_suffix(path) in IMAGE_SUFFIXES or is_dicom_file(path)
    return is_dicom_series_dir(path)


class SingleImageDataset(Dataset):
    """A one-case dataset over one image file or DICOM series folder."""

    format = "single"

    def __init__(self, path: Path, channels_first: bool = False):
        self.path = path
        self.channels_first = bool(channels_first)
        suf = file_suffix(path)
        cid = path.name[: len(path.name) - len(suf)] if suf and path.is_file() else path.name
        self.name = cid or "image"
        super().__init__([self.name])

    def _load(self, i: int) -> MultiRaterSample:
        image, spacing, affine, meta = read_image(self.path, channels_first=self.channels_first)
        return MultiRaterSample(
            image=image, masks=np.zeros((0, *image.shape[1:]), dtype=bool), case_id=self.case_ids[0],
            spacing=spacing, affine=affine,
            provenance={**{k: v for k, v in meta.items() if k not in ("path", "format")},
                        "path": str(self.path), "format": "single", "file_format": meta["format"]},
        )


@register_reader("single", detect, "one image or volume file (png/jpg/npy/nii/nii.gz/dcm) or a DICOM series folder")
def read(path: str | Path, channels_first: bool = False, **options) -> SingleImageDataset:
    path = Path(path)
    if options:
        raise DataError(f"the single-image reader takes only channels_first, got {', '.join(sorted(options))}", path)
    if not detect(path):
        raise DataError("not an image file (png/jpg/npy/nii/nii.gz/dcm) or a DICOM series folder", path)
    return SingleImageDataset(path, channels_first)


__all__ = ["SingleImageDataset", "read", "detect"]
