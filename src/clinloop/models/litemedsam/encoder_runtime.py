"""How the TinyViT image encoder runs: torch eager or ONNX Runtime.

The encoder (:mod:`.image_encoder`) dominates the cost of ``set_image`` and of
:func:`.cache.embed`. ONNX Runtime runs the same graph about twice as fast on
CPU with the same outputs (relative error of the embedding ~3e-6, far below
the float16 rounding of the embedding cache), so it is the default when
installed (``kind='auto'``). Torch eager stays selectable::

    set_default_runtime(EncoderRuntime("torch"))          # whole process
    set_runtime(model.image_encoder, EncoderRuntime("torch"))  # one encoder
    CLINLOOP_ENCODER=torch clinloop ...                   # environment

``CLINLOOP_ENCODER`` (``auto`` | ``torch`` | ``onnx``) and
``CLINLOOP_ENCODER_THREADS`` (int) set the process default.

The ONNX model is exported (opset 17) on first use from the encoder's own
weights into ``clinloop.paths.cache_dir() / "onnx"``, keyed by the weights,
the encoder configuration, this package's encoder source, torch's version and
the export options; it is never shipped or downloaded. The file is written
atomically under a lock (concurrent processes export once), checked against a
sha256 sidecar when loaded, and re-exported when missing or corrupt.

``auto`` uses ONNX Runtime only for encoders with named weights
(``weights_id``, e.g. the pretrained checkpoint), so random or fine-tuned
encoders never pay an export, and only in eval mode without autograd (the
ONNX session returns no gradients); everything else runs torch eager. Modules other than
:class:`~.image_encoder.TinyViTEncoder` always run torch.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clinloop.atomic import atomic_path, file_sha256
from clinloop.paths import cache_dir

from .image_encoder import TinyViTEncoder

log = logging.getLogger(__name__)
KINDS = ("auto", "torch", "onnx")
OPSET = 17
ENV_KIND, ENV_THREADS = "CLINLOOP_ENCODER", "CLINLOOP_ENCODER_THREADS"


@dataclass(frozen=True)
class EncoderRuntime:
    """``kind``: ``'auto'`` (ONNX Runtime when installed and the encoder has
    named weights, else torch), ``'torch'`` (eager) or ``'onnx'`` (ONNX
    Runtime, error if not installed). ``threads``: ONNX Runtime intra-op
    threads; ``None`` -> ``torch.get_num_threads()`` at call time (so
    ``OMP_NUM_THREADS`` / ``--threads`` apply to both runtimes)."""

    kind: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"encoder runtime kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"encoder runtime threads must be a positive int or None; got {self.threads!r}")


def runtime_from_env() -> EncoderRuntime:
    """The runtime named by ``CLINLOOP_ENCODER`` / ``CLINLOOP_ENCODER_THREADS``
    (default ``auto``, threads from torch)."""
    kind = os.environ.get(ENV_KIND, "auto").strip().lower() or "auto"
    raw = os.environ.get(ENV_THREADS, "").strip()
    try:
        threads = int(raw) if raw else None
    except ValueError:
        raise ValueError(f"{ENV_THREADS} must be a positive integer; got {raw!r}") from None
    try:
        return EncoderRuntime(kind, threads)
    except ValueError as e:
        raise ValueError(f"{ENV_KIND}/{ENV_THREADS}: {e}") from None


_default: EncoderRuntime | None = None


def default_runtime() -> EncoderRuntime:
    """The process default: the last :func:`set_default_runtime`, else the environment."""
    return _default if _default is not None else runtime_from_env()


def set_default_runtime(runtime: EncoderRuntime | str | None) -> None:
    """Set (a runtime or its kind) or clear (``None``: back to the environment) the process default."""
    global _default
    _default = EncoderRuntime(runtime) if isinstance(runtime, str) else runtime


def set_runtime(encoder: nn.Module, runtime: EncoderRuntime | str | None) -> None:
    """Pin the runtime of one encoder (or a whole ``LiteMedSAM``); ``None`` -> the process default."""
    net = getattr(encoder, "image_encoder", encoder)
    net.encoder_runtime = EncoderRuntime(runtime) if isinstance(runtime, str) else runtime


def runtime_of(encoder: nn.Module) -> EncoderRuntime:
    net = getattr(encoder, "image_encoder", encoder)
    return getattr(net, "encoder_runtime", None) or default_runtime()


_warned: set[str] = set()
_failed: set[str] = set()  # export keys whose ONNX model could not be made (auto -> torch)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        if "ort" not in _warned:
            _warned.add("ort")
            log.info("onnxruntime is not installed: the LiteMedSAM image encoder runs in torch eager "
                     "(pip install onnxruntime for ~2x faster embeddings)")
        return False


def resolve(encoder: nn.Module, runtime: EncoderRuntime | None = None) -> str:
    """``'torch'`` or ``'onnx'``: what :func:`encode` will run for ``encoder`` now."""
    net = getattr(encoder, "image_encoder", encoder)
    rt = runtime or runtime_of(net)
    if rt.kind == "torch" or not isinstance(net, TinyViTEncoder):  # only our TinyViT is exported
        return "torch"
    grad = torch.is_grad_enabled() and any(p.requires_grad for p in net.parameters())
    if rt.kind == "onnx":
        if grad:
            raise ValueError("the ONNX encoder runtime gives no gradients: call it under torch.no_grad() or use kind='torch'")
        import onnxruntime  # noqa: F401  (a clear ImportError when missing)
        return "onnx"
    named = bool(getattr(net, "weights_id", None))
    on_cpu = all(p.device.type == "cpu" for p in net.parameters())
    # the export is of eval mode (batch-norm running statistics): a training-mode encoder runs torch
    return "onnx" if named and on_cpu and not grad and not net.training and onnxruntime_available() else "torch"


def encode(encoder: nn.Module, images: torch.Tensor, runtime: EncoderRuntime | None = None) -> torch.Tensor:
    """The encoder's output for ``images (B, 3, 256, 256)`` -> ``(B, 256, 64, 64)``
    float32 on the encoder's device, run by the resolved runtime."""
    net = getattr(encoder, "image_encoder", encoder)
    if resolve(net, runtime) == "torch":
        return net(images)
    rt = runtime or runtime_of(net)
    s = net.config.img_size
    if images.ndim != 4 or tuple(images.shape[1:]) != (net.config.in_chans, s, s):
        raise ValueError(f"image encoder expects (B, {net.config.in_chans}, {s}, {s}); got {tuple(images.shape)}")
    key = export_key(net)
    if rt.kind == "auto" and key in _failed:
        return net(images)
    try:
        sess = session(net, rt.threads or torch.get_num_threads())
    except Exception as e:  # e.g. onnx (the exporter's dependency) missing, read-only cache
        if rt.kind == "onnx":
            raise
        _failed.add(key)  # auto: do not retry the export in this process
        log.warning("ONNX encoder unavailable (%s: %s); running torch eager", type(e).__name__, e)
        return net(images)
    x = images.detach().to("cpu", torch.float32).contiguous().numpy()
    return torch.from_numpy(sess.run(None, {"image": x})[0]).to(images.device)


