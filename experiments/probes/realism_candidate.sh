#!/bin/sh
# Calibrate a realism checkpoint's per-level strengths on the held-out crops, export it to a scratch
# folder and measure it on the held-out photos (vqz variants only; the R = 0 and anchor rows are the
# committed ones). Usage: experiments/probes/realism_candidate.sh CHECKPOINT NAME [TARGET] [REALISMS]
set -e
ckpt=$1; name=$2; target=${3:-1.0}; realisms=${4:-0.5,1}
folder=runs/candidates/$name
mkdir -p "$folder"
.venv/bin/vqz export-realism "$ckpt" -o "$folder/$name.safetensors" --id "$name" --strength "detail=$target" | tee "$folder/export.log"
VQZ_MODEL_PATH="$folder" .venv/bin/python -m vqz.benchmarks.realism --files checkpoints/vqz-rvq16-f8/validation_files.txt \
    --images ../shared/data/train --out "$folder/heldout" --realism "$realisms" --no-anchors
