#!/usr/bin/env bash
# The GPU checks of simseg as steps that each fit a short window on one H100/H200 (under four minutes there), run one
# or two at a time through the device tool (15 minutes of device time a session, 10 a command, 64 MiB carried a call,
# 8 files back from $OUT). A step's figures land in OUT/STEP.json; what later calls need (finished steps' figures,
# the inductor cache, the study's pretraining export and finished cells) travels as one file, the state.
#
#     benchmarks/gpu_check.sh --pack [SHARED]        here, once: the pets and the ImageNet subset from ../shared/data
#                                                    into .carry/gpu-data (~36 MiB)
#     benchmarks/gpu_check.sh STEP[,STEP...] [OUT]   run those steps in order; OUT (default outputs/gpu-check) gets
#                                                    STEP.json, gpu_check.log and gpu-state.tar.gz (`all`: every
#                                                    step, for a machine of one's own: too long for one call, and
#                                                    more than the 8 files a call brings back)
#     benchmarks/gpu_check.sh --smoke STEPS [OUT]    the same at tiny sizes on this CPU, with its own state file
#                                                    (outputs/gpu-state-smoke.tar.gz)
#     benchmarks/gpu_check.sh --restore FILE         here, after a call: FILE (its OUT/gpu-state.tar.gz) becomes the
#                                                    state the next call carries, .carry/gpu-state.tar.gz
#     benchmarks/gpu_check.sh --status               which steps and study cells that state holds
#
# Steps, with their budget on an H100 (rates from docs/performance.md "On a GPU", measured on an H200):
#   tests              the tests that use the GPU: -m "cuda or not slow" over the files that pick CUDA when there
#                      is one (TESTS=mark and TEST_PATHS=paths widen it); ~2 min (the CUDA tests alone took 108 s)
#   kernels            kernels, copies and host waits per training step of each stage, batch 8 and 64, bf16
#                      (benchmarks/kernels_per_step.py); ~1 min
#   pretrain-eager     SimMIM pretraining on the batched path, bf16, 50k random images at batch 1024: the step
#                      alone and end to end, with MFU (benchmarks/pretrain_pipeline.py); ~1 min (52 s on the H200)
#   pretrain-compiled  the same compiled. Compiling took more than 235 s on the H200: a first call may end at the
#                      step's limit, with the inductor cache it filled in the state; the next call reuses it
#   segment-cell       a segmentation cell at batch 256, bf16, on 16k synthetic pairs: end to end, batched and per
#                      image, against its step (benchmarks/labelled_pipelines.py); ~2 min
#   study-pretrain     the study's SimMIM pretraining on the ImageNet subset (9.9k images, 100 epochs, batch 512,
#                      bf16; the image cache built first): 136 s on the H200, ~3 min
#   study-cells        the study's segmentation cells, scratch and pretrained, 100 epochs, bf16 (CELLS, default
#                      "250:0,1,2 500:0 877:0": subset:seeds; ~40 s a cell at 250 pets on the H200): as many as fit
#                      in CELLS_BUDGET seconds (default 210), the next call goes on with the rest
#   report             `simseg report` over every finished cell; report.md and the mIoU figure come back in OUT
#
# A step whose figures are in the state (results/STEP.json, written once it finished whole) is skipped, saying so.
# Every step stops at STEP_LIMIT seconds (default 235; a stopped step is not recorded and runs again next call).
# The state, unpacked into WORK/state at the start (WORK: scratch space outside OUT, default /tmp/simseg-gpu-check):
#   results/STEP.json   finished steps' figures
#   inductor/           TORCHINDUCTOR_CACHE_DIR (compiled kernels; left out, with a note, if the state would pass
#                       STATE_LIMIT_MIB, default 15)
#   study/pretrain-all/ the pretraining's export (encoder.safetensors, ~10 MiB), its config.yaml, metrics and last
#                       reconstruction grid
#   study/cells/        each finished cell's config.yaml, metrics.json(l), cell.json, classes.json, confusion.json
#   study/rows/         each finished cell's results row (results.csv and .jsonl of its own sweep)
# No other checkpoint travels: a cell killed mid-run starts again.
#
# Through the device tool, step by step (each call carries .carry: the data and the state file):
#   here:   benchmarks/gpu_check.sh --pack
#   device: run(command="bash benchmarks/gpu_check.sh tests,kernels $OUT", carry=[".carry"], timeout_s=540)
#   here:   benchmarks/gpu_check.sh --restore FILES_AT/gpu-state.tar.gz     (after every call, before the next)
#   device: then pretrain-eager,segment-cell; study-pretrain,study-cells; study-cells again until its log says
#           every cell finished; report; pretrain-compiled last (twice if the first call ends compiling)
# Steps of one call go in one command (STEP,STEP), so that the state it packs holds them all. Read the figures in
# OUT/STEP.json; `--status` says what is done. Two steps a call stay under 10 minutes; the 15 minutes of a session
# hold about three calls, so the whole run takes a few sessions.
# The machine needs torch, timm, accelerate, einops, safetensors, torchmetrics, matplotlib, scikit-learn, pyyaml,
# filelock and tqdm (the device image has them); simseg runs from the checkout through PYTHONPATH, no install.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
DATA=$HERE/.carry/gpu-data
STEPS=(tests kernels pretrain-eager pretrain-compiled segment-cell study-pretrain study-cells report)
SMOKE=0
STEP=
OUT=

