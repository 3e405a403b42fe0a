#!/usr/bin/env bash
# Train the face-depth network from scratch on synthetic still-head clips and score it on held-out
# identities (docs/depth.md, run X): about 45 minutes on a 2-core CPU.
# Usage: scripts/train_depth_model.sh [WORK_DIR]
set -euo pipefail
work=${1:-runs/depth}

# Only the hand-held camera moves (and the mouth and eyes): the static scene the photometric model assumes.
dagan synth --out "$work/still" --identities 40 --clips-per-identity 4 --frames 32 --size 96 --seed 5 --still-head --quiet
# The same identities with turning heads, to score the network on the data DaGAN trains on.
dagan synth --out "$work/moving" --identities 40 --clips-per-identity 4 --frames 32 --size 96 --seed 5 --quiet
# A translation scale of 0.1 keeps the depth off its 0.1 bound for clips that move by several
# percent of the face's distance a frame (docs/depth.md); the camera is the renderer's.
dagan train-depth --data "$work/still" --out "$work/run" --size 96 --batch-size 4 --stride 2 \
    --learning-rate 2e-4 --intrinsics 0.95,0.95,0.5,0.5 --translation-scale 0.1 --max-steps 4000 \
    --seed 0 --workers 1 --cache-clips 200 --quiet
dagan train-depth --eval --data "$work/still" --out "$work/run" --size 96
cp "$work/run/depth_eval.json" "$work/run/depth_eval_still.json"
dagan train-depth --eval --data "$work/moving" --out "$work/run" --size 96
