"""The workstation's parts on their own, without HTTP: the live-session cache,
the model queue, upload checks, users, host names, and the thread safety of
the shared caches (the on-disk embedding cache, the serialised model start)."""
from __future__ import annotations

import io
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi import HTTPException  # noqa: E402


def _hammer(n: int, fn) -> list:
    """Run ``fn(i)`` in ``n`` threads started together; re-raise the first error."""
    start, errs, out = threading.Barrier(n), [], [None] * n

    def run(i):
        start.wait()
        try:
            out[i] = fn(i)
        except BaseException as e:  # noqa: BLE001
            errs.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]
    return out


def _live(owner="alice"):
    from clinloop.server.live import Live

    return Live(SimpleNamespace(), {"owner": owner, "history": []}, np.zeros((1, 8, 8), np.float32), {})


# ------------------------------------------------------------------ live cache
def test_live_cache_evicts_least_recently_used_but_never_a_session_in_use():
    from clinloop.server.live import LiveCache

    cache = LiveCache(2)
    nf = lambda: HTTPException(404)  # noqa: E731
    for sid in "abc":
        cache.add(sid, _live())
    assert cache.cached("a") is None and cache.cached("b") is not None and len(cache) == 2  # a evicted (oldest)
    builds = []
    with cache.use("b", "alice", lambda: builds.append("b") or _live(), nf):  # pinned
        cache.add("d", _live())
        cache.add("e", _live())
        assert cache.cached("b") is not None  # in use: kept although it is the oldest
        assert cache.cached("d") is None and cache.cached("e") is not None
        with cache.use("e", "alice", _live, nf):
            cache.add("f", _live())
            assert len(cache) == 3  # both old ones in use: over capacity until they are released
    assert len(cache) == 2 and cache.cached("e") is None  # released: back to capacity (e was the oldest free one)
    with cache.use("d", "alice", lambda: builds.append("d") or _live(), nf) as lv:  # evicted earlier: rebuilt
        assert lv.owner == "alice"
    assert builds == ["d"] and cache.stats()["rebuilds"] == 1
    with pytest.raises(HTTPException):  # someone else's cached session: not found, no rebuild
        with cache.use("d", "bob", lambda: builds.append("x") or _live(), nf):
            pass
    assert builds == ["d"]


def test_live_cache_failed_rebuild_leaves_nothing_and_drop_forces_a_rebuild():
    from clinloop.server.live import LiveCache

    cache = LiveCache(4)
    nf = lambda: HTTPException(404)  # noqa: E731

    def missing():
        raise HTTPException(404, "no session")

    with pytest.raises(HTTPException):
        with cache.use("zz", "alice", missing, nf):
            pass
    assert cache.stats()["sessions"] == 0 and not cache._slots
    n = [0]

    def build():
        n[0] += 1
        return _live()

    with cache.use("s", "alice", build, nf):
        cache.drop("s")
    with cache.use("s", "alice", build, nf):
        pass
    assert n[0] == 2


def test_live_cache_serialises_one_session_under_eviction_pressure():
    """Threads on one session and churn on others with capacity 1: every
    increment of the session's counter survives (one lock, one copy)."""
    from clinloop.server.live import LiveCache

    cache = LiveCache(1)
    nf = lambda: HTTPException(404)  # noqa: E731
    store = {"count": 0}  # the 'database'
    builds = [0]

    def build():
        builds[0] += 1
        lv = _live()
        lv.count = store["count"]  # a rebuild starts from what was stored
        return lv

    def work(i):
        for k in range(40):
            if i % 2:
                with cache.use("shared", "alice", build, nf) as lv:
                    c = lv.count
                    time.sleep(0.0005)
                    lv.count = c + 1
                    store["count"] = lv.count
            else:
                with cache.use(f"other{i}-{k}", "alice", _live, nf):
                    pass

    _hammer(6, work)
    assert store["count"] == 3 * 40
    assert builds[0] >= 1 and len(cache) <= 1


