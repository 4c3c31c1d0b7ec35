#!/usr/bin/env bash
# GPU benchmark of stage 1 (see bench/RESULTS_extract.md). Run from the repository root on a
# CUDA machine that has python3 + torch but not av / pytorchvideo: the wheels carried in .whl/
# (filled with the pip download / pip wheel commands in bench/RESULTS_extract.md) are
# installed into /tmp/site without network.
#   bash bench/gpu_extract.sh [--seconds 4] [--weights PATH] [--skip-e2e]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! ls .whl/*.whl >/dev/null 2>&1; then
  echo "no wheels in .whl/: fill it first (bench/RESULTS_extract.md, 'GPU run')" >&2; exit 2
fi
$PY -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! $PY -c "import torchvision" 2>/dev/null; then
  echo "torchvision missing: using bench/gpu/shim (pytorchvideo only imports RoIAlign)" >&2
  export PYTHONPATH="$PYTHONPATH:$PWD/bench/gpu/shim"
fi
$PY -c "import torch, av, pytorchvideo.models; print('torch', torch.__version__, 'av', av.__version__, 'cuda', torch.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
mkdir -p "${OUT:-/tmp/out}"
$PY -W ignore bench/gpu/bench_gpu.py "$@" | tee "${OUT:-/tmp/out}/gpu_extract.jsonl"
# Ray backend, one actor per GPU, vs the local backend on the same videos (needs ray in .whl/)
if $PY -c "import ray" 2>/dev/null; then
  $PY -W ignore bench/bench_ray.py --gpu --videos "${RAY_VIDEOS:-16}" --frames "${RAY_FRAMES:-960}" \
    | tee -a "${OUT:-/tmp/out}/gpu_extract.jsonl"
else
  echo "ray not importable: add its wheels to .whl/ (bench/RESULTS.md, 'GPU run') for the Ray case" >&2
fi
