#!/usr/bin/env bash
# Which pretraining pays at CPU scale on the shared pets (docs/results/pretraining.md was made with it), one command:
#
#     benchmarks/compare_pretraining_cpu.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-pretraining-cpu] [PRETRAIN_ALL]
#
# The CPU-scale protocol of docs/results/recipes.md (configs/study_cpu/segment.yaml: 10 epochs, batch 16, the fixed
# 292-image test set; its best recipe, mild with an EMA half-life of 16 batches, and TTA) with four pretrainings of
# about 20 CPU-minutes each:
#   pretrain-all  SimMIM as the study runs it (16-px units at 0.5, raw targets; configs/study_cpu/pretrain.yaml),
#                 PRETRAIN_ALL names a finished one, else it is pretrained here (~33 minutes)
#   simmim32      SimMIM with 32-px units at 0.6 and per-patch normalised targets (pretrain_simmim32.yaml)
#   mae           MAE at 0.75 with normalised targets (pretrain_mae.yaml), exports every 2 epochs
#   mae-pets      the same on the ImageNet subset plus the pets' own images, the sweep's test images excluded,
#                 with the linear probe every 2 epochs (BEST_METHOD=simmim32 pretrains that config instead)
# Steps, the main comparison first so that a cut-short run still answers it:
# 1. pretrain mae; cells vit_fused_skip x {scratch, mae} and unet_resnet18 from scratch at the ViT's training
#    minutes (UNET_EPOCHS=6: docs/results/models.md measured a U-Net-R18 step at 1.73x a vit_fused_skip step), at
#    250 labelled images x seeds 0,1,2
# 2. pretrain simmim32 (and pretrain-all); their vit_fused_skip cells
# 3. pretrain mae-pets; its cells; the budget curve (mae's exports after 2 and 6 of its 10 epochs)
# 4. vit_linear for every init at 250; vit_fused_skip and the U-Net at all 877 (seed 0) for scratch, mae, mae-pets
# 5. the linear probe of every mae export (benchmarks/probe_exports.py), simseg report, and the page's figures
#    (benchmarks/publish_pretraining.py)
# Each step skips what is finished, and a killed pretraining resumes from its last epoch. Nothing else should run on
# the CPU meanwhile: the cells' minutes are part of the result.
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

pretrain() {  # NAME CONFIG key=value...: a finished run is kept, a killed one resumes
  local run="$OUT/pretrain/$1" config=$2
  shift 2
  if [ -f "$run/metrics.json" ]; then return; fi
  local resume=false
  if [ -f "$run/config.yaml" ]; then resume=true; fi
  echo "== pretrain $(basename "$run")"
  simseg pretrain -c "$config" data.source="$IMAGENET" output_dir="$run" resume=$resume "$@"
}

cells() {  # MODELS INITS SUBSETS SEEDS [key=value...]: the recipe of recipes.md, into one sweep folder
  local models=$1 inits=$2 subsets=$3 seeds=$4
  shift 4
  simseg sweep -c "$CFG/segment.yaml" --data "$PETS" --output-dir "$OUT/cells" --models "$models" --init "$inits" \
    --subsets "$subsets" --seeds "$seeds" --recipes mild eval.tta=true train.ema_half_life=16 "$@"
}

unet() {  # SUBSETS SEEDS: U-Net-R18 from scratch at the ViT's training minutes
  cells unet_resnet18 scratch "$1" "$2" train.epochs="$UNET_EPOCHS" "train.milestones=[0.8]"
}

MAE="mae=$OUT/pretrain/mae"
# 1. the main comparison
pretrain mae "$CFG/pretrain_mae.yaml"
cells vit_fused_skip "scratch,$MAE" 250 0,1,2
unet 250 0,1,2

# 2. SimMIM, as the study runs it and with the settings above
pretrain simmim32 "$CFG/pretrain_simmim32.yaml"
if [ ! -f "$PRETRAIN_ALL/metrics.json" ]; then pretrain pretrain-all "$CFG/pretrain.yaml"; fi
cells vit_fused_skip "pretrain-all=$PRETRAIN_ALL,simmim32=$OUT/pretrain/simmim32" 250 0,1,2

# 3. in-domain images without the test set; the budget curve
TEST_LIST=$(find "$OUT/cells" -name test_images.txt | head -1)  # every cell draws the same test set (data.test_seed)
case $BEST_METHOD in
  mae) BEST_CONFIG="$CFG/pretrain_mae.yaml" ;;
  simmim32) BEST_CONFIG="$CFG/pretrain_simmim32.yaml" ;;
  *) echo "BEST_METHOD must be mae or simmim32" >&2; exit 2 ;;
esac
pretrain "$BEST_METHOD-pets" "$BEST_CONFIG" data.source="[$IMAGENET,$PETS/images]" data.exclude="$TEST_LIST" \
  train.epochs=9 probe.every=2 probe.data="$PETS"  # 9 epochs of 10.8k images: the minutes of 10 of 9.9k
PETS_RUN="$BEST_METHOD-pets=$OUT/pretrain/$BEST_METHOD-pets"
cells vit_fused_skip "$PETS_RUN" 250 0,1,2
cells vit_fused_skip "mae-e2=$OUT/pretrain/mae/exports/epoch_001,mae-e6=$OUT/pretrain/mae/exports/epoch_005" 250 0,1,2

# 4. the study's head for every init; all 877 labelled images
cells vit_linear "scratch,pretrain-all=$PRETRAIN_ALL,simmim32=$OUT/pretrain/simmim32,$MAE,$PETS_RUN" 250 0,1,2
cells vit_fused_skip "scratch,$MAE,$PETS_RUN" 877 0
unet 877 0

# 5. probe curve, report, figures
python "$HERE/benchmarks/probe_exports.py" "$OUT/pretrain/mae" --data "$PETS" --exclude "$TEST_LIST"
simseg report "$OUT/cells"
python "$HERE/benchmarks/publish_pretraining.py" "$OUT"