# ------------------------------------------------------------------ model queue
def test_model_gate_bounded_queue_answers_busy_with_retry_after():
    from clinloop.server.live import Busy, ModelGate

    gate = ModelGate(1, queue_limit=1, queue_timeout=5)
    req = lambda: SimpleNamespace(state=SimpleNamespace())  # noqa: E731
    inside, release, queued = threading.Event(), threading.Event(), threading.Event()

    def holder():
        with gate(req()):
            inside.set()
            release.wait(10)

    def waiter():
        queued.set()
        with gate(req()):
            pass

    t1 = threading.Thread(target=holder)
    t1.start()
    inside.wait(5)
    t2 = threading.Thread(target=waiter)
    t2.start()
    queued.wait(5)
    for _ in range(500):  # until the waiter is counted
        if gate.waiting == 1:
            break
        time.sleep(0.01)
    assert gate.waiting == 1
    with pytest.raises(Busy) as e:  # a second waiter exceeds queue_limit=1
        with gate(req()):
            pass
    assert e.value.retry_after >= 1 and "busy" in str(e.value) and gate.refused == 1
    release.set()
    t1.join()
    t2.join()
    assert gate.waiting == 0
    slow = ModelGate(1, queue_limit=None, queue_timeout=0.05)
    with slow(req()):
        with pytest.raises(Busy, match="waited 0.05 s"):
            with slow(req()):
                pass
    with pytest.raises(ValueError, match="queue_timeout"):
        ModelGate(1, queue_timeout=0)


# ------------------------------------------------------------------ uploads
def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_checker_refuses_bad_files_without_leaking_paths(tmp_path):
    from clinloop.server.context import Limits
    from clinloop.server.uploads import check_image, form_seed, read_upload

    lim = Limits(max_voxels=10_000)

    def status(data, name):
        with pytest.raises(HTTPException) as e:
            read_upload(data, name, lim, tmp_path)
        assert str(tmp_path) not in str(e.value.detail), e.value.detail
        return e.value.status_code, e.value.detail

    good = _png(np.full((40, 40), 7, np.uint8))
    img, meta, suffix = read_upload(good, "scan.png", lim, tmp_path)
    assert img.shape == (1, 40, 40) and float(img.max()) == 7.0 and suffix == ".png" and meta["filename"] == "scan.png"
    assert status(good[:60], "cut.png")[0] == 400
    assert status(b"MZ" + b"\0" * 50, "x.exe")[0] == 415
    assert status(b"", "e.png")[0] == 400
    code, msg = status(_png(np.zeros((200, 200), np.uint8)), "big.png")  # header claims 40000 > 10000 values
    assert code == 413 and "40000" in msg
    assert read_upload(good, "no-name", lim, tmp_path)[2] == ".png"  # sniffed from the magic bytes
    assert list(tmp_path.iterdir()) == []  # scratch files removed
    with pytest.raises(HTTPException) as e:
        check_image(np.zeros((1, 4, 40), np.float32), "x", lim)
    assert e.value.status_code == 422
    assert form_seed("12") == 12
    for bad in ("-1", str(2 ** 31), str(2 ** 64), "1.5", "x"):
        with pytest.raises(HTTPException) as e:
            form_seed(bad)
        assert e.value.status_code == 422


# ------------------------------------------------------------------ users, hosts
def test_auth_users_and_tokens():
    from clinloop.server.auth import Auth

    def code(fn):
        with pytest.raises(HTTPException) as e:
            fn()
        return e.value.status_code

    open_ = Auth()
    assert open_.user(None, None) == "local" and open_.user(None, "dr.who@x") == "dr.who@x" and not open_.enabled
    assert code(lambda: open_.user(None, "a/b")) == 400
    one = Auth(token="s3cret")
    assert one.user("Bearer s3cret", "ann") == "ann"
    assert code(lambda: one.user("Bearer nope", "ann")) == 401 and code(lambda: one.user(None, None)) == 401
    many = Auth(tokens={"t1": "alice"})
    assert many.user("Bearer t1", "bob") == "alice"  # the header cannot impersonate
    assert code(lambda: many.user("Bearer t2", None)) == 401
    with pytest.raises(ValueError, match="user names"):
        Auth(tokens={"t": "a b"})


