#!/usr/bin/env bash
# The pretraining study redone under the validation protocol (docs/results/pretraining.md, its first section),
# one command:
#
#     [USE_EPOCHS=50] [PARALLEL=1] studies/pretraining_protocol.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-pretraining-protocol]
#
# Wall time: about 5 h of the 2-core CPU with the defaults (two 45-minute pretrainings, then ~90 cells); about
# 1 h 45 min with USE_EPOCHS=20 PARALLEL=2, as the page was made. STOP_AFTER=pretrain stops after step 1.
#
# Every choice is made on a fixed 100-image validation set that no subset, seed or pretraining touches as labels
# (the sweep's --val-size, data.val_seed = the test seed); the 292-image test set is scored once per finished cell,
# at each mask's own resolution (metrics.json's test_* keys; test_input_* is the score at the model's input).
# 1. the in-domain MAE of "A longer pretraining" (ImageNet subset + the pets' photos without the test images, a
#    50-epoch schedule, ~45 minutes each at 198 images/s), with pretraining seeds 0 and 1, exports and probe every 10
#    epochs. USE_EPOCHS < 50 stops each run after that epoch's export (the schedule stays the 50-epoch one, and a
#    later call with a larger USE_EPOCHS resumes it), and only the exports up to it are fine-tuned.
# 2. the recipe (study or mild), chosen on validation from pretraining seed 0's exports at 250 labels (seed 0)
# 3. the baselines at the chosen recipe, 250 labels x seeds 0,1,2: the ViT from scratch at 128 and 160 px, and
#    U-Net-R18 from scratch at the ViT's fine-tuning minutes: 6 epochs at 128 and at 160 px (the ViT's minutes at those
#    sizes) and 9 epochs at 128 px (the ViT's minutes at 160 px; a separate folder: the same cell with other epochs)
# 4. pretraining seed 1's exports at the chosen recipe; the export (after 10, 20, ... epochs) chosen on validation,
#    pooled over both pretraining seeds
# 5. the chosen export of each pretraining seed at 128 and 160 px, 250 labels x seeds 0,1,2; the size chosen on
#    validation (pooled with the ViT from scratch)
# 6. all labelled training images left after the test and validation sets (777), seed 0: the chosen export of each
#    pretraining seed, the ViT from scratch and the U-Net (6 epochs) at the chosen size
# 7. simseg report for each folder
# PARALLEL=2 runs two processes at once, one thread each (2 cores: ~1.3x the images/s of one two-thread process):
# the two pretrainings, then steps 2-3 beside seed 1's pretraining and step 4, then each sweep as two shards. Each
# step skips what is finished; a killed pretraining or cell resumes from its last epoch. Nothing else should run on
# the CPU meanwhile: the minutes are part of the result.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-../simseg-pretraining-protocol}
HERE=$(cd "$(dirname "$0")/.." && pwd)
EPOCHS=50
EVERY=10
PETS="$DATA/oxford-iiit-pet"
IMAGENET="$DATA/imagenet-subset/train"
CFG="$HERE/configs/study_cpu"
mkdir -p "$OUT"

source "$HERE/studies/pretraining_steps.sh"

# 1. the test images no pretraining may see (the split every cell draws: data.test_seed), then the pretrainings
TEST_LIST="$OUT/test_images.txt"
if [ ! -f "$TEST_LIST" ]; then
  python - "$CFG/segment.yaml" "$PETS" "$TEST_LIST" <<'EOF'
import sys
from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.experiments.sweep.arguments import labelled_test_names
from simseg.data.splits import save_split
save_split(sys.argv[3], labelled_test_names(load_config(SegmentConfig, sys.argv[1], [f"data.source={sys.argv[2]}"])))
EOF
fi
USE_EPOCHS=${USE_EPOCHS:-$EPOCHS}
PARALLEL=${PARALLEL:-1}
VAL=100
if [ "$PARALLEL" = 2 ]; then export OMP_NUM_THREADS=1; elif [ "$PARALLEL" != 1 ]; then
  echo "PARALLEL=$PARALLEL: use 1 or 2" >&2; exit 2
fi

pretrain_seed() {  # SEED: the in-domain MAE, stopped once its export after USE_EPOCHS epochs and that epoch's record exist
  local run="$OUT/pretrain/mae-pets-long-s$1" last=$((USE_EPOCHS - 1)) pid
  done_at() { [ -f "$run/exports/epoch_$(printf %03d $last)/encoder.safetensors" ] \
    && grep -q "\"epoch\": $last," "$run/metrics.jsonl" 2>/dev/null; }
  if done_at; then return; fi
  pretrain "mae-pets-long-s$1" "$CFG/pretrain_mae.yaml" seed="$1" data.source="[$IMAGENET,$PETS]" \
    data.exclude="$TEST_LIST" train.epochs=$EPOCHS log.export_every=$EVERY log.grid_every=$EVERY \
    probe.every=$EVERY probe.data="$PETS" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null && ! done_at; do sleep 10; done
  if done_at && [ "$USE_EPOCHS" -lt "$EPOCHS" ]; then pkill -TERM -P "$pid" || true; wait "$pid" || true
  else wait "$pid"; fi
}

