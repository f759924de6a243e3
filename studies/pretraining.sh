#!/usr/bin/env bash
# Which pretraining pays at CPU scale on the shared pets: docs/results/pretraining.md (its section "A longer
# pretraining" is studies/pretraining_budget.sh's), one command:
#
#     studies/pretraining.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-pretraining-cpu] [PRETRAIN_ALL]
#
# Wall time: about 2 h 15 min of the 2-core CPU with PRETRAIN_ALL=none (docs/results/pretraining.md); pretrain-all
# adds its ~22 minutes and its cells.
#
# The CPU-scale protocol of docs/results/recipes.md (configs/study_cpu/segment.yaml: 10 epochs, batch 16, the fixed
# 292-image test set; its best recipe, mild with an EMA half-life of 16 batches, and TTA) with these pretrainings:
#   pretrain-all  SimMIM as the study runs it (16-px units at 0.5, raw targets, 6 epochs: ~22 minutes;
#                 configs/study_cpu/pretrain.yaml); PRETRAIN_ALL names a finished one, else it is pretrained here;
#                 PRETRAIN_ALL=none leaves it out (its cells with this recipe are in recipes.md)
#   mae           MAE at 0.75 with normalised targets, 10 epochs (~11 minutes; pretrain_mae.yaml)
#   simmim32      SimMIM with 32-px units at 0.6 and normalised targets, 4 epochs: MAE's minutes (pretrain_simmim32.yaml)
#   mae-pets      MAE on the ImageNet subset plus the pets' own photos, the cells' test images excluded, for 12 epochs
#                 (~15 minutes), its encoder kept every 4 epochs and the linear probe run every 4
#                 (BEST_METHOD=simmim32 pretrains that config instead, at its own minutes)
# Steps, the main comparison first so that a run cut short still answers it:
# 1. pretrain mae; cells vit_fused_skip x {scratch, mae} and unet_resnet18 from scratch at the ViT's training
#    minutes (UNET_EPOCHS=6: docs/results/models.md measured a U-Net-R18 step at 1.73x a vit_fused_skip step), at
#    250 labelled images x seeds 0,1,2
# 2. pretrain simmim32 (and pretrain-all); their vit_fused_skip cells
# 3. pretrain mae-pets; its cells; the budget curve (its exports after 4 and 8 of its 12 epochs)
# 4. all 877 labelled images (seed 0): vit_fused_skip from scratch and mae-pets, the U-Net; then vit_linear at 250
#    for scratch, mae and mae-pets
# 5. fine-tuning the 128-px mae and mae-pets exports at the pets' own 160 px (seeds 0, 1, 2; mae also at 192 px,
#    seed 0), their position embedding resampled, and the U-Net from scratch at 160 px (6 epochs: about the ViT's
#    minutes at 160): into cells-160 and cells-192, beside the 128-px cells
# 6. the linear probe of every pretraining's exports (studies/probe_exports.py), simseg report, and the page's
#    figures (studies/publish_pretraining.py)
# Each step skips what is finished; a killed pretraining or cell resumes from its last epoch. Nothing else should
# run on the CPU meanwhile: the minutes are part of the result.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-../simseg-pretraining-cpu}
PRETRAIN_ALL=${3:-$OUT/pretrain/pretrain-all}
HERE=$(cd "$(dirname "$0")/.." && pwd)
UNET_EPOCHS=${UNET_EPOCHS:-6}
BEST_METHOD=${BEST_METHOD:-mae}
PETS="$DATA/oxford-iiit-pet"
IMAGENET="$DATA/imagenet-subset/train"
CFG="$HERE/configs/study_cpu"

source "$HERE/studies/pretraining_steps.sh"

MAE="mae=$OUT/pretrain/mae"
# 1. the main comparison
pretrain mae "$CFG/pretrain_mae.yaml"
cells vit_fused_skip "scratch,$MAE" 250 0,1,2
unet 250 0,1,2

# 2. SimMIM, as the study runs it and with the settings above
pretrain simmim32 "$CFG/pretrain_simmim32.yaml"
SIMMIM_INITS="simmim32=$OUT/pretrain/simmim32"
if [ "$PRETRAIN_ALL" != none ]; then
  if [ ! -f "$PRETRAIN_ALL/metrics.json" ]; then pretrain pretrain-all "$CFG/pretrain.yaml"; fi
  SIMMIM_INITS="pretrain-all=$PRETRAIN_ALL,$SIMMIM_INITS"
fi
cells vit_fused_skip "$SIMMIM_INITS" 250 0,1,2

# 3. in-domain images without the test set; the budget curve
TEST_LIST=$(find "$OUT/cells" -name test_images.txt | head -1)  # every cell draws the same test set (data.test_seed)
case $BEST_METHOD in
  mae) BEST_CONFIG="$CFG/pretrain_mae.yaml"; BEST_EPOCHS=12 ;;
  simmim32) BEST_CONFIG="$CFG/pretrain_simmim32.yaml"; BEST_EPOCHS=4 ;;
  *) echo "BEST_METHOD must be mae or simmim32" >&2; exit 2 ;;
esac
BEST="$BEST_METHOD-pets"
pretrain "$BEST" "$BEST_CONFIG" data.source="[$IMAGENET,$PETS]" data.exclude="$TEST_LIST" \
  train.epochs=$BEST_EPOCHS log.export_every=4 probe.every=4 probe.data="$PETS"
PETS_RUN="$BEST=$OUT/pretrain/$BEST"
cells vit_fused_skip "$PETS_RUN" 250 0,1,2
if [ "$BEST_METHOD" = mae ]; then
  cells vit_fused_skip "$BEST-e4=$OUT/pretrain/$BEST/exports/epoch_003,$BEST-e8=$OUT/pretrain/$BEST/exports/epoch_007" \
    250 0,1,2
fi

# 4. all 877 labelled images; the study's linear head
cells vit_fused_skip "scratch,$PETS_RUN" 877 0
unet 877 0
cells vit_linear "scratch,$MAE,$PETS_RUN" 250 0,1,2

# 5. another fine-tuning size than the pretraining's
CELLS=cells-160 cells vit_fused_skip "$MAE" 250 0,1,2 model.img_size=160
CELLS=cells-192 cells vit_fused_skip "$MAE" 250 0 model.img_size=192
CELLS=cells-160 cells vit_fused_skip "$PETS_RUN" 250 0,1,2 model.img_size=160
CELLS=cells-160 unet 250 0,1,2 model.img_size=160

# 6. probe curves, report, figures
for run in "$OUT"/pretrain/*/ $([ "$PRETRAIN_ALL" = none ] || echo "$PRETRAIN_ALL"); do
  if [ ! -f "$run/probe_exports.json" ]; then
    python "$HERE/studies/probe_exports.py" "$run" --data "$PETS" --exclude "$TEST_LIST"
  fi
done
simseg report "$OUT/cells"
python "$HERE/studies/publish_pretraining.py" "$OUT" $([ "$PRETRAIN_ALL" = none ] || echo --pretrain-all "$PRETRAIN_ALL")
