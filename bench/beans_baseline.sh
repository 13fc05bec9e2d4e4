#!/usr/bin/env bash
# Full Beans baseline: ingest the whole train split, then eval the test split against it.
# Prints the ingest summary (images/s) and eval's JSON. Rerun:
#   bash bench/beans_baseline.sh [DATASET] [MODEL]
# defaults: ../shared/data/beans and ../shared/models/efficientnet-lite0 (any local folders work).
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:-../shared/data/beans}
model=${2:-../shared/models/efficientnet-lite0}
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
lk=${LOOKALIKE_BIN:-.venv/bin/lookalike}
echo "machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')"
"$lk" ingest --dataset "$dataset" --model "$model" --split train --qdrant-path "$store" 2>/dev/null
"$lk" eval --split test --k 5 --json --qdrant-path "$store" 2>/dev/null