# ---------------------------------------------------------------- export cache

_key_memo: dict[int, tuple[str, str]] = {}  # id(encoder) -> (weights_id, key)


def export_key(encoder: nn.Module) -> str:
    """sha256 naming the exported graph: weights, config, encoder source, torch, opset."""
    from . import image_encoder as src
    from .fingerprint import encoder_id

    wid = encoder_id(encoder)
    memo = _key_memo.get(id(encoder))
    if memo is not None and memo[0] == wid:
        return memo[1]
    h = hashlib.sha256()
    for part in (wid, repr(getattr(encoder, "config", None)), inspect.getsource(src), torch.__version__, f"opset{OPSET}"):
        h.update(part.encode())
        h.update(b"\0")
    key = h.hexdigest()[:24]
    _key_memo[id(encoder)] = (wid, key)
    return key


def model_path(encoder: nn.Module, root: str | Path | None = None) -> Path:
    return (Path(root) if root is not None else cache_dir() / "onnx") / f"tinyvit-{export_key(encoder)}.onnx"


def export_onnx(encoder: nn.Module, path: str | Path) -> Path:
    """Export ``encoder`` (eval mode, batch axis dynamic) to ``path`` atomically,
    with a ``.sha256`` sidecar. Input ``image (B, 3, S, S)``, output ``embedding``."""
    import warnings

    path = Path(path)
    was = encoder.training
    encoder.eval()
    dev = next(encoder.parameters()).device
    try:
        with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            s = encoder.config.img_size
            torch.onnx.export(encoder, (torch.rand(1, encoder.config.in_chans, s, s, device=dev),), str(tmp),
                              opset_version=OPSET, dynamo=False, input_names=["image"], output_names=["embedding"],
                              dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}})
            digest = file_sha256(tmp)
        with atomic_path(_sidecar(path), suffix=".json") as tmp:
            tmp.write_text(json.dumps({"sha256": digest, "size": path.stat().st_size}))
    finally:
        encoder.train(was)
    return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def _intact(path: Path) -> bool:
    try:
        meta = json.loads(_sidecar(path).read_text())
        return path.stat().st_size == meta["size"] and file_sha256(path) == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


@contextlib.contextmanager
def _file_lock(path: Path):
    """Exclusive lock across processes (``fcntl``; a no-op where unavailable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic renames still keep the file whole
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_lock = threading.Lock()
_sessions: dict[tuple[str, int], object] = {}


def ensure_model(encoder: nn.Module, root: str | Path | None = None) -> Path:
    """Path of the encoder's verified ONNX file, exporting it first when missing
    or corrupt (logged)."""
    path = model_path(encoder, root)
    with _lock, _file_lock(path):
        if path.exists() and not _intact(path):
            log.warning("re-exporting corrupt ONNX encoder %s", path)
        if not (path.exists() and _intact(path)):
            log.info("exporting the LiteMedSAM image encoder to ONNX (once per weights): %s", path)
            export_onnx(encoder, path)
    return path


def session(encoder: nn.Module, threads: int, root: str | Path | None = None):
    """A cached ``onnxruntime.InferenceSession`` for ``encoder`` with ``threads``
    intra-op threads (graph optimisation ORT_ENABLE_ALL, sequential execution)."""
    import onnxruntime as ort

    path = model_path(encoder, root)
    key = (str(path), int(threads))
    sess = _sessions.get(key)
    if sess is not None and path.exists():
        return sess
    path = ensure_model(encoder, root)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    with _lock:
        _sessions[key] = sess
    return sess


def clear_sessions() -> None:
    """Forget the cached ONNX Runtime sessions (e.g. after deleting the cache folder)."""
    with _lock:
        _sessions.clear()
