#!/usr/bin/env bash
# The models comparison at CPU scale on the shared pets: docs/results/models.md, one command:
#
#     studies/models.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-models-cpu]
#
# Wall time: about 75 minutes on a quiet 2-core CPU, pretraining included (this script's estimate); the page's run
# is not recorded as a whole (it ran over two days beside other work; its pretraining alone took 72.5 minutes).
#
# The CPU-scale protocol of studies/report.sh (configs/study_cpu/: 10 epochs, batch 16, a fixed
# 292-image test set, the SimMIM pretraining on all 9.9k ImageNet-subset images), for three models:
#   vit_linear (the study's), vit_fused_skip (the ViT with the decoder that fuses blocks and sees the image),
#   unet_resnet18 (from scratch; SimMIM exports do not fit a CNN, so the sweep skips those cells)
# 1. inits scratch and pretrain-all x 250 labelled images x seeds 0,1,2      (same epochs for every model)
# 2. the same at all 877 labelled images, seed 0
# 3. U-Net-R18 again at 250 x 3 seeds and at 877 with the epochs that take it as long as vit_fused_skip's 10
#    (equal training minutes; the ratio of their training steps measured in interleaved rounds by
#    benchmarks/model_train_speed.py, since cell times drift with whatever else runs), in OUT_DIR/equal-time
# 4. simseg report for both folders, and the page's tables (studies/publish_models.py)
# Each step skips what is finished.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-../simseg-models-cpu}
HERE=$(cd "$(dirname "$0")/.." && pwd)
MODELS=vit_linear,vit_fused_skip,unet_resnet18
SWEEP=(simseg sweep -c "$HERE/configs/study_cpu/segment.yaml" --data "$DATA/oxford-iiit-pet"
       --pretrain-subsets all --pretrain-data "$DATA/imagenet-subset/train"
       --pretrain-config "$HERE/configs/study_cpu/pretrain.yaml" --output-dir "$OUT" --init scratch --models "$MODELS"
       --val-size 0  # as the page was made: no validation set, the last epoch reported
       data.pipeline=per_image pretrain.data.pipeline=per_image)  # the path docs/results/models.md was made on

"${SWEEP[@]}" --subsets 250 --seeds 0,1,2
"${SWEEP[@]}" --subsets 877 --seeds 0

EPOCHS=$(cd "$HERE/benchmarks" && python - <<'PY'
import statistics
from model_train_speed import measure
speeds = measure(["vit_fused_skip", "unet_resnet18"], batch=16, steps=6, rounds=3, device="cpu")
vit, unet = (statistics.median(speeds[a]) for a in ("vit_fused_skip", "unet_resnet18"))
print(max(1, round(10 * unet / vit)))  # the protocol's 10 epochs of the fused ViT, in U-Net epochs
PY
)
echo "== equal training minutes: unet_resnet18 for $EPOCHS epochs"
simseg sweep -c "$HERE/configs/study_cpu/segment.yaml" --data "$DATA/oxford-iiit-pet" --output-dir "$OUT/equal-time" \
  --init scratch --models unet_resnet18 --subsets 250 --seeds 0,1,2 --val-size 0 train.epochs="$EPOCHS" \
  "train.milestones=[0.8]" data.pipeline=per_image  # the protocol's LR drop at 80% of the epochs, as epoch 8 of 10
simseg sweep -c "$HERE/configs/study_cpu/segment.yaml" --data "$DATA/oxford-iiit-pet" --output-dir "$OUT/equal-time" \
  --init scratch --models unet_resnet18 --subsets 877 --seeds 0 --val-size 0 train.epochs="$EPOCHS" \
  "train.milestones=[0.8]" \
  data.pipeline=per_image
simseg report "$OUT"
simseg report "$OUT/equal-time"
python "$HERE/studies/publish_models.py" "$OUT"
