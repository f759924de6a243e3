#!/usr/bin/env bash
# The pretraining study redone under the validation protocol (docs/results/pretraining.md, its first section),
# one command:
#
#     studies/pretraining_protocol.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-pretraining-protocol]
#
# Wall time: about 5 h of the 2-core CPU (two 45-minute pretrainings, then ~90 cells); STOP_AFTER=pretrain stops
# after step 1.
#
# Every choice is made on a fixed 100-image validation set that no subset, seed or pretraining touches as labels
# (the sweep's --val-size, data.val_seed = the test seed); the 292-image test set is scored once per finished cell,
# at each mask's own resolution (metrics.json's test_* keys; test_input_* is the score at the model's input).
# 1. the in-domain MAE of "A longer pretraining" (ImageNet subset + the pets' photos without the test images,
#    50 epochs, ~45 minutes each), with pretraining seeds 0 and 1, exports and probe every 10 epochs
# 2. the exports after 10..50 epochs, fine-tuned at 250 labelled pets (seed 0) per pretraining seed: the export is
#    chosen on validation
# 3. resolution: the chosen export at 128 and 160 px, 250 labels x seeds 0,1,2 per pretraining seed; the ViT from
#    scratch at both sizes (seeds 0,1,2); chosen on validation
# 4. U-Net-R18 from scratch at the ViT's fine-tuning minutes: 128 px with its epochs raised to the ViT's minutes
#    (UNET128_EPOCHS) and 160 px (UNET_EPOCHS)
# 5. all labelled training images left after test and validation (777), seed 0: the chosen arm of each pretraining
#    seed, the ViT from scratch and the U-Net at the chosen size
# 6. simseg report with the validation-chosen arm and paired intervals; the page's tables from the committed files
# Each step skips what is finished; a killed pretraining or cell resumes from its last epoch. Nothing else should
# run on the CPU meanwhile: the minutes are part of the result.
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
for seed in 0 1; do
  pretrain "mae-pets-long-s$seed" "$CFG/pretrain_mae.yaml" seed=$seed data.source="[$IMAGENET,$PETS]" \
    data.exclude="$TEST_LIST" train.epochs=$EPOCHS log.export_every=$EVERY log.grid_every=$EVERY \
    probe.every=$EVERY probe.data="$PETS"
done
if [ "${STOP_AFTER:-}" = pretrain ]; then exit 0; fi

# The cells: one sweep folder, the fixed validation set, every choice on it (studies/choose_on_validation.py reads
# the report's choice, so a later step fine-tunes what validation chose).
protocol() {  # MODELS INITS SUBSETS SEEDS [flags and key=value...]
  local models=$1 inits=$2 subsets=$3 seeds=$4
  shift 4
  simseg sweep -c "$CFG/segment.yaml" --data "$PETS" --output-dir "$OUT/${CELLS:-cells}" --val-size "$VAL" \
    --models "$models" --init "$inits" --subsets "$subsets" --seeds "$seeds" eval.tta=true train.ema_half_life=16 "$@"
}
VAL=100
exports() {  # the exports of both pretraining seeds after EPOCH epochs, as inits: eEPOCH-s0=...,eEPOCH-s1=...
  local epoch=$1 s parts=()
  for s in 0 1; do parts+=("e$epoch-s$s=$OUT/pretrain/mae-pets-long-s$s/exports/epoch_$(printf %03d $((epoch - 1)))"); done
  (IFS=,; echo "${parts[*]}")
}
choose() {  # SWEEP_DIR AXIS [SUBSET]: the value of AXIS that the validation set chose (the report's choice)
  python "$HERE/studies/choose_on_validation.py" "$OUT/$1" "$2" ${3:+--subset "$3"}
}

# 2. the recipe (study or mild) and the export (after 10..50 epochs), fine-tuned at 250 labels, seed 0, per
#    pretraining seed; both chosen on validation
ALL_EXPORTS=$(for e in $(seq $EVERY $EVERY $EPOCHS); do exports "$e"; done | paste -sd,)
CELLS=choice protocol vit_fused_skip "$ALL_EXPORTS" 250 0 --recipes study,mild
RECIPE=$(choose choice recipe)
EXPORT=$(choose choice pretrained_epochs)
CHOSEN=$(exports "$EXPORT")

# 3. resolution: the chosen export and the ViT from scratch at 128 and 160 px, 250 labels x seeds 0,1,2
protocol vit_fused_skip "scratch,$CHOSEN" 250 0,1,2 --recipes "$RECIPE" --img-sizes 128,160
SIZE=$(choose cells img_size 250)

# 4. U-Net-R18 from scratch at each ViT arm's fine-tuning minutes (its step costs 1.73x the ViT's at 128 px,
#    docs/results/models.md): 6 epochs at 128 and at 160 px match the ViT at those sizes; 9 epochs at 128 px match
#    the ViT at 160 px (a separate folder: the same cell with other epochs)
protocol unet_resnet18 scratch 250 0,1,2 --recipes "$RECIPE" --img-sizes 128,160 train.epochs=6 "train.milestones=[0.8]"
CELLS=unet128-long protocol unet_resnet18 scratch 250 0,1,2 --recipes "$RECIPE" train.epochs=9 "train.milestones=[0.8]"

# 5. every labelled training image left after the test and validation sets, seed 0
ALL=$((1169 - 292 - VAL))
protocol vit_fused_skip "scratch,$CHOSEN" "$ALL" 0 --recipes "$RECIPE" --img-sizes "$SIZE"
protocol unet_resnet18 scratch "$ALL" 0 --recipes "$RECIPE" --img-sizes "$SIZE" train.epochs=6 "train.milestones=[0.8]"

# 6. the reports (plain scores, paired intervals, the validation-chosen arms) and the page's committed files
for dir in choice cells unet128-long; do simseg report "$OUT/$dir"; done
