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
echo "the cells of steps 2-6 come with the validation protocol's sweep flags" >&2
exit 2
