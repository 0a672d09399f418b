"""The frozen pretrained LiteMedSAM TinyViT as LEXU's feature pyramid, with caches.

One :class:`TinyViTFeatures` is shared by every TinyViT LEXU network of the
process (:func:`tinyvit_features`; building it loads ~40 MB of weights). It is
safe to use from several threads (the server runs two workers):

* the in-memory cache and the on-disk writes are guarded by one lock;
* the encoder itself is frozen, in eval mode and run under ``no_grad``
  (concurrent forward passes do not mutate it);
* there is no process-wide switch: bypassing the caches (to time the encoder
  honestly) is :meth:`TinyViTFeatures.uncached`, a context manager that acts on
  the calling thread only, and the "same batch again" shortcut is per thread;
* ``enabled`` (kept for scripts that set it) is per thread as well;
* training raises the memory capacity with :meth:`TinyViTFeatures.reserve`,
  which only ever grows it.

and from several processes sharing the on-disk cache (``torchrun`` ranks,
``clinloop predict --workers``): each entry is written to its own temporary file
and renamed into place, an unreadable entry is recomputed and overwritten, and
:meth:`TinyViTFeatures.shard_keys` splits the warming between processes.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch

from clinloop.models.lexu.constants import TINYVIT_SIZE


class TinyViTFeatures:
    """The frozen pretrained LiteMedSAM TinyViT as a feature pyramid, with an
    on-disk and an in-memory cache (not an ``nn.Module``: it is never trained
    and never saved in a LEXU state dict).

    ``__call__(x (B, 3, 256, 256))`` (min–max normalised to [0, 1]) -> list of
    four maps, fine to coarse: stage-0 output ``(B, 128, 128, 128)`` (stride 2),
    stage-1 output ``(B, 160, 64, 64)``, stage-2 output ``(B, 320, 64, 64)``
    (stride 4; TinyViT's last merges have strides 2, 1) and the neck, i.e.
    LiteMedSAM's image embedding ``(B, 256, 64, 64)``.

    Cache: ``cache_dir()/lexu-tinyvit/<weights id>/<sha256 of the input>.npz``
    (float16, ~10 MB per image); values are always rounded through float16, so
    results do not depend on the cache's state. ``memory_capacity`` most
    recently used images are also kept in memory (training reads every image
    every epoch). Inside ``with features.uncached():`` (or with ``enabled``
    set to False, in the calling thread) both caches are bypassed.
    """

    channels = (128, 160, 320, 256)
    strides = (2, 4, 4, 4)

    def __init__(self, memory_capacity: int = 64):
        from clinloop.models.litemedsam.build import build_litemedsam

        lm = build_litemedsam(True, eval_mode=True)
        self.encoder = lm.image_encoder
        for q in self.encoder.parameters():
            q.requires_grad_(False)
        self.weights_id = self.encoder.weights_id
        self.memory: dict[str, list[torch.Tensor]] = {}
        self.memory_capacity = int(memory_capacity)
        self._lock = threading.RLock()
        self._local = threading.local()

    # ------------------------------------------------------------ per-thread state
    def _tl(self) -> threading.local:
        loc = self.__dict__.get("_local")
        if loc is None:  # instances made without __init__ (tests)
            loc = self.__dict__["_local"] = threading.local()
        return loc

    @property
    def enabled(self) -> bool:
        """Whether the caches are used *in this thread* (default True)."""
        return getattr(self._tl(), "enabled", True)

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._tl().enabled = bool(value)

    @contextlib.contextmanager
    def uncached(self):
        """Bypass both caches in the calling thread (other threads are not affected)."""
        was = self.enabled
        self.enabled = False
        try:
            yield self
        finally:
            self.enabled = was

    def _guard(self):
        lock = self.__dict__.get("_lock")
        if lock is None:
            lock = self.__dict__["_lock"] = threading.RLock()
        return lock

    def reserve(self, n_images: int) -> None:
        """Keep at least ``n_images`` in memory (never lowers the capacity)."""
        with self._guard():
            self.memory_capacity = max(self.memory_capacity, int(n_images))

    def folder(self):
        from clinloop.paths import cache_dir

        return cache_dir() / "lexu-tinyvit" / self.weights_id

    @torch.no_grad()
    def compute(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Uncached pyramid of ``x (B, 3, 256, 256)`` (float32, not rounded)."""
        enc = self.encoder
        if x.ndim != 4 or x.shape[1:] != (3, TINYVIT_SIZE, TINYVIT_SIZE):
            raise ValueError(f"TinyViT features need (B, 3, {TINYVIT_SIZE}, {TINYVIT_SIZE}); got {tuple(x.shape)}")
        res = enc.config.resolutions()
        b = x.shape[0]
        y = enc.patch_embed(x.float())
        outs = []
        for i, layer in enumerate(enc.layers):
            y = layer(y)  # stage 0 gets a map, returns tokens; later stages tokens -> tokens
            if i < len(enc.layers) - 1:  # after the patch merging: tokens at res[i + 1]
                r = res[i + 1]
                outs.append(y.transpose(1, 2).reshape(b, -1, r, r))
        r = enc.embedding_size
        outs.append(enc.neck(y.transpose(1, 2).reshape(b, -1, r, r)))
        return outs

    def shard_keys(self, x: torch.Tensor, shard: tuple[int, int]) -> list[int]:
        """Indices of the images of ``x (B, 3, 256, 256)`` whose cache entries worker
        ``shard = (i, n)`` fills (:func:`clinloop.models.litemedsam.cache.shard_of`):
        n processes warming one on-disk cache compute disjoint shares."""
        from clinloop.models.litemedsam.cache import input_key, shard_of

        i, n = shard
        return [b for b in range(x.shape[0]) if shard_of(input_key(x[b]), n) == i]

    def _load(self, key: str) -> list[torch.Tensor] | None:
        with self._guard():
            if key in self.memory:
                v = self.memory.pop(key)
                self.memory[key] = v  # most recently used last
                return v
        path = self.folder() / f"{key}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                v = [torch.from_numpy(z[f"f{k}"]) for k in range(len(self.channels))]
        except Exception:  # unreadable (or being replaced): recompute and overwrite
            return None
        if any(t.dtype != torch.float16 or t.shape[0] != c for t, c in zip(v, self.channels)):
            return None
        self._remember(key, v)
        return v

    def _remember(self, key: str, v: list[torch.Tensor]) -> None:
        with self._guard():
            self.memory[key] = v
            while len(self.memory) > max(self.memory_capacity, 0):
                self.memory.pop(next(iter(self.memory)))

    def _store(self, key: str, v: list[torch.Tensor]) -> None:
        from clinloop.atomic import atomic_path

        path = self.folder() / f"{key}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:  # a unique temporary file per writer
            np.savez(tmp, **{f"f{k}": t.numpy() for k, t in enumerate(v)})
        self._remember(key, v)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        from clinloop.models.litemedsam.cache import input_key

        loc = self._tl()
        last = getattr(loc, "last", None)
        if last is not None and last[0] is x and last[1] == x._version:
            return last[2]  # the same batch again (the ensemble's members): one encoder pass
        use_cache = self.enabled
        per = []
        for i in range(x.shape[0]):
            key = input_key(x[i]) if use_cache else None
            v = self._load(key) if key else None
            if v is None:
                v = [t[0].to(torch.float16) for t in self.compute(x[i : i + 1].cpu())]
                if key:
                    self._store(key, v)
            per.append(v)
        out = [torch.stack([p[k] for p in per]).to(x.device, torch.float32) for k in range(len(self.channels))]
        loc.last = (x, x._version, out)
        return out


_TINYVIT: TinyViTFeatures | None = None
_TINYVIT_LOCK = threading.Lock()


def tinyvit_features() -> TinyViTFeatures:
    """The process-wide frozen TinyViT (built once, under a lock, shared by every network)."""
    global _TINYVIT
    if _TINYVIT is None:
        with _TINYVIT_LOCK:
            if _TINYVIT is None:
                _TINYVIT = TinyViTFeatures()
    return _TINYVIT