while [ $# -gt 0 ]; do
  case $1 in
    --pack)
      SHARED=${2:-$HERE/../shared/data}
      mkdir -p "$DATA"
      cp -r "$SHARED/oxford-iiit-pet" "$SHARED/imagenet-subset" "$DATA/"
      du -sh --apparent-size "$DATA"
      exit 0 ;;
    --smoke) SMOKE=1; shift ;;
    --restore) RESTORE=${2:?--restore needs the state file a call brought back (its OUT/gpu-state.tar.gz)}; shift 2 ;;
    --status) STATUS=1; shift ;;
    -*) echo "gpu_check: unknown option $1"; exit 2 ;;
    *) if [ -z "$STEP" ]; then STEP=$1; else OUT=$1; fi; shift ;;
  esac
done
SUFFIX=$([ $SMOKE = 1 ] && echo -smoke)
# What a call carries in (a smoke run's state stays out of .carry, which every call carries)
STATE_TAR=${STATE_TAR:-$HERE/$([ $SMOKE = 1 ] && echo outputs/gpu-state-smoke.tar.gz || echo .carry/gpu-state.tar.gz)}
if [ -n "${RESTORE:-}" ]; then
  tar -tzf "$RESTORE" > /dev/null || { echo "gpu_check: $RESTORE is not a state file (tar.gz)"; exit 2; }
  mkdir -p "$(dirname "$STATE_TAR")"
  cp "$RESTORE" "$STATE_TAR"
  echo "gpu_check: the next call carries $STATE_TAR ($(du -h --apparent-size "$STATE_TAR" | cut -f1))"
  STATUS=1
fi
if [ -n "${STATUS:-}" ]; then
  [ -f "$STATE_TAR" ] || { echo "gpu_check: no state yet ($STATE_TAR)"; exit 0; }
  listing=$(tar -tzf "$STATE_TAR")
  echo "finished steps: $(echo "$listing" | sed -n 's|^\./results/\(.*\)\.json$|\1|p' | tr '\n' ' ')"
  echo "finished study cells: $(echo "$listing" | sed -n 's|^\./study/rows/\(.*\)\.csv$|\1|p' | tr '\n' ' ')"
  exit 0
fi
[ "$STEP" = all ] && STEP=$(IFS=,; echo "${STEPS[*]}")
[ -n "$STEP" ] || STEP=none  # no step given: the usage below
for name in ${STEP//,/ }; do
  case " ${STEPS[*]} " in
    *" $name "*) ;;
    *) echo "usage: benchmarks/gpu_check.sh [--smoke] STEP[,STEP...] [OUT], the steps among: ${STEPS[*]} (or all);" \
            "or --pack, --restore FILE, --status"; exit 2 ;;
  esac
