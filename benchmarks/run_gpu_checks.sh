#!/usr/bin/env bash
# On a CUDA machine, one command for everything the CPU suite cannot check: the kernel
# tests on the compiled kernels (small cases plus the `gpu`-marked serving sizes), then the
# kernel benchmark, whose markdown table lands in benchmarks/results/.
#   bash benchmarks/run_gpu_checks.sh [bench_kernels.py options, e.g. --quick]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'run_gpu_checks.sh needs a CUDA GPU (torch.cuda.is_available() is False)')"
python3 -c "import triton" 2>/dev/null || python3 -m pip install -q triton
python3 -c "import radixlm.kernels" 2>/dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e .
python3 -c "import torch, triton; print('GPU:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| triton', triton.__version__)"

# TRITON_INTERPRET must be unset: the point is to run the compiled kernels.
unset TRITON_INTERPRET
pytest -q -m "not slow" tests/kernels

mkdir -p benchmarks/results
gpu_tag=$(python3 -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))")
python3 benchmarks/bench_kernels.py --out "benchmarks/results/kernels_${gpu_tag}.md" "$@"
