#!/usr/bin/env bash
# One-shot training on a GPU machine that has Python, PyTorch (and numpy, pillow, typer, rich,
# safetensors) but no package index: installs the carried wheels (compressai, constriction,
# pytorch-msssim; built by `python scripts/gpu_bundle.py wheels`), lays out the vqz package from
# this checkout, trains from the committed checkpoint on the carried subset (`python
# scripts/gpu_bundle.py data`) for a wall-clock budget, exports weights with frozen entropy
# tables, checks them with an encode/decode round trip, and writes everything to one folder:
#
#   OUT/oneshot.log                    this script's output
#   OUT/summary.json                   device, steps, seconds, held-out PSNR before/after, round trip
#   OUT/<model_id>.safetensors         weights with entropy tables (vqz encode/decode --weights)
#   OUT/run/checkpoint.safetensors     model + Adam state (`vqz train CONFIG --resume --out OUT/run`)
#   OUT/run/model.safetensors          model only (a third of the size; init_from or --resume)
#   OUT/run/log.csv, train_config.json, validation_files.txt
#
# Usage (from anywhere; paths are relative to the checkout's root):
#   scripts/gpu_oneshot.sh [--config configs/gpu.toml] [--checkpoint PATH] [--data gpu-data]
#                          [--out oneshot-out] [--max-minutes 8] [--steps N] [--precision bf16|fp32]
#                          [--limit 48] [--wheels .whl] [--site DIR] [--pack-into DIR [--part-mb 15]]
# --pack-into DIR: also write DIR/summary.json, DIR/oneshot.log and DIR/oneshot.tar.part-aa, -ab, ...
#   (parts of at most --part-mb MiB holding the weights, the model-only checkpoint and the run's
#   logs; `cat oneshot.tar.part-* | tar -x` rebuilds them) for a channel that limits file sizes.
# Environment: PYTHON (default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
WHEELS=.whl
SITE=${TMPDIR:-/tmp}/vqz-oneshot-site
OUT=oneshot-out
PACK=""
PART_MB=15
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS=$2; shift 2 ;;
    --site) SITE=$2; shift 2 ;;
    --pack-into) PACK=$2; shift 2 ;;
    --part-mb) PART_MB=$2; shift 2 ;;
    --out) OUT=$2; args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$OUT" "$SITE"
LOG="$OUT/oneshot.log"
echo "gpu_oneshot: $(date -u +%FT%TZ) in $ROOT, python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')" | tee "$LOG"

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  echo "gpu_oneshot: installing ${#wheels[@]} wheel(s) from $WHEELS into $SITE" | tee -a "$LOG"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" 2>&1 | tee -a "$LOG"
fi
"$PYTHON" scripts/gpu_oneshot.py --link-source "$SITE"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

"$PYTHON" scripts/gpu_oneshot.py "${args[@]}" 2>&1 | tee -a "$LOG"

if [ -n "$PACK" ]; then
  mkdir -p "$PACK"
  members=()
  for f in "$OUT"/*.safetensors "$OUT"/run/model.safetensors "$OUT"/run/log.csv "$OUT"/run/train_config.json \
           "$OUT"/run/validation_files.txt "$OUT"/summary.json; do
    members+=("${f#"$OUT"/}")
  done
  tar -C "$OUT" -cf - "${members[@]}" | split -b "${PART_MB}M" - "$PACK/oneshot.tar.part-"
  cp "$OUT/summary.json" "$PACK/"
  cp "$LOG" "$PACK/"
  echo "gpu_oneshot: packed ${members[*]} into $(ls "$PACK"/oneshot.tar.part-* | wc -l) part(s) in $PACK" | tee -a "$PACK/oneshot.log"
fi