done
[ -d "$DATA" ] || { echo "gpu_check: no $DATA: run benchmarks/gpu_check.sh --pack first (and carry .carry)"; exit 2; }
OUT=${OUT:-$HERE/outputs/gpu-check$SUFFIX}
WORK=${WORK:-/tmp/simseg-gpu-check$SUFFIX}  # image caches and run folders: large, so never inside OUT
STATE=$WORK/state
mkdir -p "$OUT" "$WORK/logs"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_check.log
export PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TORCHINDUCTOR_CACHE_DIR=$STATE/inductor  # compiled kernels, carried to the next call with the state
cd "$HERE"

# The state: what the call carried, unpacked afresh (a half-finished step of an earlier run here never counts).
rm -rf "$STATE"
mkdir -p "$STATE/results" "$STATE/study/cells" "$STATE/study/rows" "$TORCHINDUCTOR_CACHE_DIR"
[ -f "$STATE_TAR" ] && tar -xzf "$STATE_TAR" -C "$STATE"

TESTS_MARK=${TESTS:-cuda or not slow}
if [ $SMOKE = 1 ]; then
  STEP_LIMIT=${STEP_LIMIT:-1500}
  KERNELS=(--batches 2,4 model.depth=1)
  NOISE=(--noise-images 256 --batch 32 --epochs 1)
  LABELLED=(--images 128 --epochs 1 --stages segment --data "$DATA")
  PRE_KEYS=(data.subset=256 model.depth=1 train.epochs=1 train.batch_size=32 train.lr=1e-4 train.warmup_epochs=0)
  CACHE_WORKERS=0
  SEG_EPOCHS=1; SEG_SMOKE=(model.depth=1); CELLS=${CELLS:-250:0}; CELLS_BUDGET=${CELLS_BUDGET:-600}
else
  STEP_LIMIT=${STEP_LIMIT:-235}
  KERNELS=(--bf16)
  NOISE=(--noise-images 50000 --batch 1024 --epochs 3 --workers 16)
  # The issue's target: a segmentation cell at batch 256 in bf16 at >= 20,000 images/s end to end; synthetic pairs,
  # since the shared pets hold fewer than 16k, decoded once into the run's cache as the pets would be.
  LABELLED=(--images 16384 --epochs 3 --stages segment --workers 8 --batch 256 --bf16 --pipelines batched,per_image
            --data synthetic)
  # The study's pretraining LR, 1e-4 at batch 128, scaled linearly to batch 512.
  PRE_KEYS=(train.epochs=${PRE_EPOCHS:-100} train.batch_size=512 train.lr=4e-4 train.warmup_epochs=5)
  CACHE_WORKERS=8
  SEG_EPOCHS=100; SEG_SMOKE=(); CELLS=${CELLS:-250:0,1,2 500:0 877:0}; CELLS_BUDGET=${CELLS_BUDGET:-210}
fi
TEST_PATHS=${TEST_PATHS:-tests/test_cuda.py tests/data/test_batch_augment.py tests/data/test_batch_augment_masks.py
                         tests/data/test_augment_kernels.py tests/inference/test_predict.py}
PETS=$DATA/oxford-iiit-pet
SEG_KEYS=(data.test_size=292 "train.epochs=$SEG_EPOCHS" train.mixed_precision=bf16 eval.every=10 log.progress=false
          "data.cache_dir=$WORK/pets-cache" "${SEG_SMOKE[@]}")
PRETRAINED=$STATE/study/pretrain-all  # the pretraining export the cells start from

say() { echo "$*" | tee -a "$LOG"; }

limited() {  # limited COMMAND...: run it within what is left of the step's STEP_LIMIT seconds, interrupted after
  local left=$((STEP_LIMIT - (SECONDS - STEP_START)))
  if [ $left -le 5 ]; then say "!! $STEP_NAME: no time left for $*"; return 124; fi
  timeout -k 15 -s INT $left "$@" 2>&1 | tee -a "$LOG" "$STEP_LOG"
}

