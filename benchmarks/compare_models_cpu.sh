#!/usr/bin/env bash
# The models comparison at CPU scale on the shared pets (docs/results/models.md was made with it), one command:
#
#     benchmarks/compare_models_cpu.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-models-cpu]
#
# The CPU-scale protocol of benchmarks/reproduce_cpu.sh (configs/study_cpu/: 10 epochs, batch 16, a fixed
# 292-image test set, the SimMIM pretraining on all 9.9k ImageNet-subset images), for three models:
#   vit_linear (the study's), vit_fused_skip (the ViT with the decoder that fuses blocks and sees the image),
#   unet_resnet18 (from scratch; SimMIM exports do not fit a CNN, so the sweep skips those cells)
# 1. inits scratch and pretrain-all x 250 labelled images x seeds 0,1,2      (same epochs for every model)
# 2. the same at all 877 labelled images, seed 0
# 3. U-Net-R18 again at 250 x 3 seeds with the epochs that take it as long as the pretrained
#    vit_fused_skip took in step 1 (equal training minutes), in OUT_DIR/equal-time
# 4. simseg report for both folders, and the page's tables (benchmarks/publish_models.py)
# Each step skips what is finished. About 75 minutes on a quiet 2-core CPU, pretraining included.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-../simseg-models-cpu}
HERE=$(cd "$(dirname "$0")/.." && pwd)
MODELS=vit_linear,vit_fused_skip,unet_resnet18
SWEEP=(simseg sweep -c "$HERE/configs/study_cpu/segment.yaml" --data "$DATA/oxford-iiit-pet"
       --pretrain-subsets all --pretrain-data "$DATA/imagenet-subset/train"
       --pretrain-config "$HERE/configs/study_cpu/pretrain.yaml" --output-dir "$OUT" --init scratch --models "$MODELS")

"${SWEEP[@]}" --subsets 250 --seeds 0,1,2
"${SWEEP[@]}" --subsets 877 --seeds 0

EPOCHS=$(python - "$OUT" <<'PY'
import sys
from simseg.experiments.results import read_results
rows = read_results(sys.argv[1])
def minutes(arch, init):
    times = [r["train_seconds"] for r in rows if (r["arch"], r["init"], r["subset"]) == (arch, init, 250)]
    return sum(times) / len(times)
# the U-Net's 10-epoch time scaled to the pretrained fused-skip ViT's, at least one epoch
print(max(1, round(10 * minutes("vit_fused_skip", "pretrain-all") / minutes("unet_resnet18", "scratch"))))
PY
)
echo "== equal training minutes: unet_resnet18 for $EPOCHS epochs"
simseg sweep -c "$HERE/configs/study_cpu/segment.yaml" --data "$DATA/oxford-iiit-pet" --output-dir "$OUT/equal-time" \
  --init scratch --models unet_resnet18 --subsets 250 --seeds 0,1,2 train.epochs="$EPOCHS" \
  "train.milestones=[0.8]"  # the protocol's LR drop at 80% of the epochs, as epoch 8 of 10
simseg report "$OUT"
simseg report "$OUT/equal-time"
python "$HERE/benchmarks/publish_models.py" "$OUT"
