"""On-disk cache of LiteMedSAM image embeddings.

An embedding ``(256, 64, 64)`` is stored as float16 ``.npy`` (2 MiB) under
``clinloop.paths.cache_dir() / "embeddings" / <encoder id> / <key>.npy`` where
``key`` is the sha256 of the preprocessed input (float32 ``(3, 256, 256)``
bytes and shape) and ``<encoder id>`` names the weights and encoder variant
(``model.image_encoder.weights_id``, set by ``build_litemedsam``; for other
weights a sha256 of the encoder's state dict). Files are written atomically
(temp file + rename), so a reader never sees half a file.

Thread safety: the server runs model computations in several threads. Each
key has an in-process lock while it is computed (:func:`embed` takes the
locks of a batch's keys in sorted order and re-checks the cache under them),
so two threads asking for the same image compute it once and never write the
same file at the same time; across processes the atomic rename suffices.

Embeddings are returned float32 but *always* rounded through float16, whether
they came from the disk or were just computed, so results do not depend on
the cache's state. The encoder runs in torch eager or ONNX Runtime
(:mod:`.encoder_runtime`); both share entries, their outputs agreeing far
below the float16 rounding. (Rounding changes the decoder's logits by ~1e-2 at most;
see tests/test_litemedsam.py.)

Several processes (``clinloop predict --workers``, ``torchrun`` ranks, machines
sharing a folder) may use one cache: each write goes to its own temporary file
and is renamed into place (``os.replace``), so a reader sees a whole entry or
none, and an unreadable entry is a miss that is recomputed and overwritten.
Workers can split the filling between them with :func:`shard_of`, and
:meth:`EmbeddingCache.locked` (an advisory file lock) keeps two processes from
computing the same entry at once (tests/test_cache_concurrency.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from clinloop.atomic import atomic_path
from clinloop.paths import cache_dir

from .encoder_runtime import encode
from .fingerprint import encoder_id  # noqa: F401  (re-exported: cache folders are named by it)

log = logging.getLogger(__name__)
EMBED_SHAPE = (256, 64, 64)


_KEY_LOCKS: dict[str, list] = {}  # path -> [lock, users]; an entry lives while someone holds or waits for it
_KEY_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def key_locks(paths: Sequence[Path | str]):
    """Hold the in-process locks of ``paths`` (sorted, deduplicated: no deadlock)."""
    names = sorted({str(p) for p in paths})
    with _KEY_LOCKS_GUARD:
        entries = []
        for n in names:
            e = _KEY_LOCKS.setdefault(n, [threading.Lock(), 0])
            e[1] += 1
            entries.append((n, e))
    held = []
    try:
        for _, e in entries:
            e[0].acquire()
            held.append(e)
        yield
    finally:
        for e in reversed(held):
            e[0].release()
        with _KEY_LOCKS_GUARD:
            for n, e in entries:
                e[1] -= 1
                if e[1] == 0 and _KEY_LOCKS.get(n) is e:
                    del _KEY_LOCKS[n]


def input_key(x: torch.Tensor) -> str:
    """sha256 of a preprocessed input ``(3, 256, 256)`` (float32 bytes + shape)."""
    a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def shard_of(key: str, n: int) -> int:
    """The worker (of ``n``) that owns cache entry ``key`` (a hex digest): the same on
    every process and machine, so n workers can fill one cache in disjoint shares."""
    if n < 1:
        raise ValueError(f"number of shards must be >= 1, got {n}")
    return int(key[:15], 16) % n


class EmbeddingCache:
    """Folder of float16 embeddings for one encoder (``root/<encoder id>/``)."""

    def __init__(self, encoder_name: str, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"
        self.folder = self.root / encoder_name

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The stored float16 embedding, or ``None`` (missing or unreadable:
        an unreadable file is logged and treated as a miss)."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            a = np.load(p, allow_pickle=False)
        except Exception as e:  # truncated/corrupt: recompute and overwrite
            log.warning("ignoring unreadable cached embedding %s: %s", p, e)
            return None
        if a.shape != EMBED_SHAPE or a.dtype != np.float16:
            log.warning("ignoring cached embedding %s with shape %s dtype %s", p, a.shape, a.dtype)
            return None
        return a

    def put(self, key: str, embedding: np.ndarray) -> None:
        a = np.asarray(embedding, dtype=np.float16)
        if a.shape != EMBED_SHAPE:
            raise ValueError(f"embedding must be {EMBED_SHAPE}; got {a.shape}")
        with atomic_path(self.path(key), suffix=".npy") as tmp:
            np.save(tmp, a)

    @contextlib.contextmanager
    def locked(self, key: str):
        """Advisory lock of entry ``key`` across processes (``fcntl.flock`` on
        ``<key>.lock``; a no-op where ``fcntl`` is missing). Optional: writes are
        atomic without it; hold it around get-compute-put to avoid duplicate work."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def embed(images: torch.Tensor | Sequence[torch.Tensor], encoder: nn.Module, *, cache: bool | EmbeddingCache = True,
          batch_size: int = 4, progress: bool | None = None) -> torch.Tensor:
    """Embeddings of preprocessed images (see :func:`.preprocess.preprocess`).

    ``images``: ``(N, 3, 256, 256)`` or a sequence of ``(3, 256, 256)``, values in
    [0, 1]. ``encoder``: the image encoder or a whole ``LiteMedSAM``.
    ``cache``: True -> the default on-disk cache, an :class:`EmbeddingCache`, or
    False. ``progress``: tqdm bar; default on when more than 8 images must be
    computed. Returns float32 ``(N, 256, 64, 64)`` (values float16-rounded),
    computed without autograd, on the encoder's device.
    """
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        raise ValueError(f"images must be (N, 3, 256, 256); got a single {tuple(images.shape)} image (add a batch axis)")
    items = list(images)
    for i, x in enumerate(items):
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (3, 256, 256):
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"image {i} must be a preprocessed (3, 256, 256) tensor; got {shape} (use preprocess() first)")
    net = getattr(encoder, "image_encoder", encoder)
    dev = next(net.parameters()).device
    store = cache if isinstance(cache, EmbeddingCache) else (EmbeddingCache(encoder_id(net)) if cache else None)
    out: list[np.ndarray | None] = [None] * len(items)
    keys = [input_key(x) for x in items] if store is not None else [None] * len(items)
    if store is not None:
        for i, k in enumerate(keys):
            out[i] = store.get(k)
    todo = [i for i, o in enumerate(out) if o is None]
    if todo:
        from tqdm.auto import tqdm

        show = progress if progress is not None else len(todo) > 8
        bar = tqdm(total=len(todo), desc="LiteMedSAM embeddings", unit="img", disable=not show)
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():  # not inference_mode: the results may feed a trained decoder
                for s in range(0, len(todo), max(1, batch_size)):
                    idx = todo[s:s + batch_size]
                    with key_locks([store.path(keys[i]) for i in idx] if store is not None else []):
                        if store is not None:  # another thread may have computed them meanwhile
                            for i in idx:
                                out[i] = store.get(keys[i])
                        run = [i for i in idx if out[i] is None]
                        if run:
                            # torch eager or ONNX Runtime, see encoder_runtime (same outputs within ~1e-5)
                            e = encode(net, torch.stack([items[i] for i in run]).to(dev, torch.float32))
                            e16 = e.to(torch.float16).cpu().numpy()
                            for j, i in enumerate(run):
                                out[i] = e16[j]
                                if store is not None:
                                    store.put(keys[i], e16[j])
                    bar.update(len(idx))
        finally:
            net.train(was_training)
            bar.close()
    if not items:
        return torch.empty((0, *EMBED_SHAPE), device=dev)
    return torch.from_numpy(np.stack(out)).to(dev, torch.float32)