record() {  # record STEP RC COMPLETE: OUT/STEP.json from the step's log and files; the state's copy once complete
  python3 - "$1" "$2" "$3" "$((SECONDS - STEP_START))" "$STEP_LOG" "$WORK" "$STATE" "$OUT" "$CELLS" <<'PY'
import json, re, sys, xml.etree.ElementTree as ET
from pathlib import Path

step, rc, complete, seconds, log, work, state, out, cells = sys.argv[1:]
work, state, out = Path(work), Path(state), Path(out)
text = Path(log).read_text(errors="replace") if Path(log).is_file() else ""
text = "\n".join(line.split("\r")[-1] for line in text.split("\n"))  # a progress bar's last state per line
rows = [json.loads(line) for path in sorted((state / "study" / "rows").glob("*.jsonl"))
        for line in path.read_text().splitlines() if line.strip()]
figures: dict = {}


def plain_miou(row: dict):  # results rows name the view (miou_plain); rows kept from before: their miou
    return row.get("miou_plain", row.get("miou"))


if step == "tests" and (work / "junit.xml").is_file():
    suite = ET.parse(work / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    figures = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    figures["failed"] = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                         if case.find("failure") is not None or case.find("error") is not None]
elif step == "kernels" and (work / "kernels.json").is_file():
    figures = json.loads((work / "kernels.json").read_text())
elif step in ("pretrain-eager", "pretrain-compiled", "segment-cell"):
    # the benchmarks' lines "<what>: <n> images/s [= <p>% of step only][, MFU <m>%][; peak memory <k> MiB]"
    for line in text.splitlines():
        if m := re.match(r"\s*(.+?):\s+([\d.]+) images/s(.*)", line):
            entry = {"images_per_s": float(m.group(2))}
            for key, pattern in (("share_of_step", r"([\d.]+)% of step only"), ("mfu", r"MFU ([\d.]+)%"),
                                 ("peak_memory_mib", r"peak memory ([\d,]+) MiB")):
                if found := re.search(pattern, m.group(3)):
                    entry[key] = float(found.group(1).replace(",", ""))
            figures[re.sub(r"\W+", "_", m.group(1).strip()).strip("_")] = entry
        elif line.startswith("machine:"):
            figures["machine"] = line.removeprefix("machine:").strip()
elif step == "study-pretrain" and (state / "study" / "pretrain-all" / "metrics.json").is_file():
    figures = json.loads((state / "study" / "pretrain-all" / "metrics.json").read_text())
elif step in ("study-cells", "report"):
    wanted = [(init, int(subset), int(seed)) for unit in cells.split() for subset, seeds in [unit.split(":")]
              for seed in seeds.split(",") for init in ("scratch", "pretrain-all")]
    done = {(r["init"], int(r["subset"]), int(r["seed"])): r for r in rows}
    figures = {"cells": len(wanted), "finished": len([c for c in wanted if c in done]),
               "left": ["{}/subset-{}/seed-{}".format(*c) for c in wanted if c not in done],
               "test_miou": {done[c]["cell"]: plain_miou(done[c]) for c in wanted if c in done}}
    if step == "report":
        by_group: dict = {}
        for r in done.values():
            by_group.setdefault(f"{r['init']} @ {r['subset']}", []).append(plain_miou(r))
        figures["mean_test_miou"] = {k: sum(v) / len(v) for k, v in sorted(by_group.items()) if None not in v}
machine = (work / "machine.txt").read_text().strip() if (work / "machine.txt").is_file() else None
record = {"step": step, "ok": rc == "0", "complete": complete == "1" and rc == "0", "rc": int(rc),
          "seconds": int(seconds), "machine": machine, "figures": figures,
          "log_tail": text.splitlines()[-15:]}
body = json.dumps(record, indent=2) + "\n"
(out / f"{step}.json").write_text(body)
if record["complete"]:
    tmp = state / "results" / f".{step}.json.tmp"
    tmp.write_text(body)
    tmp.replace(state / "results" / f"{step}.json")
PY
}

