#!/usr/bin/env bash
# Score a demo model on the held-out identities of the recipe's synthetic data, with dagan's own
# generate + evaluate (the numbers of docs/model-card.md). About 10 minutes on a 2-core CPU.
# Usage: scripts/evaluate_demo_model.sh [WORK_DIR] [MODEL.safetensors]
#   WORK_DIR holds data/ and depth/ from scripts/train_demo_model.sh; MODEL defaults to the bundled one.
set -euo pipefail
work=${1:-runs/demo}
model=${2:-$(python -c "from dagan.assets import DEMO_MODEL; print(DEMO_MODEL)")}
eval_set=$work/eval
report=$work/report

dagan synth-eval --data "$work/data" --out "$eval_set" --size 64 --quiet
# dlib does not find synthetic heads reliably: AKD uses a landmark network trained on the ground truth.
dagan train-landmarks --data "$work/data" --out "$work/landmarks.pth" --size 64 --quiet

# Self-reenactment: frame 0 of each test clip animated by the rest of it (absolute keypoints).
dagan generate --checkpoint "$model" --source-dir "$eval_set/source_self" --driving-dir "$eval_set/gt_self" \
    --mode self --out "$eval_set/dagan_self" --quiet
# Cross-identity: a test identity driven by another one's clip (relative motion); the truth is the
# source identity rendered with the driver's motion.
dagan generate --checkpoint "$model" --source-dir "$eval_set/source_cross" --driving-dir "$eval_set/driving_cross" \
    --mode cross --out "$eval_set/dagan_cross" --quiet

# still_*: the source frame repeated, the do-nothing baseline that the L1 bar is measured against.
for method in dagan still; do
    for kind in self cross; do
        dagan evaluate --eval-set "$eval_set" --generated "${method}_${kind}" --metrics l1,psnr,ssim,akd \
            --landmark-weights "$work/landmarks.pth" --out "$report/${method}_${kind}" --save-visuals --quiet
    done
done
# AKD against the driving person's own landmarks, too.
dagan evaluate --generated "$eval_set/dagan_cross" --driving "$eval_set/driving_cross" --metrics akd \
    --landmark-weights "$work/landmarks.pth" --out "$report/dagan_cross_vs_driver" --quiet
# The face-depth network (the model's, at 96x96) on the test identities' ground truth.
dagan train-depth --data "$work/data" --out "$work/depth" --eval
