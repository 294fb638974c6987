#!/bin/bash
# Issue 12's table: every bench JSON of benchmarks/openvino/, run one after another on an otherwise idle machine.
#   bash benchmarks/openvino/run_all.sh OUT_DIR      (e.g. benchmarks/openvino/epyc on an AMD EPYC)
#   python benchmarks/scripts/deny_amx.py bash benchmarks/openvino/run_all.sh OUT_DIR   (a Xeon with AMX refused)
#   python benchmarks/scripts/ov_table.py OUT_DIR/*.json
# About an hour on 2 cores. Needs ../shared/data (CIFAR-10 train, ImageNet samples) and the weights/ folders.
set -euo pipefail
OUT=${1:?usage: run_all.sh OUT_DIR}
mkdir -p "$OUT"
TR=${TIMM_RECAL:-timm-recal}
C10=../shared/data/cifar10/train
IN=../shared/data/imagenet-1k-samples
TIMING="--batch 1,16 --threads 2 --warmup 3 --repeats 7 --min-time 1.5"
ALL="--runtimes eager,ort,openvino --precision fp32,bf16,int8 $TIMING"
TRIO_INT8="--calib-data $C10 --calib-images 512 --calib-method percentile --fp32-layers 48"
log() { echo "=== $(date +%T) load $(cut -d' ' -f1 /proc/loadavg): $*" >&2; }
for a in se sle ab; do
  net=local-dir:weights/${a}_shufflenetv2_x0_5_cifar.cifar10 base=local-dir:weights/shufflenetv2_x0_5_cifar.cifar10
  log "$a ShuffleNetV2-CIFAR"
  $TR bench "$net" --compare "$base" $ALL $TRIO_INT8 -o "$OUT/${a}_shufflenetv2_x0_5_cifar_vs_base_ov_cpu.json" --force
  $TR bench "$net" --compare "$base" --runtimes openvino --precision int8 $TIMING $TRIO_INT8 --gates-float \
    -o "$OUT/${a}_shufflenetv2_x0_5_cifar_vs_base_ov_int8_gates_float_cpu.json" --force
done
for m in seresnet50 ab_resnet50; do
  log "$m"
  $TR bench $m --compare resnet50 $ALL --calib-data $IN --calib-images 64 -o "$OUT/${m}_vs_resnet50_ov_cpu.json" --force
  $TR bench $m --compare resnet50 --runtimes openvino --precision int8 $TIMING --calib-data $IN --calib-images 64 \
    --gates-float -o "$OUT/${m}_vs_resnet50_ov_int8_gates_float_cpu.json" --force
  $TR bench $m --compare resnet50 --runtimes ort --precision int8 $TIMING --calib-data $IN --calib-images 64 \
    --gate-fusion early_squeeze -o "$OUT/${m}_vs_resnet50_ort_int8_early_squeeze_cpu.json" --force
done
log done
