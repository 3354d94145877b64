#!/usr/bin/env bash
# One prepared run on a GPU machine: CUDA training throughput against the same machine's CPUs (bench_cuda.py),
# then, on the CPUs only, the non-IID and privacy learning tables, which need many short runs at once.
#   bench/gpu_check.sh OUTDIR [BENCH_SECONDS]
# Everything is written under OUTDIR; the learning tables stop after BENCH_SECONDS (default 380) and whatever
# runs finished are packed into OUTDIR/runs.tar.gz, so a cut-short run still returns its numbers.
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUTDIR [BENCH_SECONDS]}
budget=${2:-380}
mkdir -p "$out"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/operator:$PWD/participant" PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))' || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 bench/bench_cuda.py --out "$out/cuda" --seconds 3 --rounds 3 2>&1 | tee "$out/cuda.log" || exit 1
work=$(mktemp -d)
CUDA_VISIBLE_DEVICES= timeout "$budget" python3 bench/bench_learning.py --only noniid --noniid-rounds 20 \
  --alphas 0.3,1.0 --jobs 7 --out "$work/learning" --report "$out/learning-noniid.md" >"$out/learning.log" 2>&1 &
CUDA_VISIBLE_DEVICES= timeout "$budget" python3 bench/bench_privacy.py --jobs 7 --out "$work/privacy" \
  --report "$out/privacy.md" >"$out/privacy.log" 2>&1 &
wait
(cd "$work" && find . -name report.json | tar czf "$out/runs.tar.gz" -T -)
ls -l "$out"
