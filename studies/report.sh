#!/usr/bin/env bash
# The study at CPU scale on the shared data: the runs of docs/results/report.md (then its pictures, tables and CSV:
# studies/publish_report.py), one command:
#
#     studies/report.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-study-cpu]
#     python studies/publish_report.py OUT_DIR docs/results
#
# Wall time: 73 minutes on the 2-core CPU per image (docs/results/report.md), 48.5 on the batched path
# (docs/performance.md); OUT_DIR/timings.tsv records each step's.
#
# 1. SimMIM pretraining on 2k and on all (9.9k) of the ImageNet subset      configs/study_cpu/pretrain.yaml
# 2. Intel scene classification from the larger pretraining                configs/study_cpu/classify.yaml
# 3. segmentation sweep on the pets, one fixed 292-image test set:          configs/study_cpu/segment.yaml
#    {scratch, pretrain-2k, pretrain-all, pretrain-all+intel} x 250 labelled images x seeds 0,1,2,
#    then the same inits x {500, all 877 left} x seed 0
# 4. simseg report: figures and report.md in OUT_DIR
# Every step skips what is finished, so an interrupted run continues where it stopped.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-../simseg-study-cpu}
HERE=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"

step() {  # step NAME COMMAND...: run it and append its wall time to timings.tsv
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*"
  "$@"
  printf '%s\t%d\n' "$name" $((SECONDS - start)) >> "$OUT/timings.tsv"
}

SWEEP=(simseg sweep -c "$HERE/configs/study_cpu/segment.yaml" --data "$DATA/oxford-iiit-pet"
       --pretrain-subsets 2k,all --pretrain-data "$DATA/imagenet-subset/train"
       --pretrain-config "$HERE/configs/study_cpu/pretrain.yaml" --output-dir "$OUT" --init scratch
       --val-size 0)  # as the page was made: no validation set, the last epoch reported
INTEL=(--intermediate "pretrain-all+intel=$OUT/classify-intel")

step "pretrain + scratch cells at 250" "${SWEEP[@]}" --subsets 250 --seeds 0,1,2
step "classify intel" simseg classify -c "$HERE/configs/study_cpu/classify.yaml" \
  data.source="$DATA/intel-image-classification" init="$OUT/pretrain-all" output_dir="$OUT/classify-intel" \
  resume="$([ -f "$OUT/classify-intel/config.yaml" ] && echo true || echo false)"
step "cells at 250, 3 seeds" "${SWEEP[@]}" "${INTEL[@]}" --subsets 250 --seeds 0,1,2
step "cells at 500 and 877" "${SWEEP[@]}" "${INTEL[@]}" --subsets 500,877 --seeds 0
step "report" simseg report "$OUT"
