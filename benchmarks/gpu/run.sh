#!/usr/bin/env bash
# The one prepared GPU check of issue 20: parity of inductor/aoti fp16 vs float64, bench of eager / inductor /
# aoti (resnet50, seresnet50, ab_resnet50 at batch 1 and 256; the x1.0 CIFAR ShuffleNetV2 quartet at batch 1 and
# 1024) and the CUDA tests, in at most 8 minutes, JSON into a folder.
#
#   benchmarks/gpu/run.sh [OUT_DIR] [--dry]     # OUT_DIR defaults to $OUT; --dry: CPU, cnn3 at 32x32, tiny timing
#
# Needs a Python with torch (CUDA build), timm, onnx, onnxruntime, pytest and pytest-xdist; nothing is installed
# and nothing is downloaded (random weights, the bundled sample images): the repository is put on PYTHONPATH,
# with deploy/ importable as timm_recal_deploy through a symlink in a scratch folder.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DEST="${OUT:-}"
ARGS=()
for a in "$@"; do
  case "$a" in
    --*) ARGS+=("$a") ;;
    *) DEST="$a" ;;
  esac
done
if [ -z "$DEST" ]; then
  echo "usage: benchmarks/gpu/run.sh OUT_DIR [--dry]   (or set \$OUT)" >&2
  exit 2
fi
PY="${PYTHON:-python3}"
SHIM="$(mktemp -d "${TMPDIR:-/tmp}/timm_recal_gpu.XXXXXX")"
trap 'rm -rf "$SHIM"' EXIT
ln -s "$REPO/deploy" "$SHIM/timm_recal_deploy"
export PYTHONPATH="$REPO:$SHIM${PYTHONPATH:+:$PYTHONPATH}"
export TIMM_RECAL_CACHE="${TIMM_RECAL_CACHE:-$SHIM/cache}"
export HF_HUB_OFFLINE=1
mkdir -p "$DEST"
"$PY" - "$DEST/environment.json" <<'PY'
import json, platform, sys
import torch, timm, timm_recal, timm_recal_deploy  # noqa: F401  (fails here, in one line, if one is missing)
env = {'python': platform.python_version(), 'torch': torch.__version__, 'timm': timm.__version__,
       'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
json.dump(env, open(sys.argv[1], 'w'), indent=2)
print(env)
PY
BUDGET=450  # of the 8 minutes; the dry run on a (busy) CPU compiles slower than a GPU machine
case " ${ARGS[*]:-} " in *" --dry "*) BUDGET=1500 ;; esac
exec timeout $((BUDGET + 30)) "$PY" "$HERE/gpu_check.py" "$DEST" --budget-s "$BUDGET" "${ARGS[@]}"
