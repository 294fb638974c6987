#!/usr/bin/env bash
# Wang & Yuan's CIFAR-10 Table 1 (1.0x ShuffleNetV2, + SE, + SLE; + AB) on one GPU, in one call:
#   1. unpack CIFAR-10 (brought along as a .tgz: the machine has no network) and build the device data cache,
#   2. train the 8 runs of train_configs/sweeps/cifar10_shufflenetv2_table1.yaml side by side
#      (`timm-recal sweep --parallel 8 --data-path device`, 100 epochs, Adam 1e-3, batch 64),
#   3. write the weights folder of each net's best seed (`timm-recal publish --dry-run`, final-epoch weights),
#   4. the paired statistics of each gate against the base (`timm-recal validate A --compare B`),
#   5. table.json + table.md (mean and spread per net beside the paper's numbers, img/s, timings) into $OUT.
#
# Pack the data once, on a machine that has it (about 20 MB; benchmarks/gpu/data/ is git-ignored):
#   mkdir -p benchmarks/gpu/data && tar -C ../shared/data -czf benchmarks/gpu/data/cifar10.tgz cifar10
# Run (fresh Python with torch, timm, matplotlib, scipy; this repo is pip-installed without network):
#   OUT=/some/folder benchmarks/gpu/train_table.sh          # device tool: carry benchmarks/gpu/data
# Options (environment): TABLE_SEEDS=0 (one seed: 4 runs, not 8), TABLE_COMPILE=1 (torch.compile the step),
#   TABLE_PARALLEL (runs at once, default 8), TABLE_EPOCHS / TABLE_MAX_STEPS (shorter runs), TABLE_WORK.
# CPU dry mode (tests the logic in minutes; nothing like the real numbers):
#   TABLE_DEVICE=cpu TABLE_EPOCHS=1 TABLE_MAX_STEPS=2 TABLE_PARALLEL=2 TABLE_DATA=tiny.tgz OUT=/tmp/t \
#       benchmarks/gpu/train_table.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/runs/train_table}
WORK=${TABLE_WORK:-${TMPDIR:-/tmp}/train_table_work}  # runs, cache, weights: large, not sent back
DATA_TGZ=${TABLE_DATA:-$ROOT/benchmarks/gpu/data/cifar10.tgz}
DEVICE=${TABLE_DEVICE:-cuda}
PARALLEL=${TABLE_PARALLEL:-8}
SWEEP=${TABLE_SWEEP:-train_configs/sweeps/cifar10_shufflenetv2_table1.yaml}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/log.txt"
exec > >(tee -a "$LOG") 2>&1
stamp() { date +%s.%N; }
T0=$(stamp)
echo "== train_table: device $DEVICE, parallel $PARALLEL, sweep $SWEEP, work $WORK"

[ -f "$DATA_TGZ" ] || { echo "train_table: data not found: $DATA_TGZ (see the packing command at the top)"; exit 2; }

# -- the project, installed from this checkout without network (a fresh Python has torch and timm)
if ! "$PY" -c 'import timm_recal, timm_recal_deploy' 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation --no-index --target "$WORK/site" . \
    || { echo "train_table: pip could not install this checkout"; exit 2; }
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
TR=("$PY" -m timm_recal.cli)
"$PY" -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__, "cuda", torch.cuda.is_available())'

# -- 1. data and cache
rm -rf "$WORK/data" && mkdir -p "$WORK/data"
tar -C "$WORK/data" -xzf "$DATA_TGZ"
DATA="$WORK/data/$(ls "$WORK/data" | head -n1)"
CACHE="$WORK/cache"
"$PY" - "$DATA" "$CACHE" "$DEVICE" <<'EOF'
import sys, torch
from timm_recal.training.image_cache import check_fits, load_or_build, plan_cache
data, cache, device = sys.argv[1:]
plans = [plan_cache(data, split, cache, 32) for split in ('train', 'test')]
check_fits(sum(p.nbytes for p in plans), torch.device(device), 'the CIFAR-10 cache')
for p in plans:
    c = load_or_build(p, torch.device('cpu'))
    print(f"cache {p.path}: {tuple(c.images.shape)} ({'built' if c.built else 'read'})")
EOF
T1=$(stamp)

# -- 2. the runs, side by side
SWEEP_ARGS=(-c "$SWEEP" -o "$WORK/runs" --data-dir "$DATA" --device "$DEVICE" --data-path device
            --data-cache "$CACHE" --channels-last --parallel "$PARALLEL" --workers 0)
[ "$DEVICE" = cuda ] && SWEEP_ARGS+=(--amp --amp-dtype bfloat16 ${TABLE_COMPILE:+--torchcompile})
[ -n "${TABLE_EPOCHS:-}" ] && SWEEP_ARGS+=(--epochs "$TABLE_EPOCHS")
[ -n "${TABLE_MAX_STEPS:-}" ] && SWEEP_ARGS+=(--max-steps-per-epoch "$TABLE_MAX_STEPS")
[ "$DEVICE" = cpu ] && SWEEP_ARGS+=(--threads 1)
[ -n "${TABLE_SEEDS:-}" ] && SWEEP_ARGS+=(--seeds $TABLE_SEEDS)  # e.g. TABLE_SEEDS=0: the four nets, one seed
SWEEP_STATUS=0
"${TR[@]}" sweep "${SWEEP_ARGS[@]}" || SWEEP_STATUS=$?  # a failed cell: reported, the table uses the others
T2=$(stamp)

# -- 3. weights folders of each net's best seed (final-epoch weights), 4. paired statistics against the base
"$PY" benchmarks/gpu/train_table_report.py best-runs "$WORK/runs" > "$WORK/best_runs.txt"
mkdir -p "$WORK/weights" "$WORK/compare"
while read -r model run config; do
  "${TR[@]}" publish "$run" --dry-run --force --train-config "$config" -o "$WORK/weights/$model.cifar10"
  tar -C "$WORK/weights" -czf "$OUT/$model.cifar10.tgz" "$model.cifar10"
done < "$WORK/best_runs.txt"
T3=$(stamp)
BASE=$(awk 'NR==1 {print $1}' "$WORK/best_runs.txt")
if "${TR[@]}" validate --help 2>/dev/null | grep -q -- '--compare'; then
  while read -r model run config; do
    [ "$model" = "$BASE" ] && continue
    "${TR[@]}" validate "local-dir:$WORK/weights/$model.cifar10" --compare "local-dir:$WORK/weights/$BASE.cifar10" \
      --data "$DATA/test" --json -o "$WORK/compare/$model.json" --device "$DEVICE" \
      || echo "train_table: validate --compare failed for $model"
  done < "$WORK/best_runs.txt"
else
  echo "train_table: this timm-recal has no 'validate --compare'; paired statistics skipped"
fi
T4=$(stamp)

# -- 5. the table
"$PY" benchmarks/gpu/train_table_report.py table "$WORK/runs" --compare "$WORK/compare" --sweep "$SWEEP" \
  --sweep-status "$SWEEP_STATUS" --timings "data=$T0:$T1" "train=$T1:$T2" "publish=$T2:$T3" "stats=$T3:$T4" \
  -o "$OUT/table.json" --markdown "$OUT/table.md"
cp "$WORK/runs/heatmap.png" "$OUT/heatmap.png" 2>/dev/null || true
echo "== train_table: $(awk -v a="$T0" -v b="$(stamp)" 'BEGIN {printf "%.0f", b - a}') s; $OUT/table.md"
exit "$SWEEP_STATUS"