pack_state() {  # the state as one file in OUT, within STATE_LIMIT_MIB (the inductor cache is dropped first)
  local limit=$((${STATE_LIMIT_MIB:-15} * 1048576)) tar=$OUT/gpu-state.tar.gz
  tar -czf "$tar.tmp" -C "$STATE" .
  if [ "$(stat -c %s "$tar.tmp")" -gt $limit ]; then
    say "gpu_check: the state is over ${STATE_LIMIT_MIB:-15} MiB with the inductor cache" \
        "($(du -sh --apparent-size "$STATE/inductor" | cut -f1)): packed without it, the next call compiles again"
    tar -czf "$tar.tmp" -C "$STATE" --exclude ./inductor .
  fi
  mv "$tar.tmp" "$tar"
  say "gpu_check: state $tar, $(du -h --apparent-size "$tar" | cut -f1) (encoder export" \
      "$(du -sh --apparent-size "$PRETRAINED" 2>/dev/null | cut -f1 || echo -), inductor" \
      "$(du -sh --apparent-size "$STATE/inductor" | cut -f1), cells $(du -sh --apparent-size "$STATE/study/cells" |
      cut -f1)); here: benchmarks/gpu_check.sh$([ $SMOKE = 1 ] && echo ' --smoke') --restore FILES_AT/gpu-state.tar.gz"
}

# --- the steps: each returns its status and sets COMPLETE=1 when it finished whole ----------------------------------

step_tests() {
  # shellcheck disable=SC2086  # TEST_PATHS is a list of paths
  limited python3 -m pytest -q -p no:cacheprovider -m "$TESTS_MARK" --junitxml="$WORK/junit.xml" $TEST_PATHS
}

step_kernels() {
  limited python3 benchmarks/kernels_per_step.py "${KERNELS[@]}" --out "$WORK/kernels.json"
}

step_pretrain-eager() {
  limited python3 benchmarks/pretrain_pipeline.py "${NOISE[@]}" --pipelines batched
}

step_pretrain-compiled() {
  limited python3 benchmarks/pretrain_pipeline.py "${NOISE[@]}" --pipelines batched --compile
}

step_segment-cell() {
  limited python3 benchmarks/labelled_pipelines.py "${LABELLED[@]}"
}

step_study-pretrain() {
  # One pretraining from an image cache (so on the batched path); only its export and figures go into the state.
  local cache=$WORK/imagenet-cache run=$WORK/study-pretrain/pretrain-all
  if [ ! -d "$cache" ]; then
    limited python3 -m simseg.cli data cache "$DATA/imagenet-subset/train" --out "$cache" --img-size 128 \
      --workers $CACHE_WORKERS || return
  fi
  rm -rf "$run"
  limited python3 -m simseg.cli pretrain "data.source=$cache" "${PRE_KEYS[@]}" train.mixed_precision=bf16 \
    log.progress=false log.grid_every=0 "output_dir=$run" || return
  mkdir -p "$PRETRAINED/grids"
  cp "$run"/{config.yaml,metrics.json,metrics.jsonl,encoder.safetensors} "$PRETRAINED/"
  cp "$(ls "$run"/grids/epoch_*.png | tail -1)" "$PRETRAINED/grids/"
}

run_cell() {  # run_cell INIT SUBSET SEED: one cell as a sweep of its own; its small files and row into the state
  local init=$1 subset=$2 seed=$3 tag=$1-$2-$3 unit=$WORK/cells/$1-$2-$3 name
  local init_arg=$init
  [ "$init" = pretrain-all ] && init_arg=pretrain-all=$PRETRAINED
  limited python3 -m simseg.cli sweep --subsets "$subset" --seeds "$seed" --init "$init_arg" --data "$PETS" \
    --val-size 0 --output-dir "$unit" "${SEG_KEYS[@]}" || return  # the study's cells: no validation set
  name=$init/subset-$subset/seed-$seed
  mkdir -p "$STATE/study/cells/$name"
  # Figures only (examples.png is ~0.3 MiB a cell: the state would outgrow its limit; the report does without)
  for file in config.yaml metrics.json metrics.jsonl cell.json classes.json confusion.json lineage.json; do
    [ -f "$unit/cells/$name/$file" ] && cp "$unit/cells/$name/$file" "$STATE/study/cells/$name/"
  done
  cp "$unit/results.csv" "$STATE/study/rows/$tag.csv.tmp" && cp "$unit/results.jsonl" "$STATE/study/rows/$tag.jsonl"
  mv "$STATE/study/rows/$tag.csv.tmp" "$STATE/study/rows/$tag.csv"  # last: the cell counts as finished from here
}

