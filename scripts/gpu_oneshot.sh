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
#   OUT/<model_id>.{analysis,synthesis}.onnx  the runtime's graphs of those weights
#   OUT/run/checkpoint.safetensors     model + Adam state (`vqz train CONFIG --resume --out OUT/run`)
#   OUT/run/model.safetensors          model only (a third of the size; init_from or --resume)
#   OUT/run/log.csv, train_config.json, validation_files.txt
#
# Usage (from anywhere; paths are relative to the checkout's root):
#   scripts/gpu_oneshot.sh [--config configs/gpu.toml] [--checkpoint PATH] [--data DIR] [--model-id ID]
#                          [--out oneshot-out] [--max-minutes 6] [--steps N] [--precision bf16|fp32]
#                          [--limit 48] [--wheels DIR] [--site DIR] [--deadline SECONDS]
#                          [--pack-into DIR [--part-mb 15]]
# In a tree prepared by `python scripts/gpu_bundle.py start` the defaults are the carried ones:
# --wheels gpu-carry/wheels (else .whl), --data gpu-carry/data (else gpu-data), and --checkpoint
# gpu-carry/start/model.safetensors where the config's init_from is not in the tree (stashed).
# --pack-into DIR: also write DIR/summary.json, DIR/oneshot.log (live) and DIR/oneshot.tar.part-aa,
#   -ab, ... (parts of at most --part-mb MiB holding the weights and graphs, the model-only
#   checkpoint and the run's logs; `cat oneshot.tar.part-* | tar -x` rebuilds them) for a channel
#   that limits files (the device tool: 8 files of 16 MiB). Packed also when a step fails.
# --deadline SECONDS: stop the Python part after this long (then pack what exists), to end inside
#   a caller's own time limit; a run killed from outside packs nothing but the live log.
# Environment: PYTHON (default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
WHEELS=""
SITE=${TMPDIR:-/tmp}/vqz-oneshot-site
OUT=oneshot-out
PACK=""
PART_MB=15
DEADLINE=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS=$2; shift 2 ;;
    --site) SITE=$2; shift 2 ;;
    --pack-into) PACK=$2; shift 2 ;;
    --part-mb) PART_MB=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    --out) OUT=$2; args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -z "$WHEELS" ]; then
  if [ -d gpu-carry/wheels ]; then WHEELS=gpu-carry/wheels; else WHEELS=.whl; fi
fi
mkdir -p "$OUT" "$SITE" ${PACK:+"$PACK"}
LOG="$OUT/oneshot.log"
: > "$LOG"
if [ -n "$PACK" ]; then : > "$PACK/oneshot.log"; fi
log() { tee -a "$LOG" ${PACK:+"$PACK/oneshot.log"}; }

pack_results() {
  local status=$?
  trap - EXIT
  if [ -n "$PACK" ]; then
    local members=() f
    for f in "$OUT"/*.safetensors "$OUT"/*.onnx "$OUT"/run/model.safetensors "$OUT"/run/log.csv \
             "$OUT"/run/train_config.json "$OUT"/run/validation_files.txt "$OUT"/summary.json; do
      if [ -f "$f" ]; then members+=("${f#"$OUT"/}"); fi
    done
    rm -f "$PACK"/oneshot.tar.part-*
    if [ ${#members[@]} -gt 0 ]; then
      tar -C "$OUT" -cf - "${members[@]}" | split -b "${PART_MB}M" - "$PACK/oneshot.tar.part-"
    fi
    if [ -f "$OUT/summary.json" ]; then cp "$OUT/summary.json" "$PACK/"; fi
    echo "gpu_oneshot: packed ${members[*]:-nothing} into $(ls "$PACK" | grep -c '^oneshot.tar.part-' || true) part(s) in $PACK (exit status $status)" | log
    local count biggest
    count=$(find "$PACK" -type f | wc -l)
    biggest=$(find "$PACK" -type f -printf '%s\n' | sort -n | tail -1)
    if [ "$count" -gt 8 ] || [ "${biggest:-0}" -gt $((16 * 1048576)) ]; then
      echo "gpu_oneshot: WARNING: $PACK holds $count files, the largest ${biggest:-0} bytes: over a return channel of 8 files of 16 MiB" | log
    fi
  fi
  exit "$status"
}
trap pack_results EXIT

echo "gpu_oneshot: $(date -u +%FT%TZ) in $ROOT, python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')" | log

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  echo "gpu_oneshot: installing ${#wheels[@]} wheel(s) from $WHEELS into $SITE" | log
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" 2>&1 | log
else
  echo "gpu_oneshot: no wheels in $WHEELS (compressai, constriction, pytorch-msssim must be installed already)" | log
fi
"$PYTHON" scripts/gpu_oneshot.py --link-source "$SITE"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

limit=()
if [ -n "$DEADLINE" ]; then limit=(timeout --signal=TERM --kill-after=20 "$DEADLINE"); fi
"${limit[@]}" "$PYTHON" scripts/gpu_oneshot.py "${args[@]}" 2>&1 | log
