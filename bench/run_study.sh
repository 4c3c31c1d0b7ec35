#!/usr/bin/env bash
# The UCF-Crime-sized study recorded in bench/RESULTS_study.md (bench/RESULTS.md).
# Usage: bench/run_study.sh [DATA_ROOT] [STUDY_OUT]   (defaults under /tmp, never in the repo)
# Budget chosen to fit ~40 min on a shared 2-core CPU: Table 2, 2 seeds, 3 epochs, T=32.
# Rerunning resumes: finished runs are read from STUDY_OUT/runs/<key>/eval.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/tmp/study_ucf}
OUT=${2:-/tmp/study_ucf_out}
PY=${PY:-.venv/bin/python}
if [ ! -f "$DATA/synth.json" ]; then
  /usr/bin/time -v "$PY" -m pipeline.synth --out "$DATA" --preset ucf-scale --seed 0
fi
/usr/bin/time -v "$PY" -m pipeline.study --data-root "$DATA" --dataset ucf --out "$OUT" \
  --tables 2 --seeds 2 --epochs 3 --T 32 --batch-size 64 --val-fraction 0.1 --device cpu
