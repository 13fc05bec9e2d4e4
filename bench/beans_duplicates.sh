#!/usr/bin/env bash
# Near-duplicates in Beans: every split in one collection, then `lookalike duplicates`.
#   [GRID=pairs.png] bash bench/beans_duplicates.sh [DATASET] [MODEL] [THRESHOLD]
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:-../shared/data/beans}
model=${2:-../shared/models/efficientnet-lite0}
threshold=${3:-0.97}
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
lk=${LOOKALIKE_BIN:-.venv/bin/lookalike}
for split in train validation test; do
  "$lk" ingest --dataset "$dataset" --model "$model" --split "$split" --qdrant-path "$store" \
    --collection beans-all 2>/dev/null >/dev/null
done
# GRID=pairs.png also draws the best pairs.
"$lk" duplicates --collection beans-all --threshold "$threshold" --qdrant-path "$store" \
  ${GRID:+--grid "$GRID"} 2>/dev/null
