"""Start/stop a real ``clinloop serve`` process on loopback for the benchmarks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_image(path: Path, size: int = 128) -> Path:
    """A CT-like slice with a bright nodule (PNG) for the worklist."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    img = 60 + 20 * rng.random((size, size))
    img[(yy - size // 2) ** 2 + (xx - size // 2 + 6) ** 2 < (size // 7) ** 2] = 200
    Image.fromarray(img.astype(np.uint8)).save(path)
    return path


def model_folder(model: str | None, work: Path, n_samples: int) -> str:
    """``model`` if given, else the shipped ``spa-lidc``, else a fresh SPA folder
    (our networks on the pretrained LiteMedSAM) written to ``work``."""
    if model:
        return model
    from clinloop.models.registry import shipped_models

    if "spa-lidc" in shipped_models():
        return "spa-lidc"
    from clinloop.models.spa.config import SPAConfig
    from clinloop.models.spa.model import SPANet, save_spa
    from clinloop.models.litemedsam import build_litemedsam

    d = work / "spa-untrained"
    if not (d / "config.json").is_file():
        save_spa(SPANet(SPAConfig(n_samples=n_samples), build_litemedsam(True)), d)
    return str(d)


class ServerProcess:
    def __init__(self, model: str, data: Path | None, state: Path, port: int | None = None, threads: int = 1,
                 log: Path | None = None, workers: int = 1, extra: list[str] | None = None):
        """``data=None``: the server's embedded example worklist; ``extra``: more ``clinloop serve`` flags."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-c", "import sys; from clinloop.cli import main; sys.exit(main())",
                    "serve", "--model", model, *(["--data", str(data)] if data is not None else []),
                    "--state-dir", str(state), "--host", "127.0.0.1", "--port", str(self.port),
                    "--threads", str(threads), "--workers", str(workers), "--log-level", "warning", *(extra or [])]
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> "ServerProcess":
        import httpx

        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "CLINLOOP_CACHE": os.environ.get("CLINLOOP_CACHE", str(Path(self.cmd[self.cmd.index("--state-dir") + 1]).parent / "cache"))}
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + "/api/info", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError("server did not start")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush — as a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
