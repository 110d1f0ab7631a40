#!/usr/bin/env bash
# Train the whole zoo on one GPU with no internet, end to end within ~12 minutes, and write the model
# folders (weights + cards) to OUT/zoo. Prepare on a machine with the data and internet (both ignored by git):
#   python -m sr_models.pack --data ../shared/data/train --out packed/train_crops.zip --max-side 384
#   pip download --no-deps -d packed/wheels diffusers==0.42.1 accelerate==1.15.0 safetensors==0.8.0 huggingface-hub==2.4.0
# Usage: bash scripts/zoo_gpu.sh OUT [MINUTES=10] [extra zoo options, e.g. --dry-run --device cpu]
set -euo pipefail
OUT=${1:?usage: bash scripts/zoo_gpu.sh OUT [MINUTES] [zoo options]}
MINUTES=${2:-10}
shift $(( $# >= 2 ? 2 : 1 ))
cd "$(dirname "$0")/.."
PACK=${SR_PACK:-packed/train_crops.zip}

if ! python -c "import diffusers, accelerate, safetensors" 2>/dev/null; then
  echo "zoo: installing the carried wheels (packed/wheels)"
  python -m pip install -q --no-index --find-links packed/wheels diffusers accelerate safetensors huggingface-hub
fi
[ -f "$PACK" ] || { echo "zoo: no training pack at $PACK (see the top of this script)" >&2; exit 2; }
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
python -m zipfile -e "$PACK" "$DATA"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>/dev/null || echo "no nvidia-smi" > "$OUT/gpu.txt"
# The pack holds only training-split images, under their pool names: --split train keeps the same split.
python -m sr_models.train zoo --data "$DATA" --out "$OUT/zoo" --minutes "$MINUTES" --batch-multiplier 4 "$@" \
  2>&1 | tee "$OUT/zoo.log"
