#!/usr/bin/env bash
# The relsim GPU check, run from the repository root on a CUDA machine without network:
# GPU-marked tests, then python -m benchmarks.gpu_relsim. Logs and the JSON land in $OUT (or ./var/gpu).
# Wheels carried in .whl/ (transformers, peft, accelerate) are installed first when present.
#   bash benchmarks/run_gpu.sh [extra arguments for gpu_relsim.py]
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/var/gpu}"
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Fewer fragmentation OOMs when batch sizes change between runs in one process.
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
PYTHON="${PYTHON:-python3}"
# Together well inside a 10-minute command; expected: tests ~1 min, benchmark 3-4 min.
TESTS_TIMEOUT="${TESTS_TIMEOUT:-150}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-400}"

if compgen -G ".whl/*.whl" >/dev/null; then
    echo "== installing carried wheels: $(ls .whl | tr '\n' ' ')"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 3; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    # Should the carried versions not import beside this torch, go on with the installed ones.
    if ! "$PYTHON" -c "import torch, transformers, peft
from transformers import Qwen2_5_VLForConditionalGeneration" >"$OUT/wheel_check.log" 2>&1; then
        echo "carried wheels do not import (see wheel_check.log); using the installed packages"
        cat "$OUT/wheel_check.log"
        unset PYTHONPATH
    fi
fi

{
    echo "== versions"
    "$PYTHON" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "transformers", "peft", "accelerate", "huggingface_hub", "tokenizers",
             "safetensors", "sentence_transformers", "pytest"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')} {getattr(module, '__file__', '')}")
    except Exception as error:
        print(f"{name} MISSING ({type(error).__name__}: {error})")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
EOF
    nvidia-smi || echo "nvidia-smi unavailable"
} 2>&1 | tee "$OUT/versions.log"

echo "== GPU tests (timeout ${TESTS_TIMEOUT}s)"
timeout "$TESTS_TIMEOUT" "$PYTHON" -m pytest -m gpu tests/ml -p no:django -q -rs \
    --continue-on-collection-errors 2>&1 | tee "$OUT/pytest_gpu.log"
tests_status=${PIPESTATUS[0]}
echo "== GPU tests exit status: $tests_status"

echo "== benchmark (timeout ${BENCH_TIMEOUT}s)"
timeout "$BENCH_TIMEOUT" "$PYTHON" -m benchmarks.gpu_relsim --skip-tests \
    --json "$OUT/gpu_relsim.json" "$@" 2>&1 | tee "$OUT/gpu_relsim.log"
bench_status=${PIPESTATUS[0]}
echo "== benchmark exit status: $bench_status"

if [ "$tests_status" -ne 0 ] || [ "$bench_status" -ne 0 ]; then
    exit 1
fi