def test_host_names_and_bound_hosts():
    from clinloop.server.guard import bound_hosts, host_name

    assert host_name("Example.ORG:8000") == "example.org" and host_name("[::1]:80") == "::1"
    assert host_name("localhost") == "localhost" and host_name("::1") == "::1"
    assert bound_hosts("127.0.0.1") == ["127.0.0.1", "::1", "localhost"]
    assert bound_hosts("10.0.0.5", ["ws.clinic.example"]) == ["10.0.0.5", "ws.clinic.example"]


def test_worklist_load(tmp_path):
    from PIL import Image

    from clinloop.server.worklist import Worklist, build_worklist

    Image.fromarray(np.full((16, 16), 3, np.uint8)).save(tmp_path / "one.png")
    wl = build_worklist(tmp_path / "one.png")
    (row,) = wl.rows
    img, meta = wl.load(row["case_id"])
    assert img.shape == (1, 16, 16) and meta["source"] == "case" and meta["case_id"] == row["case_id"]
    assert wl.load("nope") is None and Worklist().load("x") is None


# ------------------------------------------------------------------ shared caches
def test_embedding_cache_hammered_from_threads(tmp_path):
    """8 threads writing and reading the same keys: every read is a miss or the
    exact array (never half a file), and no temp file is left behind."""
    from clinloop.models.litemedsam.cache import EMBED_SHAPE, EmbeddingCache

    cache = EmbeddingCache("enc", root=tmp_path)
    arrays = {k: np.full(EMBED_SHAPE, k, np.float16) for k in range(3)}

    def work(i):
        rng = np.random.default_rng(i)
        for _ in range(30):
            k = int(rng.integers(3))
            if rng.random() < 0.5:
                cache.put(f"key{k}", arrays[k])
            else:
                got = cache.get(f"key{k}")
                assert got is None or np.array_equal(got, arrays[k])

    _hammer(8, work)
    assert sorted(p.name for p in cache.folder.iterdir()) == [f"key{k}.npy" for k in range(3)]


def test_embed_from_threads_computes_each_image_once(tmp_path):
    import torch
    from torch import nn

    from clinloop.models.litemedsam.cache import EmbeddingCache, embed

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 256, kernel_size=4, stride=4)
            self.calls, self.lock = 0, threading.Lock()

        def forward(self, x):
            with self.lock:
                self.calls += x.shape[0]
            time.sleep(0.02)  # long enough for the other threads to ask for the same image
            return self.conv(x)

    torch.manual_seed(0)
    enc = Counting()
    cache = EmbeddingCache("counting", root=tmp_path)
    images = [torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    outs = _hammer(6, lambda i: embed([images[i % 2]], enc, cache=cache, progress=False))
    assert enc.calls == 2  # one computation per distinct image, not per thread
    for i, o in enumerate(outs):
        assert torch.equal(o, outs[i % 2])


def test_serial_start_never_runs_two_starts_at_once():
    """Models keep an unlocked in-memory embedding LRU touched in ``start``;
    the server's ``lift`` serialises ``start`` across its worker threads."""
    from clinloop.server.volume import lift

    class Racy:
        name, spatial_ndims = "racy", (2,)

        def __init__(self):
            self.inside, self.peak, self.lru = 0, 0, {}

        def start(self, image, *, seed=0, profile=None):
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            time.sleep(0.002)
            self.lru[seed] = image.sum()
            self.inside -= 1
            return SimpleNamespace()

    inner = Racy()
    model = lift(inner)
    _hammer(8, lambda i: [model.start(np.ones((1, 8, 8), np.float32), seed=i * 10 + k) for k in range(5)])
    assert inner.peak == 1 and len(inner.lru) == 40
