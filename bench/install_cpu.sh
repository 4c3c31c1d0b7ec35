#!/bin/bash
# Size and time of the CPU-only install (README "Install"): a fresh venv, torch's CPU build and the
# torchvision release made for it, then the project with its test extra.
#   bench/install_cpu.sh TORCH_CPU_WHEEL_OR_SPEC TORCHVISION_SPEC [VENV]
# e.g. bench/install_cpu.sh /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl torchvision==0.28.0
# (with internet: bench/install_cpu.sh "torch --index-url https://download.pytorch.org/whl/cpu" ...)
set -eu
torch_spec=$1; tv_spec=$2; venv=${3:-/tmp/cpu-venv}
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$venv" && python3 -m venv "$venv" && . "$venv/bin/activate"
s=$(date +%s)
pip install -q $torch_spec "$tv_spec"
m=$(date +%s)
(cd "$here" && pip install -q -e ".[test]")
e=$(date +%s)
echo "torch + torchvision: $((m - s)) s; the project and the rest: $((e - m)) s; total $((e - s)) s"
echo "NVIDIA packages: $(pip list 2>/dev/null | grep -ci nvidia)"
pip list 2>/dev/null | grep -i '^torch'
du -sh "$venv"
python -c "import torch, torchvision, pipeline.extract; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
