#!/usr/bin/env bash
# The pretraining study redone under the validation protocol (docs/results/pretraining.md, its first section),
# one command:
#
#     [USE_EPOCHS=50] studies/pretraining_protocol.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-pretraining-protocol]
#
# Wall time: on the 2-core CPU of 2026-12-07/08 (pretraining at ~111 images/s, half of 2026-12-05's speed; a 160-px
# ViT cell of 250 labels in ~4.5 minutes, of 777 labels in 12-14) about 6 h from nothing: two 80-minute
# pretrainings and ~45 cells. The page's run was made in two parts: USE_EPOCHS=20 (about 4 h 30 min), then the
# defaults resuming it (about 4 h 40 min more, the rerun of the later steps at the recipe then chosen included).
#
# Every choice is made on a fixed 100-image validation set that no subset, seed or pretraining touches as labels
# (the sweep's --val-size, data.val_seed = the test seed); the 292-image test set is scored once per finished cell,
# at each mask's own resolution (metrics.json's test_* keys; test_input_* is the score at the model's input).
# 1. the in-domain MAE of "A longer pretraining" (ImageNet subset + the pets' photos without the test images, a
#    50-epoch schedule), pretraining seed 0, exports and probe every 10 epochs. USE_EPOCHS < 50 stops each run after
#    that epoch's export (the schedule stays the 50-epoch one, a later call with a larger USE_EPOCHS resumes it), and
#    only the exports up to it are fine-tuned.
# 2. the recipe (study or mild), chosen on validation from seed 0's exports, 250 labels, fine-tuning seed 0
# 3. pretraining seed 1, its exports at the chosen recipe; the export (after 10, 20, ... epochs) chosen on
#    validation, pooled over both pretraining seeds
# 4. the resolution: the chosen export of both pretraining seeds at 128 and 160 px (fine-tuning seed 0), chosen on
#    validation
# 5. at the chosen size, 250 labels x fine-tuning seeds 0,1,2: the chosen export of both pretraining seeds, the ViT
#    from scratch and U-Net-R18 from scratch (both under both recipes, each its own chosen on validation) at the ViT's
#    fine-tuning minutes (its step costs 1.73x the ViT's at 128 px, docs/results/models.md): 6 epochs at 128 px
#    for a ViT at 128; for a ViT at 160, 9 epochs at 128 px (U-Net gains nothing from 160 px; init label
#    scratch-9ep) and then 6 epochs at 160 px
# 6. all labelled training images left after the test and validation sets (777), fine-tuning seed 0: the chosen
#    export of pretraining seed 0, the ViT from scratch and the U-Net at equal minutes (step 5's first)
# 7. simseg report for each folder
# Each step skips what is finished; a killed pretraining or cell resumes from its last epoch, so a run stopped for
# time keeps every finished cell and the report shows what ran. Nothing else should run on the CPU meanwhile: the
# minutes are part of the result. (Two one-thread processes at once were tried: a cell beside a pretraining ran at
# 56% of its two-thread speed and the pretraining at 62%, 1.18x in all: not worth minutes measured under contention.)
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
VAL=100
RECIPES=study,mild  # every recipe choice (the pretrained ViT's, each baseline's) is made among these

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
    --models "$models" --init "$inits" --subsets "$subsets" --seeds "$seeds" "$@" eval.tta=true train.ema_half_life=16
}  # "$@": more flags and key=value overrides, in any order (simseg sweep parses them intermixed)
exports() {  # SEEDS EPOCHS: those exports as inits, eEPOCH-sSEED=PATH, comma-separated
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
UNET=(train.epochs=6 "train.milestones=[0.8]")

# 1-2. pretraining seed 0; the recipe on its exports
pretrain_seed 0
CELLS=choice protocol vit_fused_skip "$(exports 0 "$EXPORT_EPOCHS")" 250 0 --recipes "$RECIPES"
RECIPE=$(choose choice recipe --where init="$(exports 0 "$EXPORT_EPOCHS" | sed 's/=[^,]*//g')")

# 3. pretraining seed 1; the export, pooled over both seeds at the chosen recipe
pretrain_seed 1
CELLS=choice protocol vit_fused_skip "$(exports 1 "$EXPORT_EPOCHS")" 250 0 --recipes "$RECIPE"
EXPORT=$(choose choice pretrained_epochs --where recipe="$RECIPE")
CHOSEN=$(exports "0 1" "$EXPORT")
CHOSEN_LABELS=$(echo "$CHOSEN" | sed 's/=[^,]*//g')

# 4. the resolution, on the chosen exports' fine-tuning seed 0
protocol vit_fused_skip "$CHOSEN" 250 0 --recipes "$RECIPE" --img-sizes 128,160
SIZE=$(choose cells img_size --subset 250 --where seed=0 --where init="$CHOSEN_LABELS" --where recipe="$RECIPE")

# 5. 250 labels x 3 seeds at the chosen size, with the baselines at equal fine-tuning minutes. The baselines run
#    under both recipes and each gets its own recipe chosen on validation, as the pretrained ViT did: a recipe
#    chosen for the pretrained ViT alone could handicap them.
UNET_INIT=scratch
if [ "$SIZE" = 160 ]; then UNET=(train.epochs=9 "train.milestones=[0.8]") UNET_INIT=scratch-9ep=scratch; fi
unet() { protocol unet_resnet18 "$UNET_INIT" "$1" "$2" --recipes "$3" --img-sizes 128 "${UNET[@]}"; }
for seed in 0 1 2; do  # seed by seed: a run stopped for time keeps complete, paired sets of arms
  protocol vit_fused_skip "$CHOSEN" 250 "$seed" --recipes "$RECIPE" --img-sizes "$SIZE"
  protocol vit_fused_skip scratch 250 "$seed" --recipes "$RECIPES" --img-sizes "$SIZE"
  unet 250 "$seed" "$RECIPES"
done
SCRATCH_RECIPE=$(choose cells recipe --subset 250 --where arch=vit_fused_skip --where img_size="$SIZE" \
  --where init=scratch)
UNET_RECIPE=$(choose cells recipe --subset 250 --where arch=unet_resnet18 --where img_size=128 \
  --where init="${UNET_INIT%%=*}")
if [ "$SIZE" = 160 ]; then
  protocol unet_resnet18 scratch 250 0,1,2 --recipes "$RECIPES" --img-sizes 160 train.epochs=6 "train.milestones=[0.8]"
fi

# 6. every labelled training image left after the test and validation sets, seed 0, each arm at its chosen recipe
ALL=$((1169 - 292 - VAL))
protocol vit_fused_skip "$(exports 0 "$EXPORT")" "$ALL" 0 --recipes "$RECIPE" --img-sizes "$SIZE"
protocol vit_fused_skip scratch "$ALL" 0 --recipes "$SCRATCH_RECIPE" --img-sizes "$SIZE"
unet "$ALL" 0 "$UNET_RECIPE"

# 7. the reports (plain scores, paired intervals, the validation-chosen arms)
for dir in choice cells; do simseg report "$OUT/$dir"; done
