# The steps that studies/pretraining.sh and studies/pretraining_budget.sh share, sourced by both after they set OUT,
# IMAGENET, PETS, CFG and UNET_EPOCHS: a pretraining, the cells of recipes.md's best recipe, and U-Net-R18 from
# scratch at the ViT's training minutes. Each skips what is finished and resumes what was killed.
#
#     source "$HERE/studies/pretraining_steps.sh"      # in those two scripts; not run on its own
#
# Wall time: none of its own (each step's is part of its script's).

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
  simseg sweep -c "$CFG/segment.yaml" --data "$PETS" --output-dir "$OUT/${CELLS:-cells}" --models "$models" --init "$inits" \
    --subsets "$subsets" --seeds "$seeds" --val-size 0 --recipes mild eval.tta=true train.ema_half_life=16 "$@"  # as the page was made
}

unet() {  # SUBSETS SEEDS [key=value...]: U-Net-R18 from scratch at the ViT's training minutes
  cells unet_resnet18 scratch "$1" "$2" train.epochs="$UNET_EPOCHS" "train.milestones=[0.8]" "${@:3}"
}
