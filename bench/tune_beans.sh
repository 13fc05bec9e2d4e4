#!/usr/bin/env bash
# Tuning on Beans, measured: the untuned model, then `lookalike tune` with 3 seeds (trained on
# train, epoch chosen on validation), each re-ingested and evaluated on test against train.
#   bash bench/tune_beans.sh [DATASET] [MODEL] [SEEDS...]
# Prints one JSON line per run and a summary (mean and spread). ~5 minutes per seed on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=$(realpath "${1:-../shared/data/beans}")
model=$(realpath "${2:-../shared/models/efficientnet-lite0}")
shift $(( $# > 2 ? 2 : $# )) || true
seeds=("${@:-0 1 2}")
[ $# -gt 0 ] || seeds=(0 1 2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} HF_DATASETS_OFFLINE=${HF_DATASETS_OFFLINE:-1}
lk=$(realpath "${LOOKALIKE_BIN:-.venv/bin/lookalike}")
echo "machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')"

measure() {  # name, model folder, tune seconds -> one JSON line
  "$lk" ingest --dataset "$dataset" --model "$2" --qdrant-path "$work/$1" --json 2>/dev/null >/dev/null
  "$lk" eval --split test --json --near-duplicates 100 --qdrant-path "$work/$1" 2>/dev/null |
    python3 -c "import json,sys; r=json.load(sys.stdin); r.update(run='$1', tune_seconds=$3); print(json.dumps(r))"
}

measure untuned "$model" 0 | tee "$work/results.jsonl"
for seed in "${seeds[@]}"; do
  "$lk" tune --model "$model" --dataset "$dataset" --output "$work/tuned-$seed" --seed "$seed" \
    --json 2>/dev/null > "$work/tune-$seed.json"
  secs=$(python3 -c "import json; print(round(json.load(open('$work/tune-$seed.json'))['seconds'], 1))")
  measure "seed$seed" "$work/tuned-$seed" "$secs" | tee -a "$work/results.jsonl"
done
python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
base, tuned = rows[0], rows[1:]
keys = ["precision_at_k", "precision_at_1", "knn_accuracy", "map_at_k", "near_duplicate_top1", "tune_seconds"]
print(f"{'metric':<22}{'untuned':>10}{'tuned mean':>12}{'tuned sd':>10}  per seed")
for k in keys:
    vals = [r[k] for r in tuned]
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    print(f"{k:<22}{base[k]:>10.4f}{statistics.mean(vals):>12.4f}{sd:>10.4f}  " + ", ".join(f"{v:.4f}" for v in vals))
PY
