#!/usr/bin/env bash
# The training recipes compared at CPU scale on the shared pets: docs/results/recipes.md, one command:
#
#     studies/recipes.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-recipes-cpu] [PRETRAIN_RUN]
#
# Wall time: about 3 hours of the 2-core CPU with PRETRAIN_RUN given, ~13 minutes more without
# (docs/results/recipes.md).
#
# The CPU-scale protocol of studies/report.sh (configs/study_cpu/: 10 epochs, batch 16, a fixed 292-image
# test set) with test-time augmentation on (metrics.json keeps the plain score beside it), for the study's ViT and
# the best decoder of docs/results/models.md:
# 1. SimMIM pretraining on all 9.9k ImageNet-subset images (skipped when PRETRAIN_RUN names a finished one)
# 2. models vit_linear, vit_fused_skip x inits scratch, pretrain-all x recipes study, mild, medium
#    x 250 labelled images x seeds 0,1,2                                  (equal epochs)
# 3. the same at all 877 labelled images, seed 0
# 4. medium again with the epochs that cost the study recipe's 10 (SAM every 2nd step makes a step 1.5x dearer:
#    7 epochs), in OUT_DIR/equal-time; mild costs what study costs, so its equal-epoch cells are equal-time too
# 5. simseg report for both folders, the tables and recipe_curves.png (test mIoU against training minutes per
#    recipe, a panel per model and init: studies/publish_recipes.py)
# The recipes' EMA half-life (Composer's 1,000 batches, for runs of ~100k steps) would leave a 157-step cell's EMA
# weights mostly at their initial values: mild and medium run with EMA_HALF_LIFE=16 batches, a tenth of a
# 250-image cell, as an explicit key over the recipe's.
# Each step skips what is finished. MODELS, SUBSETS_LARGE and SEEDS may be set in the environment to run a part.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-../simseg-recipes-cpu}
PRETRAINED=${3:-}
HERE=$(cd "$(dirname "$0")/.." && pwd)
MODELS=${MODELS:-vit_linear,vit_fused_skip}
SEEDS=${SEEDS:-0,1,2}
SUBSETS_LARGE=${SUBSETS_LARGE-877}  # set and empty: none
EMA_HALF_LIFE=${EMA_HALF_LIFE:-16}
SEGMENT=(-c "$HERE/configs/study_cpu/segment.yaml" --data "$DATA/oxford-iiit-pet" --models "$MODELS"
         --val-size 0)  # as the page was made: no validation set, the last epoch reported
# each: the recipe flag, then the config keys (key=value arguments go last, after every flag)
RECIPES=("--recipes study eval.tta=true" "--recipes mild,medium eval.tta=true train.ema_half_life=$EMA_HALF_LIFE")
if [ -n "$PRETRAINED" ]; then
  INITS=(--init "scratch,pretrain-all=$PRETRAINED")
else
  INITS=(--init scratch --pretrain-subsets all --pretrain-data "$DATA/imagenet-subset/train"
         --pretrain-config "$HERE/configs/study_cpu/pretrain.yaml")
  PRETRAINED="$OUT/pretrain-all"
fi

for recipes in "${RECIPES[@]}"; do  # (word splitting of $recipes is wanted: a flag and its keys)
  # shellcheck disable=SC2086
  simseg sweep "${SEGMENT[@]}" "${INITS[@]}" --output-dir "$OUT" --subsets 250 --seeds "$SEEDS" $recipes
  if [ -n "$SUBSETS_LARGE" ]; then
    # shellcheck disable=SC2086
    simseg sweep "${SEGMENT[@]}" "${INITS[@]}" --output-dir "$OUT" --subsets "$SUBSETS_LARGE" --seeds 0 $recipes
  fi
done
simseg sweep "${SEGMENT[@]}" --init "scratch,pretrain-all=$PRETRAINED" --output-dir "$OUT/equal-time" \
  --subsets 250 --seeds "$SEEDS" --recipes medium eval.tta=true "train.ema_half_life=$EMA_HALF_LIFE" \
  train.epochs=7 "train.milestones=[0.8]"  # the LR drop at 80%, as epoch 8 of 10
simseg report "$OUT"
simseg report "$OUT/equal-time"
python "$HERE/studies/publish_recipes.py" "$OUT"
