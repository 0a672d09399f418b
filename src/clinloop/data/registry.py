"""Dataset layouts: detection, explicit override, loading.

A *reader* turns a path into a :class:`Dataset` (a lazy sequence of
:class:`~clinloop.data.sample.MultiRaterSample`). Each layout registers itself
with :func:`register_reader`; :func:`load_dataset` picks one by ``format=`` or by
asking each reader's ``detect`` in registration order (most specific first).

Reader modules are imported on first use (``_READER_MODULES``) so importing
``clinloop.data`` stays cheap.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from clinloop.data.sample import MultiRaterSample, SampleHeader
from clinloop.errors import DataError, UnknownFormatError


class Dataset(Sequence[MultiRaterSample]):
    """A lazy, indexable collection of samples.

    Subclasses implement ``__len__`` and ``_load(i)``; ``case_ids`` and
    ``patient_ids`` must be available without loading images (splits use them).
    """

    name: str = "dataset"
    format: str = "?"
    path: Path | None = None

    def __init__(self, case_ids: list[str], patient_ids: list[str] | None = None):
        self.case_ids = list(case_ids)
        self.patient_ids = list(patient_ids) if patient_ids is not None else list(case_ids)
        if len(self.patient_ids) != len(self.case_ids):
            raise ValueError("patient_ids and case_ids differ in length")

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"case index {i} out of range for {len(self)} cases")
        return self._load(i)

    def __iter__(self) -> Iterator[MultiRaterSample]:
        for i in range(len(self)):
            yield self._load(i)

    def _load(self, i: int) -> MultiRaterSample:  # pragma: no cover - abstract
        raise NotImplementedError

    def header(self, i: int) -> SampleHeader:
        """Case ``i``'s ids and geometry (:class:`SampleHeader`). Readers of
        volume files override this to read file headers only, so a listing with
        shapes does not decode every volume; the default loads the case."""
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"case index {i} out of range for {len(self)} cases")
        return self._header(i)

    def _header(self, i: int) -> SampleHeader:
        return self._load(i).header()

    def subset(self, indices: Sequence[int]) -> "Subset":
        return Subset(self, indices)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {len(self)} cases from {self.path}>"


class Subset(Dataset):
    """A view of some cases of another dataset (used for splits and --limit)."""

    def __init__(self, parent: Dataset, indices: Sequence[int]):
        self.parent = parent
        self.indices = [int(i) for i in indices]
        super().__init__([parent.case_ids[i] for i in self.indices], [parent.patient_ids[i] for i in self.indices])
        self.name, self.format, self.path = parent.name, parent.format, parent.path

    def _load(self, i: int) -> MultiRaterSample:
        return self.parent[self.indices[i]]

    def _header(self, i: int) -> SampleHeader:
        return self.parent.header(self.indices[i])


class ListDataset(Dataset):
    """Samples already in memory (synthetic data, tests, uploads)."""

    def __init__(self, samples: Sequence[MultiRaterSample], name: str = "in-memory", format: str = "memory"):
        self.samples = list(samples)
        super().__init__([s.case_id for s in self.samples], [s.patient_id for s in self.samples])
        self.name, self.format = name, format

    def _load(self, i: int) -> MultiRaterSample:
        return self.samples[i]


@dataclass(frozen=True)
class Reader:
    name: str
    detect: Callable[[Path], bool]
    read: Callable[..., Dataset]
    description: str = ""


READERS: dict[str, Reader] = {}

# modules that register readers, imported lazily in this order (detection order)
_READER_MODULES: list[str] = [
    "clinloop.data.readers.lidc",
    "clinloop.data.readers.riga",
    "clinloop.data.readers.drishti",
    "clinloop.data.readers.qubiq",
    "clinloop.data.readers.bubil",
    "clinloop.data.readers.isic",
    "clinloop.data.readers.decathlon",
    "clinloop.data.readers.brats",
    "clinloop.data.readers.canonical",
    "clinloop.data.readers.single",  # single images / volumes / DICOM series: last
]
_loaded = False


def register_reader(name: str, detect: Callable[[Path], bool], description: str = ""):
    """Decorator: ``@register_reader("lidc", detect_fn)`` on a ``read(path, **opts)``."""

    def deco(read: Callable[..., Dataset]):
        READERS[name] = Reader(name, detect, read, description)
        return read

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _READER_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    # Detection order is _READER_MODULES' order, whatever order the modules
    # happened to be imported in (a test importing readers.canonical first must
    # not let the generic layout shadow QUBIQ's); other registrations come last.
    rank = {m: i for i, m in enumerate(_READER_MODULES)}
    ordered = sorted(READERS.values(), key=lambda r: rank.get(r.read.__module__, len(rank)))
    READERS.clear()
    READERS.update((r.name, r) for r in ordered)
    _loaded = True


def available_formats() -> list[str]:
    _ensure_loaded()
    return list(READERS)


def reader_accepts(format: str, option: str) -> bool:
    """Whether the reader of ``format`` takes the keyword option ``option``
    (e.g. ``structure`` for the fundus sets' disc / cup)."""
    import inspect

    _ensure_loaded()
    reader = READERS.get(format)
    return reader is not None and option in inspect.signature(reader.read).parameters


def detect_format(path: str | Path) -> str:
    """The name of the first reader whose ``detect`` accepts ``path``."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", path)
    _ensure_loaded()
    for r in READERS.values():
        try:
            if r.detect(path):
                return r.name
        except OSError:
            continue
    raise UnknownFormatError(
        f"unknown layout; pass --format with one of: {', '.join(READERS)}", path
    )


def load_dataset(path: str | Path, format: str | None = None, **options) -> Dataset:
    """Open ``path`` as a multi-rater dataset. ``format`` overrides detection;
    reader-specific ``options`` (e.g. ``structure="cup"`` for RIGA,
    ``task=1`` for QUBIQ, ``volumes=True`` for LIDC, ``label=1`` for the
    Decathlon layout) are passed through."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", path)
    _ensure_loaded()
    name = format or detect_format(path)
    if name not in READERS:
        raise UnknownFormatError(f"unknown format {name!r}; choose from {', '.join(READERS)}", path)
    import inspect

    params = inspect.signature(READERS[name].read).parameters
    if not any(q.kind is q.VAR_KEYWORD for q in params.values()):  # readers with **options check their own
        takes = [k for k, q in list(params.items())[1:] if q.kind is not q.VAR_POSITIONAL]  # after the path
        unknown = sorted(set(options) - set(takes))
        if unknown:
            raise DataError(f"the {name} reader takes no option {', '.join(map(repr, unknown))}; its options: "
                            f"{', '.join(takes) or 'none'}", path)
    return READERS[name].read(path, **options)