step_study-cells() {
  # Cells in order (subset, seed, scratch then pretrained), each started only if it should end within CELLS_BUDGET
  # seconds: the first cell of a call costs what the estimate says, later ones what this call measured per image.
  [ -f "$PRETRAINED/encoder.safetensors" ] || { say "!! study-cells: no pretraining export: run study-pretrain first"
                                                 return 1; }
  local per_image_epoch=0.0016 overhead=20 left=0 ran=0 unit subset seeds seed init tag estimate start
  for unit in $CELLS; do
    subset=${unit%%:*} seeds=${unit#*:}
    for seed in ${seeds//,/ }; do
      for init in scratch pretrain-all; do
        tag=$init-$subset-$seed
        if [ -f "$STATE/study/rows/$tag.csv" ]; then
          say "study-cells: $init/subset-$subset/seed-$seed finished in an earlier call: skipped"; continue
        fi
        estimate=$(python3 -c "print(round($overhead + $per_image_epoch * $subset * $SEG_EPOCHS))")
        if [ $ran -gt 0 ] && [ $((SECONDS - STEP_START + estimate)) -gt "$CELLS_BUDGET" ]; then
          left=$((left + 1)); continue  # (a call's first cell always runs, so that every call moves on)
        fi
        say "study-cells: $init/subset-$subset/seed-$seed (about ${estimate}s)"
        start=$SECONDS
        run_cell "$init" "$subset" "$seed" || return
        ran=$((ran + 1))
        per_image_epoch=$(python3 -c "print(max(0.0, ($SECONDS - $start - $overhead) / ($subset * $SEG_EPOCHS)))")
      done
    done
  done
  if [ $left -gt 0 ]; then
    say "study-cells: $left cell(s) left for the next call (CELLS_BUDGET=${CELLS_BUDGET}s)"
  else
    say "study-cells: every cell finished"
    COMPLETE=1
  fi
}

step_report() {
  # A sweep folder of every finished cell's row and small files; complete once study-cells is.
  local report=$WORK/study-report
  rm -rf "$report"
  mkdir -p "$report"
  cp -r "$STATE/study/cells" "$report/cells"
  local first
  first=$(ls "$STATE"/study/rows/*.csv 2>/dev/null | head -1)
  [ -n "$first" ] || { say "!! report: no finished cell: run study-cells"; return 1; }
  { head -1 "$first"; for rows in "$STATE"/study/rows/*.csv; do tail -n +2 "$rows"; done; } > "$report/results.csv"
  cat "$STATE"/study/rows/*.jsonl > "$report/results.jsonl"
  limited python3 -m simseg.cli report "$report" || return
  cp "$report/report.md" "$OUT/"
  cp "$report/miou_vs_subset.png" "$OUT/" 2>/dev/null
  [ -f "$STATE/results/study-cells.json" ] && COMPLETE=1
  [ $COMPLETE = 1 ] || say "report: of the cells finished so far; it is recorded as done once study-cells is"
}

run_step() {  # run_step NAME: skip it if the state holds its figures, else run, time and record it
  STEP_NAME=$1 STEP_LOG=$WORK/logs/$1.log STEP_START=$SECONDS COMPLETE=0
  if [ -f "$STATE/results/$1.json" ]; then
    say "== $1: finished in an earlier call (its figures: state results/$1.json): skipped"
    cp "$STATE/results/$1.json" "$OUT/"
    return 0
  fi
  : > "$STEP_LOG"
  say "== $1 ($(date -u +%H:%M:%S), limit ${STEP_LIMIT}s)"
  [ "$1" = study-cells ] || [ "$1" = report ] || COMPLETE=1  # one command each: complete when it succeeds
  "step_$1"
  local rc=$?
  record "$1" $rc $COMPLETE
  say "== $1: $([ $rc = 0 ] && echo ok || echo "failed ($rc)") in $((SECONDS - STEP_START))s -> $OUT/$1.json"
  return $rc
}

python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0)
                                 or 'cpu')" > "$WORK/machine.txt"
say "gpu_check: $STEP on $(cat "$WORK/machine.txt")$([ $SMOKE = 1 ] && echo ', smoke sizes'); state from" \
    "$([ -f "$STATE_TAR" ] && echo "$STATE_TAR" || echo 'nothing (first call)')"
failed=0
for name in ${STEP//,/ }; do run_step "$name" || failed=$((failed + 1)); done
pack_state
exit $((failed > 0))