protocol() {  # MODELS INITS SUBSETS SEEDS [flags and key=value...]: cells into $OUT/${CELLS:-cells}
  local models=$1 inits=$2 subsets=$3 seeds=$4
  shift 4
  simseg sweep -c "$CFG/segment.yaml" --data "$PETS" --output-dir "$OUT/${CELLS:-cells}" --val-size "$VAL" \
    --models "$models" --init "$inits" --subsets "$subsets" --seeds "$seeds" eval.tta=true train.ema_half_life=16 "$@"
}
sharded() {  # the same arguments as protocol: its cells as PARALLEL shards at once, then the results of all of them
  if [ "$PARALLEL" = 1 ]; then protocol "$@"; return; fi
  protocol "$@" --shard 0/2 & local first=$!
  protocol "$@" --shard 1/2
  wait "$first"
  protocol "$@"  # nothing left to run: rebuilds results.csv from both shards' cells
}
lanes() {  # FUNCTION_A FUNCTION_B: at once with PARALLEL=2, else one after the other
  if [ "$PARALLEL" = 1 ]; then "$1"; "$2"; return; fi
  "$1" & local first=$!
  "$2"
  wait "$first"
}
exports() {  # SEEDS EPOCHS: the exports as inits, eEPOCH-sSEED=PATH, comma-separated
  local s e parts=()
  for s in $1; do for e in $2; do
    parts+=("e$e-s$s=$OUT/pretrain/mae-pets-long-s$s/exports/epoch_$(printf %03d $((e - 1)))")
  done; done
  (IFS=,; echo "${parts[*]}")
}
choose() {  # SWEEP_DIR AXIS [choose_on_validation.py flags]: the value of AXIS that the validation set chose
  python "$HERE/studies/choose_on_validation.py" "$OUT/$1" "$2" "${@:3}"
}
EXPORT_EPOCHS=$(seq $EVERY $EVERY "$USE_EPOCHS" | paste -sd' ')
recipe_file="$OUT/choice/chosen_recipe.txt"

seed1_then_its_exports() {  # lane A: pretraining seed 1, then its exports at the chosen recipe (step 4's cells)
  pretrain_seed 1
  if [ "${STOP_AFTER:-}" = pretrain ]; then return; fi
  while [ ! -f "$recipe_file" ]; do sleep 20; done
  CELLS=choice protocol vit_fused_skip "$(exports 1 "$EXPORT_EPOCHS")" 250 0 --recipes "$(cat "$recipe_file")"
}
seed0_then_baselines() {  # lane B: pretraining seed 0, the recipe (step 2), the baselines (step 3)
  pretrain_seed 0
  if [ "${STOP_AFTER:-}" = pretrain ]; then return; fi
  CELLS=choice protocol vit_fused_skip "$(exports 0 "$EXPORT_EPOCHS")" 250 0 --recipes study,mild
  choose choice recipe > "$recipe_file.tmp" && mv "$recipe_file.tmp" "$recipe_file"
  local recipe
  recipe=$(cat "$recipe_file")
  protocol vit_fused_skip scratch 250 0,1,2 --recipes "$recipe" --img-sizes 128,160
  protocol unet_resnet18 scratch 250 0,1,2 --recipes "$recipe" --img-sizes 128,160 train.epochs=6 "train.milestones=[0.8]"
  CELLS=unet128-long protocol unet_resnet18 scratch 250 0,1,2 --recipes "$recipe" train.epochs=9 "train.milestones=[0.8]"
}

# 1-4
lanes seed1_then_its_exports seed0_then_baselines
if [ "${STOP_AFTER:-}" = pretrain ]; then exit 0; fi
RECIPE=$(cat "$recipe_file")
CELLS=choice protocol vit_fused_skip "$(exports "0 1" "$EXPORT_EPOCHS")" 250 0 --recipes "$RECIPE"  # results of both lanes
EXPORT=$(choose choice pretrained_epochs --where recipe="$RECIPE")
CHOSEN=$(exports "0 1" "$EXPORT")

# 5. resolution: the chosen export at 128 and 160 px, 250 labels x seeds 0,1,2 (the scratch cells are step 3's)
sharded vit_fused_skip "scratch,$CHOSEN" 250 0,1,2 --recipes "$RECIPE" --img-sizes 128,160
SIZE=$(choose cells img_size --subset 250)

# 6. every labelled training image left after the test and validation sets, seed 0 (three ViT cells and a U-Net:
#    with PARALLEL=2 the U-Net follows the lone ViT shard)
ALL=$((1169 - 292 - VAL))
all_vit() { protocol vit_fused_skip "scratch,$CHOSEN" "$ALL" 0 --recipes "$RECIPE" --img-sizes "$SIZE" "$@"; }
all_unet() { protocol unet_resnet18 scratch "$ALL" 0 --recipes "$RECIPE" --img-sizes "$SIZE" train.epochs=6 "train.milestones=[0.8]"; }
if [ "$PARALLEL" = 1 ]; then all_vit; all_unet; else
  all_vit --shard 0/2 & first=$!
  all_vit --shard 1/2; all_unet
  wait "$first"; all_vit
fi

# 7. the reports (plain scores, paired intervals, the validation-chosen arms)
for dir in choice cells unet128-long; do simseg report "$OUT/$dir"; done
