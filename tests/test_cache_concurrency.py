"""The on-disk embedding / feature caches under concurrent writer processes (issue 16).

Three processes hammer one LiteMedSAM embedding cache and one LEXU TinyViT
feature cache with the same keys: each reads every entry (a hit must equal the
entry's known content exactly, never a partial or foreign array), writes it, and
one of them also drops truncated files at the final names (as a crash of a
non-atomic writer would). At the end every entry is whole and no temporary file
is left.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

WORKER = r'''
import json, sys
import numpy as np, torch
from clinloop.models.litemedsam.cache import EMBED_SHAPE, EmbeddingCache
from clinloop.models.lexu.tinyvit import TinyViTFeatures

wid, rounds = int(sys.argv[1]), int(sys.argv[2])
keys = [f"{k:064x}" for k in range(1, 5)]

def content(key):  # every writer writes the same bytes for a key
    return np.full(EMBED_SHAPE, int(key, 16) % 1000, np.float16)

def pyramid(key):
    return [torch.full((c, 2, 2), float(int(key, 16) % 1000), dtype=torch.float16) for c in TinyViTFeatures.channels]

cache = EmbeddingCache("enc-test")
feats = TinyViTFeatures.__new__(TinyViTFeatures)  # no weights needed for the disk cache
feats.weights_id, feats.memory, feats.memory_capacity = "w-test", {}, 0
bad = hits = 0
for r in range(rounds):
    for key in keys:
        with cache.locked(key) if r % 2 else open(__file__):  # odd rounds: with the optional lock
            a = cache.get(key)
        if a is not None:
            hits += 1
            bad += not np.array_equal(a, content(key))
        cache.put(key, content(key))
        v = feats._load(key)
        if v is not None:
            hits += 1
            bad += not all(torch.equal(x, y) for x, y in zip(v, pyramid(key)))
        feats._store(key, pyramid(key))
        if wid == 0 and r % 3 == 1:  # a torn file at the final name: readers must treat it as a miss
            cache.path(key).write_bytes(b"\x93NUMPY torn")
            (feats.folder() / f"{key}.npz").write_bytes(b"PK\x03\x04 torn")
print(json.dumps({"bad": bad, "hits": hits}))
'''


def test_concurrent_writers_never_corrupt_the_caches(tmp_path):
    script = tmp_path / "hammer.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "CLINLOOP_CACHE": str(tmp_path / "c")}
    procs = [subprocess.Popen([sys.executable, str(script), str(w), "6"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["bad"] for r in results) == 0
    assert sum(r["hits"] for r in results) > 0  # the processes did read each other's entries
    # a final clean pass: every entry is whole (the last writer of each key was atomic)
    sys.path.insert(0, str(ROOT / "src"))
    from clinloop.models.litemedsam.cache import EmbeddingCache

    cache = EmbeddingCache("enc-test", root=tmp_path / "c" / "embeddings")
    files = sorted(p.name for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith(".tmp") or f.startswith(".")], files  # no temporary leftovers
    for k in range(1, 5):
        key = f"{k:064x}"
        a = cache.get(key)
        if a is not None:  # worker 0 may have torn it last; then it is a miss, never garbage
            assert np.array_equal(a, np.full(a.shape, k % 1000, np.float16))
    assert len([f for f in files if f.endswith(".npy")]) == 4 and len([f for f in files if f.endswith(".npz")]) == 4


def test_shard_of_partitions_keys():
    from clinloop.models.litemedsam.cache import shard_of

    import hashlib

    keys = [hashlib.sha256(str(k).encode()).hexdigest() for k in range(40)]
    for n in (1, 3, 4):
        owners = [shard_of(k, n) for k in keys]
        assert set(owners) == set(range(n))  # every worker gets a share, each key exactly one owner
    assert shard_of("f" * 64, 7) == int("f" * 15, 16) % 7
