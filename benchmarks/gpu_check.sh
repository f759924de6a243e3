#!/usr/bin/env bash
# Every GPU check of simseg in one prepared run, for a lent GPU machine (one H100/H200; under 8 minutes there):
#
#     benchmarks/gpu_check.sh --pack                 here: copy what the checks need from ../shared/data into
#                                                    .carry/gpu-data (pets and the ImageNet subset, ~36 MiB)
#     benchmarks/gpu_check.sh --smoke [OUT]          here, at tiny sizes, on the CPU: proves the script runs
#     WORK=/tmp/gpu-check benchmarks/gpu_check.sh "$OUT"   on the GPU machine (the device tool: carry .carry);
#                                                    OUT gets the log, timings, results.csv, report.md and the figure
#     (TESTS=cuda runs only the CUDA tests; SEEDS=0 and SUBSETS=250,877 shrink the study to fit a short lease)
#
# The checks, each logged to OUT/gpu_check.log and timed in OUT/timings.tsv:
#  1. the test suite's quick loop and its CUDA-only tests (-m cuda);
#  2. pretraining throughput on the batched path (cache on the device, bf16), eager and compiled, with model FLOP
#     utilisation (benchmarks/pretrain_pipeline.py);
#  3. a segmentation cell end to end vs its step (benchmarks/labelled_pipelines.py);
#  4. the study's protocol at GPU scale on the shared images: SimMIM pretraining on the ImageNet subset, then
#     segmentation cells at 250 / 500 / all labelled pets, scratch vs pretrained, three seeds at 250, and the report.
# The machine needs torch, timm, accelerate, einops, safetensors, torchmetrics, matplotlib, scikit-learn, pyyaml,
# filelock and tqdm (the device image has them); simseg runs from the checkout through PYTHONPATH, no install.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
DATA=$HERE/.carry/gpu-data
SMOKE=0
if [ "${1:-}" = "--pack" ]; then
  SHARED=${2:-$HERE/../shared/data}
  mkdir -p "$DATA"
  cp -r "$SHARED/oxford-iiit-pet" "$SHARED/imagenet-subset" "$DATA/"
  du -sh --apparent-size "$DATA"
  exit 0
fi
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
OUT=${1:-${OUT:-$HERE/outputs/gpu-check}}
WORK=${WORK:-$OUT/work}  # caches and run folders: large, so on the device put them beside $OUT, not in it
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
cd "$HERE"
[ -d "$DATA" ] || { echo "no $DATA: run benchmarks/gpu_check.sh --pack first (and carry .carry)"; exit 2; }
LOG=$OUT/gpu_check.log
: > "$OUT/timings.tsv"
failed=0

step() {  # step NAME COMMAND...: run it, log it, time it; a failing step is reported and the others still run
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*" | tee -a "$LOG"
  if ! "$@" 2>&1 | tee -a "$LOG"; then
    echo "!! $name failed" | tee -a "$LOG"
    failed=$((failed + 1))
  fi
  printf '%s\t%d\n' "$name" $((SECONDS - start)) >> "$OUT/timings.tsv"
}

step "machine" python3 -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
if [ $SMOKE = 1 ]; then
  NOISE=(--noise-images 256 --batch 32 --epochs 1)
  LABELLED=(--images 128 --epochs 1 --stages segment)
  PRE_WARMUP=0; PRE_SUBSETS=1k; PRE_EPOCHS=1; SEG_EPOCHS=1; SUBSETS=250; SEEDS=0
  step "tests" python3 -m pytest -q -x -p no:cacheprovider -m "cuda or not slow" tests/test_cuda.py tests/training
else
  NOISE=(--noise-images 50000 --batch 1024 --epochs 3 --workers 16)
  # The issue's target: a segmentation cell at batch 256 in bf16 at >= 20,000 images/s end to end; synthetic pairs,
  # since the shared pets hold fewer than 16k, decoded once into the run's cache as the pets would be.
  LABELLED=(--images 16384 --epochs 3 --stages segment --workers 8 --batch 256 --bf16 --pipelines batched,per_image)
  PRE_WARMUP=5; PRE_SUBSETS=all; PRE_EPOCHS=100; SEG_EPOCHS=100
  SUBSETS=${SUBSETS:-250,500,877}; SEEDS=${SEEDS:-0,1,2}  # fewer in the environment to fit a short lease
  step "tests" python3 -m pytest -q -p no:cacheprovider -m "${TESTS:-cuda or not slow}"
fi
step "pretrain throughput, eager" python3 benchmarks/pretrain_pipeline.py "${NOISE[@]}" --pipelines batched
step "pretrain throughput, compiled" python3 benchmarks/pretrain_pipeline.py "${NOISE[@]}" --pipelines batched --compile
step "segmentation cell throughput" python3 benchmarks/labelled_pipelines.py "${LABELLED[@]}" \
  --data "$([ $SMOKE = 1 ] && echo "$DATA" || echo synthetic)"

# The study's protocol on the shared images: one pretraining (from an image cache, so on the batched path), then the
# grid. The pretraining LR is the study's 1e-4 at batch 128 scaled linearly to batch 512.
STUDY=$WORK/study
step "study: image cache" python3 -m simseg.cli data cache "$DATA/imagenet-subset/train" --out "$WORK/imagenet-cache" \
  --img-size 128 --overwrite
step "study: pretraining and cells" python3 -m simseg.cli sweep --subsets "$SUBSETS" --seeds "$SEEDS" --init scratch \
  --pretrain-subsets "$PRE_SUBSETS" --pretrain-data "$WORK/imagenet-cache" --data "$DATA/oxford-iiit-pet" \
  --output-dir "$STUDY" data.test_size=292 "train.epochs=$SEG_EPOCHS" train.mixed_precision=bf16 eval.every=10 \
  log.progress=false "pretrain.train.epochs=$PRE_EPOCHS" pretrain.train.mixed_precision=bf16 \
  pretrain.train.batch_size=512 pretrain.train.lr=4e-4 "pretrain.train.warmup_epochs=$PRE_WARMUP" pretrain.log.progress=false
step "study: report" python3 -m simseg.cli report "$STUDY"
cp "$STUDY/results.csv" "$STUDY/report.md" "$OUT/" 2>/dev/null
cp "$STUDY/miou_vs_subset.png" "$OUT/" 2>/dev/null
echo "gpu_check: $failed step(s) failed; log $LOG, timings $OUT/timings.tsv" | tee -a "$LOG"
exit $((failed > 0))
