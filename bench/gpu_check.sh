#!/usr/bin/env bash
# On the GPU machine, in one call: install what its image lacks, run the GPU tests, then the
# ingest benchmark (tutorial vs lookalike, GPU utilisation) with a ViT-base and with
# efficientnet-lite0, and the photo benchmark. Every result lands in $OUT.
#
# Here first: bash bench/gpu_prepare.sh; try it on this CPU with: OUT=/tmp/gpu-out DEVICE=cpu
# LIMIT=64 PYTHON=.venv/bin/python bash bench/gpu_check.sh. There: device run, carry [".whl", "gpu-carry"], command
# "bash bench/gpu_check.sh", timeout_s 540 (each step has its own limit, so one that hangs
# does not take the others with it).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-}  # gallery images per benchmark (default: all carried)
PY=${PYTHON:-python3}  # there: the image's python3, which holds CUDA torch
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LOOKALIKE_TEST_SHARED=$PWD/gpu-carry
beans=gpu-carry/data/beans
effnet=gpu-carry/models/efficientnet-lite0

step() {  # step NAME SECONDS COMMAND...: run with a limit, keep its log, go on if it fails
  local name=$1 limit=$2
  shift 2
  echo "== $name" | tee -a "$OUT/summary.txt"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUT/$name.log"
  echo "== $name: exit $rc" | tee -a "$OUT/summary.txt"
}

if [ "$DEVICE" = cuda ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
  # lookalike itself: ingest/ and search/ install as lookalike.ingest and lookalike.search.
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
  nvidia-smi -L | tee "$OUT/gpu.txt"
fi
"$PY" - <<'PY' | tee "$OUT/versions.txt"
import datasets, numpy, PIL, pyarrow, torch, transformers
print(f"torch {torch.__version__} cuda {torch.version.cuda} transformers {transformers.__version__}")
print(f"datasets {datasets.__version__} pyarrow {pyarrow.__version__} numpy {numpy.__version__}")
print(f"pillow {PIL.__version__} cuda available {torch.cuda.is_available()}")
PY

marker="gpu"
[ "$DEVICE" = cuda ] || marker="gpu or not gpu"  # on a CPU: prove the script, not the GPU
step tests 240 "$PY" -m pytest -q -p no:cacheprovider -m "$marker" tests/test_gpu.py

step vit-base-model 60 "$PY" bench/make_vit_base.py gpu-carry/vit-base
limit=()
[ -n "$LIMIT" ] && limit=(--limit "$LIMIT")
for model in vit-base efficientnet-lite0; do
  folder=gpu-carry/vit-base
  [ "$model" = efficientnet-lite0 ] && folder=$effnet
  step "ingest-$model" 150 "$PY" bench/ingest_bench.py --dataset "$beans" --model "$folder" \
    --device "$DEVICE" --queries 50 "${limit[@]}" --json "$OUT/ingest-$model.json"
done
# The Ray path (lookalike ingest --ray) against the local ingest, with one GPU actor, where
# the image has Ray: its wheel (~70 MB) does not fit in what a device call carries.
if "$PY" -c "import ray.data" 2>/dev/null; then
  gpus=1
  [ "$DEVICE" = cuda ] || gpus=0
  step ray 300 "$PY" bench/ray_bench.py --dataset "$beans" --model "$effnet" --device "$DEVICE" \
    --gpus "$gpus" "${limit[@]}" --json "$OUT/ray.json"
else
  echo "== ray: skipped, Ray is not installed here (pip install 'lookalike[ray]')" |
    tee -a "$OUT/summary.txt"
fi
if [ -f bench/photo_bench.py ]; then
  step photos 120 "$PY" bench/photo_bench.py --dataset "$beans" --model "$effnet" \
    --extra "--device $DEVICE" --json "$OUT/photos.json"
fi
cat "$OUT/summary.txt"
