#!/usr/bin/env bash
# Retrain the bundled demo model (docs/model-card.md) from nothing, deterministically given the seeds:
# synthetic data, then self-supervised face depth, then DaGAN, then the fp16 bundle and its inputs.
# About 95 min on a 2-core CPU at the speed of earlier measurements, 130 min on a slow day (docs/model-card.md).
# Usage: scripts/train_demo_model.sh [WORK_DIR] [ASSET_DIR]
#   ASSET_DIR receives model.safetensors, source.png, source.json and driving.mp4
#   (default WORK_DIR/bundle; pass dagan/assets/demo to replace the shipped model).
set -euo pipefail
work=${1:-runs/demo}
assets=${2:-$work/bundle}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$assets"

dagan synth --out "$work/data" --identities 40 --clips-per-identity 4 --frames 32 --size 96 --seed 5 --quiet
# The renderer's camera is known (dagan synth: focal 0.95 image widths, centred).
dagan train-depth --data "$work/data" --out "$work/depth" --size 96 --batch-size 4 --stride 2 \
    --learning-rate 2e-4 --intrinsics 0.95,0.95,0.5,0.5 --max-steps 2000 --seed 0 --workers 1 --cache-clips 200 --quiet
# The bundle stores the depth network in fp16: DaGAN trains on exactly the depth maps it will get.
dagan convert "$work/depth" "$work/depth-fp16.safetensors" --half --inference-only
dagan train --config "$here/configs/demo-64.yaml" --data "$work/data" --out "$work/dagan" \
    --depth-weights "$work/depth-fp16.safetensors" --max-steps 7000 --seed 0 --workers 1 --cache-clips 200 --quiet
dagan convert "$work/dagan/checkpoint.pth.tar" "$assets/model.safetensors" \
    --depth-weights "$work/depth-fp16.safetensors" --half --inference-only
# The bundled inputs: held-out identities, rendered at the model's size.
dagan synth-eval --data "$work/data" --out "$work/eval" --size 64 --quiet
cp "$work/eval/demo/source.png" "$work/eval/demo/source.json" "$work/eval/demo/driving.mp4" "$assets/"
