#!/usr/bin/env bash
# Here, before a device call: put in gpu-carry/ and .whl/ (both git-ignored) what the GPU
# machine lacks, within the device tool's 64 MiB for the working tree and carried paths.
# Then: device run with carry [".whl", "gpu-carry"] and command "bash bench/gpu_check.sh".
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared}

# Python packages the GPU image lacks (it has torch, transformers, pyarrow, pandas, numpy...):
# lookalike's edge engine and datasets, cp312 manylinux wheels, no dependencies pulled in.
rm -rf .whl && mkdir -p .whl
for pkg in datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 qdrant-edge-py==0.9.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$pkg"
done

# Beans: the test split whole and the first 700 train images (the whole train split and the
# model would not fit beside the wheels); efficientnet-lite0 whole.
rm -rf gpu-carry && mkdir -p gpu-carry/data/beans/data gpu-carry/models
cp "$shared/data/beans/data/test-00000-of-00001.parquet" gpu-carry/data/beans/data/
python3 - "$shared" <<'PY'
import sys
import pyarrow.parquet as pq

table = pq.read_table(f"{sys.argv[1]}/data/beans/data/train-00000-of-00001.parquet")
pq.write_table(table.slice(0, 700), "gpu-carry/data/beans/data/train-00000-of-00001.parquet")
PY
cp -r "$shared/models/efficientnet-lite0" gpu-carry/models/
du -sh .whl gpu-carry
