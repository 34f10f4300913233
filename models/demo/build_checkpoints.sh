#!/usr/bin/env bash
# The demo prompt checkpoints in models/demo/checkpoints/, one per serving lane, trained on the
# demo backbone with 16 clean training-split photos per class, scored on held-out photos and
# sketches, exported with that report in their headers. `make demo-checkpoints` runs this.
#   world-coop   CoOp:   stock image encoder, cached class matrix  -> the shared lane
#   world-cocoop CoCoOp: text side conditioned on each image       -> an image-conditioned lane
#   world-maple  MaPLe:  prompted image encoder, cached class matrix -> its own image lane
set -euo pipefail
CLIPSERVE=${CLIPSERVE:-clipserve}
WORK=${WORK:-runs/demo-checkpoints}
ARCH=clipserve-demo-vit
WEIGHTS=models/demo/backbone.safetensors
COMMON=(--data "$WORK/train" --arch "$ARCH" --pretrained "$WEIGHTS" --shots 16 --augment none
        --device cpu --no-progress --num-workers 1)

$CLIPSERVE world --out "$WORK/train" --split train --per-class 16 --style photo
$CLIPSERVE world --out "$WORK/heldout" --split heldout --per-class 8 --style photo
$CLIPSERVE world --out "$WORK/sketch" --split heldout --per-class 8 --style sketch

$CLIPSERVE train "${COMMON[@]}" --method coop --ctx-init "a photo of a" --epochs 30 --out "$WORK/coop"
$CLIPSERVE train "${COMMON[@]}" --method cocoop --epochs 2 --out "$WORK/cocoop"
$CLIPSERVE train "${COMMON[@]}" --method maple --set prompt_depth=3 --epochs 5 --out "$WORK/maple"

for method in coop cocoop maple; do
  $CLIPSERVE eval "$WORK/$method" --mode domain-shift --test "$WORK/heldout" --target "$WORK/sketch" \
    --pretrained "$WEIGHTS" --out "$WORK/$method-eval" --num-workers 1
  $CLIPSERVE export "$WORK/$method/seed_1/checkpoint.safetensors" \
    --out "models/demo/checkpoints/world-$method.safetensors" \
    --report "$WORK/$method-eval/report.json" --pretrained "$WEIGHTS"
done
