#!/usr/bin/env bash
# The CUDA checks, for a machine with an NVIDIA GPU (CI has none): tests/test_devices.py (seeded batches, 16-mixed
# and bf16-mixed training, conversion and shallow diffusion on CUDA, diffusion training), then the training-step
# and end-to-end conversion benchmarks on the GPU next to so-vits-svc's own code.
#
#   bash scripts/gpu_check.sh [OUT_DIR]
#
# Optional environment, for a GPU machine that lacks what the CPU one has:
#   SVC_PL_WHEELS          folder of wheels to install first (pip --no-index --target /tmp/site)
#   SVC_PL_TEST_DATASET    a preprocessed test dataset (python -c "from tests.datasets import make_dataset; ...")
#                          where espeak-ng is missing
#   SVC_PL_REFERENCE       so-vits-svc 4.1 checkout for the benchmarks (skipped without it)
#   SVC_PL_BENCHES         which benchmarks to run (default "train infer")
set -uo pipefail
out=${1:-${OUT:-/tmp/svc_pl_gpu_check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [[ -n "${SVC_PL_WHEELS:-}" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$SVC_PL_WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__,
'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"

status=0
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" -rA -s tests/test_devices.py 2>&1 \
    | tee "$out/tests.log" || status=1
benches=${SVC_PL_BENCHES:-train infer}
if [[ -n "${SVC_PL_REFERENCE:-}" && " $benches " == *" train "* ]]; then
    timeout 200 python3 bench/bench_train.py --reference "$SVC_PL_REFERENCE" --device cuda --batch-size 16 \
        --frames 400 --segment-size 10240 --steps 5 --warmups 2 --precision fp32 bf16 --max-load 99 \
        --json "$out/bench_train_cuda.json" 2>&1 | tee "$out/bench_train.log" || status=1
fi
if [[ -n "${SVC_PL_REFERENCE:-}" && " $benches " == *" infer "* ]]; then
    timeout 240 python3 bench/bench_infer.py --reference "$SVC_PL_REFERENCE" --device cuda --seconds 10 60 \
        --precision fp32 bf16 --repeats 2 --max-load 99 --json "$out/bench_infer_cuda.json" 2>&1 \
        | tee "$out/bench_infer.log" || status=1
fi
exit $status
