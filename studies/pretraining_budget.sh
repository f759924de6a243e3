#!/usr/bin/env bash
# The pretraining-budget curve past 10 minutes (docs/results/pretraining.md, "A longer pretraining"), one command:
#
#     studies/pretraining_budget.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-pretraining-budget] [EPOCHS=50]
#
# Wall time: about 2 hours of the 2-core CPU at EPOCHS=50 (docs/results/pretraining.md).
#
# pretraining.sh's best pretraining, MAE on the ImageNet subset plus the pets' own photos without the
# cells' test images (mae-pets), run for EPOCHS epochs (50: ~45 of the 60 CPU-minutes the protocol allows), its
# encoder kept and the linear probe run every 10 epochs; the same recipe and cells as that script. Steps, the
# main comparison first so that a run cut short still answers it:
# 1. vit_fused_skip from scratch at 250 labelled pets x seeds 0,1,2 (and the test list the pretraining excludes)
# 2. pretrain mae-pets-long
# 3. its last export fine-tuned at 250 x seeds 0,1,2; U-Net-R18 from scratch at the ViT's minutes beside it
# 4. the last export fine-tuned at 160 px (seeds 0,1,2), beside the U-Net at 160 px
# 5. its exports after 10, 20, 30 and 40 epochs fine-tuned at 250 x seeds 0,1,2: the budget curve
# 6. vit_fused_skip from scratch at 160 px (seeds 0,1,2): the gain of pretraining at that size
# 7. the probe of every export (studies/probe_exports.py); the tables and the figure (publish_pretraining.py)
# Nothing else should run on the CPU meanwhile: the minutes are part of the result.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-../simseg-pretraining-budget}
EPOCHS=${3:-50}
HERE=$(cd "$(dirname "$0")/.." && pwd)
UNET_EPOCHS=${UNET_EPOCHS:-6}
EVERY=10
PETS="$DATA/oxford-iiit-pet"
IMAGENET="$DATA/imagenet-subset/train"
CFG="$HERE/configs/study_cpu"
RUN="$OUT/pretrain/mae-pets-long"

source "$HERE/studies/pretraining_steps.sh"

# 1. the baseline, and the test set every cell draws (data.test_seed)
cells vit_fused_skip scratch 250 0,1,2
TEST_LIST=$(find "$OUT/cells" -name test_images.txt | head -1)

# 2. the longer in-domain pretraining
pretrain mae-pets-long "$CFG/pretrain_mae.yaml" data.source="[$IMAGENET,$PETS]" data.exclude="$TEST_LIST" \
  train.epochs="$EPOCHS" log.export_every=$EVERY log.grid_every=$EVERY probe.every=$EVERY probe.data="$PETS"

# 3. the main comparison
cells vit_fused_skip "mae-pets-long=$RUN" 250 0,1,2
unet 250 0,1,2

# 4. at the photos' own 160 px
CELLS=cells-160 cells vit_fused_skip "mae-pets-long=$RUN" 250 0,1,2 model.img_size=160
CELLS=cells-160 unet 250 0,1,2 model.img_size=160

# 5. the budget curve: init names RUN-eN are the export after N epochs
for epoch in $(seq "$EVERY" "$EVERY" $((EPOCHS - 1))); do
  cells vit_fused_skip "mae-pets-long-e$epoch=$RUN/exports/epoch_$(printf %03d $((epoch - 1)))" 250 0,1,2
done

# 6. the same model from scratch at 160 px
CELLS=cells-160 cells vit_fused_skip scratch 250 0,1,2 model.img_size=160

# 7. probe, report, figures
if [ ! -f "$RUN/probe_exports.json" ]; then
  python "$HERE/studies/probe_exports.py" "$RUN" --data "$PETS" --exclude "$TEST_LIST"
fi
simseg report "$OUT/cells"
python "$HERE/studies/publish_pretraining.py" "$OUT" "$HERE/docs/results/pretraining/budget" --curve-run mae-pets-long
