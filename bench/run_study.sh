#!/usr/bin/env bash
# The UCF-Crime-sized study recorded in bench/RESULTS_study.md (bench/RESULTS.md).
# Usage: bench/run_study.sh [DATA_ROOT] [STUDY_OUT]   (defaults under /tmp, never in the repo)
# Budget chosen for a shared 2-core CPU: 5 epochs, T=32; Table 2 with 2 seeds, Tables 3, 4 and Fig. 2 with 1.
# Data: the ucf-scale preset at --signal 0.5, where the plain MIL backbone is far from perfect.
# Hyperparameters pinned to the values of the recorded run (TrainConfig defaults may change).
# Rerunning resumes: finished runs are read from STUDY_OUT/runs/<key>/eval.json.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/tmp/study_ucf_s05}
OUT=${2:-/tmp/study_ucf_s05_out}
PY=${PY:-.venv/bin/python}
if [ ! -f "$DATA/synth.json" ]; then
  /usr/bin/time -v "$PY" -m pipeline.synth --out "$DATA" --preset ucf-scale --signal 0.5 --seed 0
fi
/usr/bin/time -v "$PY" -m pipeline.study --data-root "$DATA" --dataset ucf --out "$OUT" \
  --tables 2,3,4,fig2 --seeds 2 --table-seeds 3=1,4=1,fig2=1 --epochs 5 --T 32 --batch-size 64 \
  --val-fraction 0.1 --lr 1e-3 --weight-decay 5e-4 --dropout 0.6 --lambda1 0.01 --mu 1.0 --device cpu
