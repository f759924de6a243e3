#!/usr/bin/env bash
# The pets through the generic mask-folder path: docs/results/own_data.md (its tables: studies/publish_own_data.py
# on the results.csv committed beside the page), one command:
#
#     studies/own_data.sh [DATA_DIR=../shared/data] [OUT_DIR=../simseg-own-data-cpu] [MAE_PETS_RUN]
#
# Wall time: about 1 h 15 min of the 2-core CPU, its MAE pretraining beside other work (~10 minutes of it on a
# quiet CPU; docs/results/own_data.md).
#
# 1. studies/pets_as_mask_folders.py: the shared pets as palette PNG masks (class ids, a class file) and as
#    binary pet/background masks with the trimap's boundary band as 255 (ignored)
# 2. reproduction: one trimap cell (vit_fused_skip, scratch, 250 labelled, seed 0, the recipe of pretraining.md) and
#    the same cell on the palette folder given that cell's train_images.txt / test_images.txt as split lists; the
#    two test mIoUs must be equal to the last digit (the script compares them and fails otherwise)
# 3. the 2-class protocol on the binary folder, on the same 292 test images: scratch and the in-domain MAE
#    pretraining (mae-pets of pretraining.md: 12 epochs of MAE on the ImageNet subset plus the pets' photos that are
#    not test images, ~10 quiet CPU-minutes; MAE_PETS_RUN names a finished one, else it is pretrained here) at 250
#    labelled (seeds 0, 1, 2) and all 877 (seed 0); then simseg report
# Every step skips what is finished and resumes what was killed. Nothing else should run on the CPU meanwhile.
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-../simseg-own-data-cpu}
MAE_PETS=${3:-$OUT/pretrain/mae-pets}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PETS="$DATA/oxford-iiit-pet"
CFG="$HERE/configs/study_cpu"
RECIPE=(recipe=mild eval.tta=true train.ema_half_life=16 model.arch=vit_fused_skip)
mkdir -p "$OUT"

# 1. the layouts
if [ ! -f "$OUT/pets-generic/binary/classes.json" ]; then
  python "$HERE/studies/pets_as_mask_folders.py" "$PETS" "$OUT/pets-generic"
fi

# 2. reproduction of a trimap cell through the palette folder
segment_once() {  # RUN key=value...: a finished run is kept, a killed one resumes
  local run=$1
  shift
  if [ -f "$run/metrics.json" ]; then return; fi
  simseg segment -c "$CFG/segment.yaml" "${RECIPE[@]}" output_dir="$run" \
    resume="$([ -f "$run/config.yaml" ] && echo true || echo false)" "$@"
}
segment_once "$OUT/reproduce/trimap" data.source="$PETS" data.subset=250 seed=0
segment_once "$OUT/reproduce/palette" data.source="$OUT/pets-generic/palette" seed=0 \
  data.train_list="$OUT/reproduce/trimap/train_images.txt" data.test_list="$OUT/reproduce/trimap/test_images.txt"
python - "$OUT/reproduce" <<'EOF'
import json, sys
from pathlib import Path
runs = Path(sys.argv[1])
trimap, palette = (json.loads((runs / name / "metrics.json").read_text()) for name in ("trimap", "palette"))
for key in ("miou", "plain_miou"):
    print(f"{key}: trimap source {trimap[key]!r}, palette mask folder {palette[key]!r}")
    if trimap[key] != palette[key]:
        sys.exit(f"the palette mask folder does not reproduce the trimap cell's {key}")
print("the palette mask folder reproduces the trimap cell exactly")
EOF

# 3. the 2-class protocol
if [ ! -f "$MAE_PETS/metrics.json" ]; then
  simseg pretrain -c "$CFG/pretrain_mae.yaml" data.source="[$DATA/imagenet-subset/train,$PETS]" \
    data.exclude="$OUT/reproduce/trimap/test_images.txt" train.epochs=12 log.export_every=4 output_dir="$MAE_PETS" \
    resume="$([ -f "$MAE_PETS/config.yaml" ] && echo true || echo false)"
fi
binary() {  # SUBSETS SEEDS
  simseg sweep -c "$CFG/segment.yaml" --data "$OUT/pets-generic/binary" --output-dir "$OUT/binary" \
    --models vit_fused_skip --init "scratch,mae-pets=$MAE_PETS" --subsets "$1" --seeds "$2" --recipes mild \
    --val-size 0 eval.tta=true train.ema_half_life=16 data.test_list="$OUT/reproduce/trimap/test_images.txt"
}
binary 250 0,1,2
binary 877 0
simseg report "$OUT/binary"
